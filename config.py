"""Paths and hyperparameters for sql-rlvr, in plain Python.

Every field of `Config` can be overridden on the command line of every script as `--field value`
(a script's `--help` lists the fields it uses, by section; see SECTIONS). `--preset smoke` swaps in a tiny CPU configuration (the shipped
mini-Spider and a tiny locally built model) that runs end to end in seconds.

This module imports nothing heavy (no torch, transformers or TRL): the entry scripts parse their
config first and only then choose a backend, so that unsloth can be imported before the trainer
stack when it is used.
"""

from __future__ import annotations

import sys

if sys.version_info < (3, 11):  # the GPU set's trl 1.15.0 needs 3.11: say so in one line, not in a traceback
    sys.exit(f"error: sql-rlvr needs Python 3.11 or newer; this is Python {sys.version.split()[0]}")

import argparse
import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent
MINI_SPIDER_DIR = REPO_DIR / "data" / "mini_spider"
MINI_BIRD_DIR = REPO_DIR / "data" / "mini_bird"
EXAMPLE_FOLDER_DIR = REPO_DIR / "data" / "example_folder"  # --benchmark folder's shipped example (--preset smoke)
TINY_MODEL_NAME = "tiny"  # resolved to a ~140k-parameter Qwen3 built locally (sql_rlvr/tiny_model.py)

try:  # .env is optional; python-dotenv is in both requirement sets, but config must never crash on it
    from dotenv import load_dotenv

    load_dotenv(REPO_DIR / ".env", override=False)
except ImportError:  # pragma: no cover
    pass


class ConfigError(ValueError):
    """A bad override or an inconsistent configuration: reported as one line, never a traceback."""


def _f(default: Any, text: str) -> Any:
    """A config field with its --help text."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class Config:
    # --- paths ---
    model_name: str = _f("unsloth/Qwen3-4B-Instruct-2507", "base model: hub name or local folder ('tiny' = the local test model)")
    spider_dir: str = _f(os.environ.get("SPIDER_DIR", "data/spider"), "Spider release folder (train_spider.json, dev.json, tables.json, database/); env SPIDER_DIR")
    benchmark: str = _f("spider", "spider | bird | folder (your own data, --data_dir): which benchmark's files, prompt extras, match rule and output formats (sql_rlvr/benchmarks.py)")
    bird_dir: str = _f(os.environ.get("BIRD_DIR", "data/bird"), "BIRD release folder (train/, dev/, mini_dev_sqlite.json); env BIRD_DIR")
    data_dir: str = _f("", "--benchmark folder: your own data's folder: train.json, dev.json (question, query or SQL, db_id, "
                       "evidence), <db_id>.sqlite or <db_id>/<db_id>.sqlite, tables.json optional (docs/data.md)")
    output_dir: str = _f("outputs", "every artifact of a run goes under this folder (sft/, grpo/, eval/)")
    overwrite: bool = _f(False, "redo a stage: clears its old checkpoints, metrics and adapter (or evaluation) first")
    resume: bool = _f(False, "continue a stage from its newest checkpoint; a finished stage says so and exits 0")
    backend: str = _f("auto", "auto | unsloth | hf  (auto = unsloth when CUDA is available, else hf; unsloth without "
                      "CUDA runs on its CPU backend with --fast_inference false)")
    fast_inference: bool = _f(True, "unsloth backend: vLLM for GRPO rollouts and evaluation (CUDA only); false = "
                              "model.generate and TRL's own GRPO generation (runs on CPU too)")
    seed: int = _f(42, "random seed for data order, LoRA init and sampling")
    torch_threads: int = _f(0, "CPU threads for torch (0 = torch's default); 1 is fastest for tiny models on busy CPUs")

    # --- data and prompts ---
    use_train_others: bool = _f(True, "add train_others.json to the training set when present")
    schema_sample_values: int = _f(0, "distinct sample values shown per column in the schema prompt (0 = none)")
    value_hints: int = _f(0, "stored values per text column shown in the schema prompt when they match words of the "
                          "question (BIRD: and its evidence), up to this many; columns without a match get none "
                          "(0 = off; sql_rlvr/value_index.py, index cached under .cache/value_index/)")
    max_tool_calls: int = _f(0, "agentic mode: the model may run up to this many SQL queries on the question's database "
                             "(tool execute_sql, in its chat template's tool format) before its final answer, whose SQL "
                             "is rewarded, scored and voted (0 = one direct answer). N > 0 raises the default "
                             "max_completion_length and max_seq_length by N x TOOL_CALL_TOKENS (docs/agentic.md)")
    reasoning: bool = _f(False, "reason before the SQL: an instruct model is asked to reason step by step and give the "
                         "final query in a ```sql block; a thinking template (one that opens <think> itself, or "
                         "Qwen3's hybrid one, then switched on) reasons in its think block and answers after it. The "
                         "final answer's SQL is rewarded, scored and voted; an answer that never reaches one is 'no "
                         "answer' (-2.0, wrong). SFT then trains on --sft_traces. Raises the default "
                         "max_completion_length and max_seq_length by REASONING_TOKENS (docs/reasoning.md)")
    tool_max_rows: int = _f(10, "agentic mode: rows of a query result shown to the model (with the column names and "
                            "the row count)")
    tool_timeout_s: float = _f(5.0, "agentic mode: time limit per tool call, seconds (not --sql_timeout_s: "
                               "TRL runs the calls one at a time, so a slow call stalls every rollout; made hard as "
                               "the reward's, a call stalled well past it has its worker killed)")
    max_train_examples: int = _f(0, "use at most this many training examples, a seeded sample over every database (0 = all)")
    max_eval_examples: int = _f(0, "evaluate at most this many dev examples, a seeded sample over databases and hardness "
                                "(BIRD: difficulty) (0 = all)")
    bird_column_descriptions: bool = _f(False, "BIRD: add each column's description from database_description/*.csv to the schema prompt")
    train_benchmarks: list = _f([], "SFT and GRPO: the benchmarks whose train splits they draw from, comma-separated "
                                "(spider,bird,folder; empty = --benchmark alone). Each example keeps its own prompt extras, "
                                "database and match rule; evaluation stays on --benchmark")

    # --- model and LoRA ---
    max_seq_length: int = _f(2048, "longest prompt + answer the model handles (vLLM max_model_len)")
    max_prompt_length: int = _f(1536, "prompts longer than this many tokens are skipped, with a count in the log")
    load_in_4bit: bool = _f(False, "load the base model in 4-bit (unsloth backend with --fast_inference false: vLLM 0.31 "
                            "has no bitsandbytes; less memory, slightly worse)")
    gpu_memory_utilization: float = _f(0.5, "fraction of GPU memory vLLM may take (unsloth fast_inference; unsloth "
                                      "counts it against the memory free when the model loads)")
    lora_r: int = _f(32, "LoRA rank")
    lora_alpha: int = _f(64, "LoRA alpha (scaling = alpha / r)")
    lora_dropout: float = _f(0.0, "LoRA dropout")
    lora_target_modules: list = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "comma-separated module names that get LoRA adapters",
    )
    gradient_checkpointing: bool = _f(True, "recompute activations to save memory (unsloth's variant on CUDA)")

    # --- SFT ---
    sft_learning_rate: float = _f(2e-4, "SFT learning rate")
    sft_epochs: float = _f(2.0, "SFT epochs over the training set")
    sft_max_steps: int = _f(-1, "stop SFT after this many optimizer steps (-1 = use sft_epochs)")
    sft_batch_size: int = _f(8, "SFT examples per device per forward pass")
    sft_grad_accum: int = _f(2, "SFT gradient accumulation steps")
    sft_warmup_ratio: float = _f(0.03, "fraction in [0, 1) of the SFT steps spent warming up the learning rate (a ratio, never a step count)")
    sft_lr_scheduler_type: str = _f("cosine", "SFT learning-rate schedule (transformers name): cosine decay to 0 over the run")
    sft_loss_type: str = _f("nll", "SFT loss: nll = mean token cross-entropy on the completion (TRL's and unsloth's choice, "
                            "passed so neither TRL version's default can change it)")
    sft_traces: str = _f("", "--reasoning true: SFT's answers, a JSONL file of reasoning traces, one a line with the "
                         "question's db_id, question and the whole completion (reasoning, then the final query). Only "
                         "traces whose final query gives the gold result on the question's database are trained on; "
                         "questions without one are left out. Make them with `evaluate.py --self_traces FILE` or bring "
                         "a teacher's (docs/reasoning.md)")
    traces_per_question: int = _f(1, "--sft_traces: at most this many verified traces per training question (the first "
                                  "in the file). 1: each question weighs in the loss as in SFT on gold SQL, and the easy "
                                  "questions, whose samples verify most often, do not outweigh the hard ones")
    # Passed explicitly to both trainers: unsloth's rewritten configs have their own defaults
    # (adamw_8bit, weight_decay 0.001, 10% warm-up), so leaving one out changes the run with the backend.
    optim: str = _f("adamw_torch_fused", "optimizer, SFT and GRPO: AdamW with torch's fused kernel (CUDA and CPU), the same "
                    "math as adamw_torch (which unsloth's CPU backend would rewrite into it: refused). Not unsloth's adamw_8bit: "
                    "LoRA's optimizer state is small, so 8 bits save little memory and would change the run")
    weight_decay: float = _f(0.0, "AdamW weight decay, SFT and GRPO: 0 as in TRL (unsloth's default 0.001 pulls LoRA "
                             "towards the base model)")
    max_grad_norm: float = _f(1.0, "gradient clipping norm, SFT and GRPO (transformers' and TRL's default)")

    # --- GRPO ---
    grpo_start: str = _f("sft", "sft | base: what GRPO trains. sft = the SFT adapter (<output_dir>/sft); base = a new "
                         "LoRA on the base model (--lora_r, --lora_alpha, --lora_dropout, --lora_target_modules), no "
                         "SFT stage needed (Arctic-Text2SQL-R1's recipe: GRPO straight from an instruct model)")
    grpo_learning_rate: float = _f(5e-6, "GRPO learning rate")
    grpo_max_steps: int = _f(500, "GRPO optimizer steps")
    grpo_prompts_per_step: int = _f(4, "distinct prompts per optimizer step, over all devices")
    num_generations: int = _f(8, "completions sampled per prompt (the GRPO group size, >= 2)")
    grpo_grad_accum: int = _f(4, "GRPO gradient accumulation steps; per-device batch is derived from it")
    temperature: float = _f(1.0, "sampling temperature for GRPO rollouts")
    beta: float = _f(0.0, "KL penalty to the base model (0 = none, TRL's default; >0 uses the adapter-disabled model)")
    top_p: float = _f(1.0, "GRPO rollouts: nucleus sampling (1.0 = off): the policy samples from its full distribution, "
                      "as the GRPO loss assumes")
    top_k: int = _f(0, "GRPO rollouts: top-k sampling (0 = off; unsloth hands vLLM its own spelling of off, -1)")
    grpo_warmup_ratio: float = _f(0.0, "fraction of GRPO steps spent warming up the learning rate (0 = none, TRL's "
                                  "default; unsloth would otherwise warm up over a tenth of them)")
    grpo_lr_scheduler_type: str = _f("linear", "GRPO learning-rate schedule (transformers name): TRL's default, linear decay to 0")
    grpo_loss_type: str = _f("dapo", "GRPO loss (TRL name): dapo = token-level normalisation, TRL's default")
    epsilon: float = _f(0.2, "GRPO: lower clipping bound of the policy ratio (TRL's default)")
    epsilon_high: float = _f(0.2, "GRPO: upper clipping bound (0.2 = symmetric, TRL's default; unsloth sets 0.28 when "
                             "the loss type is given); with --grpo_loss_type cispo the cap of the importance weight "
                             "itself, >= 1 (TRL suggests 5)")
    mask_truncated_completions: bool = _f(False, "GRPO: drop completions cut at max_completion_length from the loss "
                                          "(TRL's default off; unsloth turns it on when the loss type is given)")
    scale_rewards: str = _f("group", "GRPO: divide advantages by the reward std of the group | batch | none (TRL's default group)")
    vllm_importance_sampling_correction: bool = _f(True, "GRPO with vLLM rollouts: correct for vLLM's log-probs differing "
                                                   "from the trainer's (TRL's default; unsloth turns it off). No effect without vLLM")
    max_completion_length: int = _f(256, "longest generated answer in tokens (GRPO and evaluation)")
    vllm_mode: str = _f("colocate", "hf backend GRPO rollouts: colocate = plain generate in-process; server = TRL's "
                        "`trl vllm-serve` on its own GPUs (--backend hf only)")
    vllm_server_host: str = _f("127.0.0.1", "--vllm_mode server: host of `trl vllm-serve`")
    vllm_server_port: int = _f(8000, "--vllm_mode server: port of `trl vllm-serve`")
    grpo_skip_empty_gold: bool = _f(True, "leave out GRPO prompts whose gold result is empty: an empty answer would match them for free")
    grpo_filter_samples: int = _f(0, "GRPO: before training, the SFT adapter (--grpo_start base: the base model) "
                                  "answers every training prompt K times "
                                  "(the rollouts' temperature, top_p, top_k) and prompts whose K answers all match are "
                                  "left out: a group that always matches has zero advantage and teaches nothing. Pass "
                                  "counts go to grpo/prompt_pass_rates.jsonl, which --resume reuses (0 = off: every "
                                  "prompt trains, nothing is sampled)")

    # --- reward (also used by the scorer) ---
    reward_exact: float = _f(5.0, "reward when the predicted result equals the gold result")
    reward_invalid: float = _f(-1.0, "reward for no SQL, invalid, refused or timed-out SQL")
    reward_empty: float = _f(-2.0, "reward for an empty answer")
    reward_partial_max: float = _f(2.5, "partial credit = this x F1 of result rows (must be < reward_exact)")
    sql_timeout_s: float = _f(2.0, "time limit per SQL query, seconds (made hard by the worker processes: a query stalled well past it has its worker killed)")
    reward_workers: int = _f(2, "processes that execute the gold queries (checked before GRPO) and the predicted SQL in parallel")
    progress_every_s: float = _f(30.0, "seconds between progress lines (questions done of how many, rate, time left) "
                                 "where stdout is not a terminal, e.g. a log file: evaluation's generation, GRPO's "
                                 "pass-rate filter and --eval_steps check; a phase shorter than this prints none "
                                 "(a terminal shows tqdm's bar)")

    # --- evaluation ---
    eval_batch_size: int = _f(16, "prompts per generation batch in evaluation")
    eval_temperature: float = _f(0.0, "0 = greedy decoding")
    adapter: str = _f("grpo", "evaluate.py: sft | grpo | none | PATH to a PEFT adapter folder")
    export_dtype: str = _f("bfloat16", "evaluate.py --export merged: bfloat16 | float16 | float32 weights")
    eval_split: str = _f("dev", "evaluate.py: split to evaluate on: Spider dev | test (test.json, test_tables.json, "
                         "test_database/); BIRD dev | mini_dev (mini_dev_sqlite.json, BIRD's 500-question mini-dev)")
    num_samples: int = _f(0, "evaluate.py: sampled answers per question besides the greedy one, voted on by execution (0 = greedy only)")
    sample_temperature: float = _f(0.8, "evaluate.py --num_samples: sampling temperature (top_p 0.95, seeded with --seed)")
    keep_distinct: bool = _f(False, "scoring and voting keep DISTINCT (the official evaluator's --keep_distinct; default: "
                             "removed). Spider only: refused with --benchmark bird")
    ts_db_dir: str = _f("", "evaluate.py: a test-suite database folder (<dir>/<db_id>/*.sqlite); also report test-suite "
                        "accuracy (ts). Spider only: refused with --benchmark bird")
    eval_file: list = _f([], "evaluate.py: question files in Spider's format (question, or Spider-Syn's SpiderSynQuestion; "
                         "query; db_id), comma-separated, evaluated instead of dev on Spider's databases, the model "
                         "loaded once: each into eval/<adapter>/<file name>/, then one table (docs/data.md)")
    eval_tables: str = _f("", "evaluate.py --eval_file: a set's own tables.json, merged over Spider's by db_id "
                          "(Spider-DK's spider_dk_tables.json)")
    eval_db_dir: str = _f("", "evaluate.py --eval_file: a set's own databases (<dir>/<db_id>/<db_id>.sqlite), looked "
                          "up before Spider's (Spider-DK's three modified ones)")
    eval_steps: int = _f(0, "GRPO: greedy execution accuracy on a fixed dev subset every N steps, logged as eval/ex (0 = off)")
    eval_subset_size: int = _f(100, "GRPO --eval_steps: dev questions in that subset (seeded, stratified by database and "
                               "hardness; BIRD: difficulty)")

    # --- logging and checkpoints ---
    logging_steps: int = _f(10, "log every N optimizer steps")
    save_steps: int = _f(100, "checkpoint every N optimizer steps")
    save_total_limit: int = _f(2, "checkpoints kept in output_dir")
    num_completions_to_log: int = _f(2, "GRPO: sample completions TRL prints at each log step (0 = none; all are kept in grpo/completions/)")
    wandb_project: str = _f(os.environ.get("WANDB_PROJECT", "sql-rlvr"), "wandb project (wandb is on only when WANDB_API_KEY is set)")

    # ------------------------------------------------------------------
    def validate(self, world_size: int = 1) -> None:
        """Reject inconsistent settings now, in one line, rather than deep inside a trainer."""
        if self.backend not in ("auto", "unsloth", "hf"):
            raise ConfigError(f"--backend must be auto, unsloth or hf, not {self.backend!r}")
        if self.grpo_start not in ("sft", "base"):
            raise ConfigError(f"--grpo_start must be sft or base, not {self.grpo_start!r}")
        if self.vllm_mode not in ("colocate", "server"):
            raise ConfigError(f"--vllm_mode must be colocate or server, not {self.vllm_mode!r}")
        if self.grpo_loss_type not in ("dapo", "grpo", "bnpo", "dr_grpo", "cispo"):  # in both TRL 1.15 and 1.16
            raise ConfigError(f"--grpo_loss_type must be dapo, grpo, bnpo, dr_grpo or cispo, not {self.grpo_loss_type!r}")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ConfigError(f"--scale_rewards must be group, batch or none, not {self.scale_rewards!r}")
        if self.grpo_loss_type == "dr_grpo" and self.scale_rewards != "none":
            # Dr. GRPO is defined without std scaling, and unsloth would switch it off behind the config's back.
            raise ConfigError("--grpo_loss_type dr_grpo needs --scale_rewards none")
        if self.grpo_loss_type == "cispo" and self.epsilon_high < 1:
            # TRL and unsloth cap CISPO's importance weight *at* epsilon_high (not 1 + epsilon): 0.2 caps every token at 0.2.
            raise ConfigError(f"--grpo_loss_type cispo caps each importance weight at --epsilon_high, so it must be >= 1 "
                              f"(TRL suggests 5), not {self.epsilon_high:g}")
        if self.load_in_4bit and self.fast_inference and self.backend != "hf":
            # vLLM 0.31 has no bitsandbytes: unsloth_zoo's load_vllm raises on 4-bit with fast_inference.
            raise ConfigError("--load_in_4bit needs --fast_inference false (vLLM 0.31 ships no bitsandbytes support); "
                              "to keep vLLM, drop --load_in_4bit and save memory with --max_seq_length or the batch sizes")
        if self.vllm_mode == "server" and self.backend != "hf":
            # unsloth's GRPO trainer forces colocated vLLM on a model with an engine: the server would sit idle.
            raise ConfigError("--vllm_mode server needs --backend hf (the unsloth backend always generates with "
                              "vLLM colocated on the training GPU)")
        if self.vllm_mode == "server" and self.grpo_filter_samples > 0:
            # The server holds the base weights until GRPO's first step sends it the adapter; TRL's client cannot
            # send a LoRA before the trainer exists, and plain generate on the training GPU would be far slower.
            raise ConfigError("--grpo_filter_samples cannot run with --vllm_mode server: the vLLM server holds the base "
                              "model until GRPO's first step sends it the adapter, so it cannot sample the SFT adapter "
                              "first; use --vllm_mode colocate or --backend unsloth for the filter, or "
                              "--grpo_filter_samples 0")
        if not 0.0 <= self.grpo_warmup_ratio < 1.0:
            raise ConfigError("--grpo_warmup_ratio must be in [0, 1): a fraction of the GRPO steps")
        if not 0.0 < self.top_p <= 1.0 or self.top_k < 0:
            raise ConfigError("--top_p must be in (0, 1] and --top_k >= 0 (0 = off)")
        if self.export_dtype not in ("bfloat16", "float16", "float32"):
            raise ConfigError(f"--export_dtype must be bfloat16, float16 or float32, not {self.export_dtype!r}")
        if self.benchmark not in BENCHMARK_DATA_FIELDS:  # each one's splits and options: sql_rlvr/benchmarks.py
            raise ConfigError(f"--benchmark must be spider, bird or folder, not {self.benchmark!r}")
        unknown = [name for name in self.train_benchmarks if name not in BENCHMARK_DATA_FIELDS]
        if unknown or len(set(self.train_benchmarks)) != len(self.train_benchmarks):
            raise ConfigError(f"--train_benchmarks names spider, bird and/or folder, each once, not "
                              f"{','.join(self.train_benchmarks)}")
        if self.num_samples < 0:
            raise ConfigError("--num_samples must be >= 0 (0 = greedy only)")
        if self.num_samples > 0 and self.sample_temperature <= 0:
            raise ConfigError("--sample_temperature must be positive when --num_samples > 0")
        if self.num_generations < 2:
            raise ConfigError("--num_generations must be >= 2 (GRPO compares completions within a group)")
        completions = self.grpo_prompts_per_step * self.num_generations
        per_step = self.grpo_grad_accum * world_size
        if self.grpo_prompts_per_step < 1 or completions % per_step:
            raise ConfigError(
                f"grpo_prompts_per_step x num_generations = {completions} completions per step must be divisible "
                f"by grpo_grad_accum x processes = {per_step}; change one of them"
            )
        if not self.reward_partial_max < self.reward_exact:
            raise ConfigError("--reward_partial_max must be below --reward_exact, or a wrong result could outscore a right one")
        if self.max_prompt_length + self.max_completion_length > self.max_seq_length:
            raise ConfigError(
                f"max_prompt_length ({self.max_prompt_length}) + max_completion_length ({self.max_completion_length}) "
                f"exceeds max_seq_length ({self.max_seq_length})"
            )
        if self.tool_max_rows < 1:
            raise ConfigError("--tool_max_rows must be 1 or more (rows of a query result the model sees)")
        if self.eval_steps < 0 or self.eval_subset_size < 1:
            raise ConfigError("--eval_steps must be >= 0 (0 = off) and --eval_subset_size >= 1")
        for name in ("sql_timeout_s", "sft_learning_rate", "grpo_learning_rate", "lora_r", "sft_batch_size",
                     "sft_grad_accum", "grpo_grad_accum", "eval_batch_size", "reward_workers", "save_steps",
                     "lora_alpha", "sft_epochs", "grpo_max_steps", "max_seq_length", "max_prompt_length",
                     "max_completion_length", "logging_steps", "save_total_limit", "tool_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name} must be positive")
        for name in ("torch_threads", "schema_sample_values", "value_hints", "max_train_examples", "max_eval_examples",
                     "beta", "eval_temperature", "num_completions_to_log", "grpo_filter_samples", "max_tool_calls",
                     "progress_every_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must be 0 or more")
        if self.traces_per_question < 1:
            raise ConfigError("--traces_per_question must be 1 or more (verified traces trained per question)")
        if self.sft_max_steps == 0 or self.sft_max_steps < -1:
            raise ConfigError("--sft_max_steps must be positive, or -1 to train for --sft_epochs")
        if self.temperature <= 0:
            raise ConfigError("--temperature must be positive: GRPO samples a group of different answers per prompt "
                              "(greedy decoding is --eval_temperature 0, for evaluation)")
        if not 0 <= self.sft_warmup_ratio < 1:
            # transformers 5 reads warmup_steps >= 1 as a step count: 3 would silently mean 3 steps
            raise ConfigError(f"--sft_warmup_ratio must be in [0, 1) (a fraction of the SFT steps), not "
                              f"{self.sft_warmup_ratio:g}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"--gpu_memory_utilization must be in (0, 1] (a fraction of GPU memory), not "
                              f"{self.gpu_memory_utilization:g}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"--lora_dropout must be in [0, 1), not {self.lora_dropout:g}")
        if not self.lora_target_modules:
            raise ConfigError("--lora_target_modules is empty: name the modules that get LoRA adapters, "
                              "e.g. q_proj,k_proj,v_proj,o_proj")
        if not 0 < self.vllm_server_port < 65536:
            raise ConfigError(f"--vllm_server_port must be a port number (1-65535), not {self.vllm_server_port}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume continues a stage and --overwrite starts it again: pass one of them")

    def training_benchmarks(self) -> list[str]:
        """The benchmarks SFT and GRPO train on: --train_benchmarks, or --benchmark alone."""
        return list(self.train_benchmarks) or [self.benchmark]

    def grpo_per_device_batch(self, world_size: int = 1) -> int:
        """Completions per device per forward pass, derived so TRL's divisibility rule always holds."""
        return self.grpo_prompts_per_step * self.num_generations // (self.grpo_grad_accum * world_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Defaults that differ per benchmark, applied when --benchmark names it, before a preset and the
# command line (which win). BIRD, measured in Qwen tokens by bench/bird_prompt_lengths.py on the 500
# mini-dev questions: prompts (schema + question + evidence) max 1893, gold SQL max 480 (docs/data.md,
# "BIRD"); BIRD's own evaluator allows 30 s per question.
BENCHMARK_DEFAULTS: dict[str, dict[str, Any]] = {
    "bird": dict(max_seq_length=2560, max_prompt_length=2048, max_completion_length=512, sql_timeout_s=30.0),
}


# The agentic mode's room per call, in Qwen tokens: the calling turn and the result the model reads
# (bench/agentic.py measured them on Spider dev; docs/agentic.md). With --max_tool_calls N and no
# explicit --max_completion_length / --max_seq_length, both grow by N x this.
TOOL_CALL_TOKENS = 256


# The reasoning mode's room (--reasoning true), in Qwen tokens: with no explicit --max_completion_length /
# --max_seq_length both grow by this, so the default answer budget is 256 + 768 = 1024 tokens: about 4x the
# reasoned Spider dev answers of a real 0.5B coder (205 and 247 tokens in a first check; docs/reasoning.md,
# bench/reasoning_levers.py); the leaders give 2048 (OmniSQL, SQL-R1) to 4096 (Think2SQL) on harder questions.
REASONING_TOKENS = 768


# Config field -> the trainer argument it sets. run_info.json records these arguments as the built
# trainer holds them (after unsloth and TRL have had their say); the tests check they equal the
# config on both backends.
_SHARED_TRAINER_ARGS = {"optim": "optim", "weight_decay": "weight_decay", "max_grad_norm": "max_grad_norm", "seed": "seed"}
SFT_TRAINER_ARGS: dict[str, str] = {
    "sft_learning_rate": "learning_rate", "sft_epochs": "num_train_epochs", "sft_max_steps": "max_steps",
    "sft_batch_size": "per_device_train_batch_size", "sft_grad_accum": "gradient_accumulation_steps",
    "sft_warmup_ratio": "warmup_steps", "sft_lr_scheduler_type": "lr_scheduler_type", "sft_loss_type": "loss_type",
    "max_seq_length": "max_length", **_SHARED_TRAINER_ARGS,
}
GRPO_TRAINER_ARGS: dict[str, str] = {
    "grpo_learning_rate": "learning_rate", "grpo_max_steps": "max_steps", "grpo_grad_accum": "gradient_accumulation_steps",
    "grpo_warmup_ratio": "warmup_steps", "grpo_lr_scheduler_type": "lr_scheduler_type", "grpo_loss_type": "loss_type",
    "num_generations": "num_generations", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
    "beta": "beta", "epsilon": "epsilon", "epsilon_high": "epsilon_high",
    "mask_truncated_completions": "mask_truncated_completions", "scale_rewards": "scale_rewards",
    "vllm_importance_sampling_correction": "vllm_importance_sampling_correction",
    "max_completion_length": "max_completion_length", **_SHARED_TRAINER_ARGS,
}


# A tiny configuration for CPU: the shipped mini-Spider and the tiny local model, seconds per stage.
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        model_name=TINY_MODEL_NAME,
        spider_dir=str(MINI_SPIDER_DIR),
        bird_dir=str(MINI_BIRD_DIR),
        data_dir=str(EXAMPLE_FOLDER_DIR),
        output_dir="outputs/smoke",
        backend="hf",
        torch_threads=1,  # measured: a 2-layer model gains nothing from more threads and loses 3-4x on a busy CPU
        max_seq_length=1024,
        max_prompt_length=896,
        lora_r=16,
        lora_alpha=32,
        gradient_checkpointing=False,
        sft_learning_rate=1e-2,
        sft_epochs=1.0,
        sft_max_steps=200,  # enough for the tiny model to emit valid SQL some of the time: GRPO needs varied rewards
        sft_batch_size=8,
        sft_grad_accum=1,
        sft_warmup_ratio=0.0,
        grpo_learning_rate=5e-4,
        grpo_max_steps=4,
        grpo_prompts_per_step=2,
        num_generations=4,
        grpo_grad_accum=1,
        temperature=0.7,
        max_completion_length=48,
        eval_batch_size=8,
        logging_steps=1,
        save_steps=50,
        reward_workers=2,
    ),
}


# ----------------------------------------------------------------------
# Which script reads which fields: each script's --help shows its own, grouped by section, and a
# checkpoint's run identity covers the fields of its stage. Every script still accepts every field
# (one command line can serve the whole pipeline). A field missing here counts as shared.

SCRIPTS = ("train_sft.py", "train_grpo.py", "evaluate.py")
_SFT, _GRPO, _EVAL = ("train_sft.py",), ("train_grpo.py",), ("evaluate.py",)
SECTIONS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [  # (title, scripts, fields)
    ("shared by every script", SCRIPTS,
     ("model_name", "spider_dir", "benchmark", "bird_dir", "bird_column_descriptions", "data_dir", "output_dir", "overwrite",
      "resume", "backend", "seed", "torch_threads", "schema_sample_values", "value_hints", "max_seq_length",
      "load_in_4bit", "reasoning", "max_tool_calls", "tool_max_rows", "tool_timeout_s")),
    ("training (SFT and GRPO)", _SFT + _GRPO, ("train_benchmarks", "use_train_others", "max_train_examples",
                                                 "gradient_checkpointing", "optim", "weight_decay", "max_grad_norm")),
    ("LoRA (SFT, and GRPO with --grpo_start base; later stages read it from the adapter)", _SFT + _GRPO,
     ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")),
    ("SFT", _SFT, ("sft_learning_rate", "sft_epochs", "sft_max_steps", "sft_batch_size", "sft_grad_accum",
                   "sft_warmup_ratio", "sft_lr_scheduler_type", "sft_loss_type", "sft_traces", "traces_per_question")),
    ("GRPO", _GRPO, ("grpo_start", "grpo_learning_rate", "grpo_max_steps", "grpo_prompts_per_step", "num_generations",
                     "grpo_grad_accum", "temperature", "beta", "max_prompt_length", "vllm_mode", "vllm_server_host",
                     "vllm_server_port", "num_completions_to_log", "top_p", "top_k", "grpo_warmup_ratio",
                     "grpo_lr_scheduler_type", "grpo_loss_type", "epsilon", "epsilon_high", "mask_truncated_completions",
                     "scale_rewards", "vllm_importance_sampling_correction", "eval_steps", "eval_subset_size",
                     "grpo_skip_empty_gold", "grpo_filter_samples")),
    ("reward", _GRPO, ("reward_exact", "reward_invalid", "reward_empty", "reward_partial_max")),
    ("generation and SQL execution", _GRPO + _EVAL,
     ("max_completion_length", "gpu_memory_utilization", "fast_inference", "sql_timeout_s", "reward_workers",
      "progress_every_s")),
    ("evaluation", _EVAL, ("max_eval_examples", "eval_batch_size", "eval_temperature", "adapter", "export_dtype",
                            "eval_split", "num_samples", "sample_temperature", "keep_distinct", "ts_db_dir",
                            "eval_file", "eval_tables", "eval_db_dir")),
    ("logging and checkpoints", _SFT + _GRPO, ("logging_steps", "save_steps", "save_total_limit", "wandb_project")),
]
# Fields that do not change what a run computes: a resumed run may change them.
NOT_RUN_DEFINING = {"output_dir", "overwrite", "resume", "torch_threads", "logging_steps", "save_steps",
                    "save_total_limit", "wandb_project", "num_completions_to_log", "reward_workers",
                    "gpu_memory_utilization", "vllm_server_host", "vllm_server_port",
                    "eval_steps", "eval_subset_size",  # dev EX during GRPO only watches: greedy, no sampling
                    "progress_every_s"}


def fields_for(script: str) -> list[str]:
    """The Config fields `script` reads (unknown scripts and fields not in SECTIONS: all of them)."""
    placed = {name for _, _, names in SECTIONS for name in names}
    names = [f.name for f in dataclasses.fields(Config)]
    if script not in SCRIPTS:
        return names
    used = {name for _, scripts, group in SECTIONS if script in scripts for name in group}
    return [name for name in names if name in used or name not in placed]


# Each benchmark's own data fields: a run on one never depends on the other's (a changed BIRD_DIR does
# not block resuming a Spider run), unless a training stage trains on both (--train_benchmarks).
BENCHMARK_DATA_FIELDS = {"spider": ("spider_dir",), "bird": ("bird_dir", "bird_column_descriptions"), "folder": ("data_dir",)}
# The new LoRA's shape: GRPO reads it from the config only with --grpo_start base (from the SFT adapter, it takes
# the adapter's), so only then is it part of GRPO's run.
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")


def run_defining_config(cfg: Config, script: str) -> dict:
    """The fields of `script`'s stage that change what it computes: a checkpoint resumes only under the same."""
    fields = fields_for(script)
    trains = "train_benchmarks" in fields
    used = {cfg.benchmark, *(cfg.training_benchmarks() if trains else ())}
    unused = {name for bench, names in BENCHMARK_DATA_FIELDS.items() if bench not in used for name in names}
    if script == "train_grpo.py" and cfg.grpo_start != "base":
        unused |= set(LORA_FIELDS)
    identity = {name: getattr(cfg, name) for name in fields if name not in NOT_RUN_DEFINING | unused}
    if trains:
        # The --benchmark alone, however it is spelled, is the run it was before the flag existed.
        mix = cfg.training_benchmarks()
        identity.pop("train_benchmarks")
        if mix != [cfg.benchmark]:
            identity["train_benchmarks"] = mix
    return identity


# ----------------------------------------------------------------------
# Command line: `--field value` for every field, typed from the dataclass.

def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _parse_float(text: str) -> float:
    value = float(text)
    if value != value:  # NaN compares false with everything, so it would pass every range check in validate()
        raise ValueError(f"expected a number, got {text!r}")
    return value


def _converter(f: dataclasses.Field):
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {
        "bool": _parse_bool,
        "int": int,
        "float": _parse_float,
        "list": lambda s: [part.strip() for part in s.split(",") if part.strip()],
    }.get(kind, str)


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage and exits; we want one line through the scripts' error handling."""

    def error(self, message: str):
        raise ConfigError(message)


def _build_parser(script: str, extra: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The script's own flags first, then the config fields it uses by section; other fields hidden but accepted.

    No abbreviations: `--temp` must not silently mean `--temperature` (a typo is an error with a suggestion).
    """
    own = [a for a in (extra._actions if extra is not None else []) if a.option_strings and a.dest != "help"]
    short = argparse.ArgumentParser(prog=script, allow_abbrev=False)
    for action in own:
        short._add_action(action)
    short.add_argument("--preset", choices=sorted(PRESETS))
    usage = short.format_usage().removeprefix("usage: ").rstrip() + " [--FIELD VALUE ...]"
    parser = _OneLineParser(
        prog=script, usage=usage, allow_abbrev=False,
        description=f"sql-rlvr {script}: its own flags, then the config fields it uses (--field value), by section.",
        epilog="Every config field is accepted by every script, so one command line serves the whole pipeline; "
               "fields this script does not use are left out above (see the other scripts' --help).")
    for action in own:
        parser._add_action(action)
    presets = "; ".join(f"{name} sets " + ", ".join(f"{k}={v}" for k, v in values.items())
                        for name, values in PRESETS.items())
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help=f"start from a named configuration (flags still override it). {presets}".replace("%", "%%"))
    defaults = Config()
    fields = {f.name: f for f in dataclasses.fields(Config)}
    used = fields_for(script)
    placed = {name for _, _, names in SECTIONS for name in names}
    groups = [(title, [n for n in names if n in used]) for title, _, names in SECTIONS]
    groups.append(("other fields", [n for n in fields if n not in placed]))
    hidden = [n for n in fields if n not in used]
    for title, names in [(t, n) for t, n in groups if n] + [(None, hidden)]:
        group = parser.add_argument_group(title) if title else parser
        for name in names:
            default = getattr(defaults, name)
            shown = ",".join(default) if isinstance(default, list) else default
            # A bare boolean flag (`--overwrite`) means true; `--overwrite false` also works.
            flag_kwargs = dict(nargs="?", const="true") if isinstance(default, bool) else {}
            help_text = f"{fields[name].metadata['help']} (default: {shown})" if title else argparse.SUPPRESS
            group.add_argument(f"--{name}", dest=name, default=argparse.SUPPRESS,
                               metavar=type(default).__name__.upper(), help=help_text, **flag_kwargs)
    return parser


def parse_config(argv: list[str] | None = None, script: str = "sql-rlvr",
                 extra: argparse.ArgumentParser | None = None) -> tuple[Config, argparse.Namespace]:
    """Parse `--preset` and `--field value` overrides. Raises ConfigError with a one-line reason.

    `extra` lets a script add its own flags (evaluate.py's --score_only, ...); they come back in the
    returned namespace.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(script, extra)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flag = unknown[0]
        names = [f"--{f.name}" for f in dataclasses.fields(Config)] + [a for act in parser._actions for a in act.option_strings]
        typed = flag.split("=")[0]
        # An abbreviation names the flags it starts; otherwise suggest the closest spelling.
        close = sorted({n for n in names if typed.startswith("--") and len(typed) > 3 and n.startswith(typed)})[:3]
        close = close or difflib.get_close_matches(typed, names, n=1)
        hint = f" (did you mean {' or '.join(close)}?)" if close else " (see --help)"
        raise ConfigError(f"unknown option {flag}{hint}")

    cfg = Config()
    values = vars(args)
    preset = values.pop("preset", None)
    benchmark = values.get("benchmark") or PRESETS.get(preset or "", {}).get("benchmark") or cfg.benchmark
    for key, value in BENCHMARK_DEFAULTS.get(benchmark, {}).items():
        setattr(cfg, key, value)
    if preset:
        for key, value in PRESETS[preset].items():
            setattr(cfg, key, value)
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for name in list(values):
        if name not in fields:
            continue
        raw = values.pop(name)
        try:
            setattr(cfg, name, _converter(fields[name])(raw))
        except ValueError as exc:
            raise ConfigError(f"--{name}: {exc}") from None
    # Room for the calls and their results, and for reasoning, unless the command line sizes it.
    extra = cfg.max_tool_calls * TOOL_CALL_TOKENS + (REASONING_TOKENS if cfg.reasoning else 0)
    if extra > 0:
        given = {a.split("=")[0][2:] for a in argv if a.startswith("--")}
        for name in ("max_completion_length", "max_seq_length"):
            if name not in given:
                setattr(cfg, name, getattr(cfg, name) + extra)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cfg.validate(world_size)
    return cfg, argparse.Namespace(**values)
