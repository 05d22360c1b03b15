"""sql-rlvr's library: every module but the five files at the repository root (config.py, utils.py and
the entry scripts train_sft.py, train_grpo.py, evaluate.py), flat, one concern a module.

In layers: a module imports only modules listed below it and root config.py, and the modules above the
line of root utils.py may also import utils. Exact imports: docs/architecture.md; tests/test_layout.py checks
them.

  ask               evaluate.py --ask "QUESTION" --db PATH.sqlite: one question on any SQLite database, its
                    SQL and the first rows of the result printed
  dev_check         GRPO's --eval_steps check: DevEXCallback, greedy dev EX logged as eval/ex
  pass_rate_filter  GRPO's --grpo_filter_samples: prompts the model GRPO starts from always answers right left out,
                    prompt_pass_rates.jsonl, its reuse by --resume
  traces            --reasoning true: SFT's reasoning traces (--sft_traces: read, matched, verified by execution,
                    written as the template renders them) and evaluate.py --self_traces (sample, verify, write)
  training          what SFT and GRPO share around TRL: trainer arguments, metrics.jsonl, progress lines,
                    curves.png, the memory probe, wandb
  export            evaluate.py --export merged: the adapter merged into its base, checked to answer alike
  run_folders       a stage's output folder (new, --overwrite, --resume, the run identity), the finished
                    marker, the adapter's digest, run_main (one-line errors, the Ctrl-C message)
  agent             the agentic mode (--max_tool_calls N): the conversation, its tokens, multi-turn generation;
                    where the two modes part (the template checks, the prompts, the answers)
  (root utils.py)   data, prompts, model loading and generation; the execution reward, re-exported
  question_files    evaluate.py --eval_file: Spider-format question files (Spider-Syn, -DK, -Realistic) on
                    Spider's databases, with a set's own tables and databases merged over Spider's
  tiny_model        the hub-free tiny Qwen3 of the tests and --preset smoke
  benchmarks        the Spider, BIRD and your own folder's readers and their Benchmark descriptions
  execution_reward  the reward of one answer, GRPO's batched reward (SQLExecutionReward), the gold checks
  scoring           the official match rules, their file formats, batch scoring, voting, the score tables
  schema            the schema text of the prompt
  value_index       --value_hints: the per-database index of stored text values and its lookup
  sql_tool          the execute_sql tool of the agentic mode
  sandbox           read-only, time-limited SQLite (execute_sql), the worker processes that make the limit hard
  hardness          Spider's official hardness levels
  extract           extract_sql: the SQL in a model's answer; final_sql: the final query of a reasoned one
  progress          progress lines a log file shows (done of how many, rate, time left); tqdm's bar on a terminal
  errors            UserError, StageFinished, DataError
"""
