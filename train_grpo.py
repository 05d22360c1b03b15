"""Stage 2: GRPO on the SFT adapter, rewarded by executing the generated SQL on the real database.

    python train_grpo.py                     # after train_sft.py, same --output_dir
    python train_grpo.py --preset smoke

Reads <output_dir>/sft, saves the further-trained adapter under <output_dir>/grpo. Each log line
carries the reward mean/std and the fraction of each outcome (match / partial / wrong / invalid /
empty, plus parse failures and timeouts), reported by the reward through TRL's `log_metric` so they
are averaged over all processes; a few sample answers follow each line, and TRL's completion log
keeps every completion with its reward and outcome under grpo/completions/. With --eval_steps N, greedy execution accuracy
on a fixed dev subset is logged as eval/ex every N steps: reward curves cannot show reward hacking.
With --grpo_filter_samples K, prompts whose K answers from the SFT adapter all match are left out
before training (pass_rate_filter; counts per prompt in grpo/prompt_pass_rates.jsonl, reused by --resume).

No separate format reward: the execution reward already ranks "no SQL" (-1) and "empty" (-2) below
any query that runs, so a format term would only add a second, weaker signal for the same thing.
"""

from config import GRPO_TRAINER_ARGS, parse_config  # first: it stops Python < 3.11 in one line

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import utils  # model loading, the prompt, and the execution reward (utils.SQLExecutionReward)
from sql_rlvr import agent, benchmarks, run_folders, scoring, training
from sql_rlvr.extract import extract_sql
from sql_rlvr.errors import UserError
from sql_rlvr.run_folders import adapter_digest
from sql_rlvr.sql_tool import SQLTool


def grpo_batch_args(cfg, world_size: int) -> dict:
    """GRPOConfig's batch fields, derived from prompts per step and the group size (config.validate
    rejects a combination that does not divide; tests build the real GRPOConfig from this)."""
    return dict(per_device_train_batch_size=cfg.grpo_per_device_batch(world_size),
                gradient_accumulation_steps=cfg.grpo_grad_accum, num_generations=cfg.num_generations)


def rollout_args(cfg, backend: str) -> dict:
    """GRPOConfig's generation fields. unsloth: its own colocated vLLM (fast_inference), or TRL's generation
    (--fast_inference false). hf: plain generate, or TRL's vLLM server mode (config.validate allows it on hf
    only), where `trl vllm-serve` generates on its own GPUs and the trainer syncs LoRA-merged weights to it."""
    server = backend == "hf" and cfg.vllm_mode == "server"
    args = dict(use_vllm=(backend == "unsloth" and cfg.fast_inference) or server,
                vllm_mode="server" if server else "colocate",
                vllm_server_host=cfg.vllm_server_host, vllm_server_port=cfg.vllm_server_port)
    if backend == "hf":
        # Not on unsloth: it sizes its engine from the value given to from_pretrained (a fraction of *free* memory)
        # and ignores this field, so passing it would record a setting that did nothing. (TRL reads it only for its
        # colocated vLLM; in server mode `trl vllm-serve` takes its own flag.)
        args["vllm_gpu_memory_utilization"] = cfg.gpu_memory_utilization
    return args


def grpo_rows(cfg, datasets: dict, examples: list[dict], tokenizer) -> tuple[list[dict], list[int], list[dict]]:
    """GRPO's dataset rows, each prompt rendered from its own benchmark's schema and extras, with its gold
    query, database and match rule (the reward judges each row by its own): (rows, prompt lengths,
    examples left out as longer than --max_prompt_length)."""
    rows, lengths, skipped = [], [], []
    for ex in examples:
        dataset = datasets[ex["benchmark"]]
        messages = utils.build_messages(dataset.example_schema(ex, cfg.schema_sample_values, cfg.value_hints),
                                        ex["question"], evidence=ex.get("evidence", ""), tokenizer=tokenizer)
        if cfg.max_tool_calls > 0:  # the prompt offers the tool: its description counts too
            n_tokens = len(agent.prompt_ids(tokenizer, messages, utils.chat_template_kwargs(tokenizer)))
        else:
            n_tokens = len(tokenizer(utils.render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"])
        if n_tokens > cfg.max_prompt_length:
            skipped.append(ex)
            continue
        lengths.append(n_tokens)
        rows.append({"prompt": messages, "gold_sql": ex["query"], "db_path": str(dataset.db_path(ex["db_id"])),
                     "rule": benchmarks.get(ex["benchmark"]).rule, "benchmark": ex["benchmark"]})
    return rows, lengths, skipped


def sample_lines(reward: utils.SQLExecutionReward):
    """The lines after each GRPO step line: a few of the step's answers (outcome, reward, the answer's
    start). TRL's own sample table repeats the whole schema prompt of each sample (~150 lines a step), so
    it is not printed; every completion is in grpo/completions/*.parquet and wandb instead."""
    def lines(logs: dict) -> list[str]:
        if "reward" not in logs:
            return []
        calls = (lambda s: f" calls={s['calls']}") if reward.tool_calls else (lambda s: "")
        return [f"    {s['outcome']:>8} {s['reward']:+.2f}{calls(s)}  {s['completion'][:120]!r}" for s in reward.samples]

    return lines


def dev_ex_callback(cfg, dataset: benchmarks.Spider | benchmarks.Bird, backend: str, tokenizer, out: Path,
                    tool: SQLTool | None = None, template_kwargs: dict | None = None):
    """Every --eval_steps steps: greedy EX of the model being trained on a fixed, seeded dev subset.

    Rank 0 generates (the other processes wait at the next collective) and scores with the
    evaluator's own scorer; the value joins that step's log line as `eval/ex` (metrics.jsonl, wandb,
    curves.png): its on_log adds it to the logs, so it must come before the callbacks that write them.
    hf: plain `generate` on the live PeftModel. unsloth: vLLM through utils.generate with
    the *current* LoRA weights, saved to a temporary folder first (each load_lora gets a new request
    id, so vLLM never reuses an older copy); without them vLLM would answer with the base model.
    With `tool` (the agentic mode) each answer comes from evaluation's loop, agent.answer_with_tools.
    """
    from transformers import TrainerCallback

    spec = utils.benchmark_spec(cfg)  # the benchmark's strata, databases and match rule
    dev = dataset.examples("dev")
    chosen = utils.stratified_subset(dev, cfg.eval_subset_size, cfg.seed, spec.eval_strata)
    examples = [dev[i] for i in chosen]
    template_kwargs = template_kwargs or {}
    if tool is None:
        prompts = [utils.render_prompt_for(dataset, ex, cfg, tokenizer) for ex in examples]
        lengths = utils.prompt_lengths(tokenizer, prompts)
    else:
        prompts = [utils.fit_to_template(tokenizer, utils.render_prompt_for(dataset, ex, cfg)) for ex in examples]
        lengths = [len(agent.prompt_ids(tokenizer, m, template_kwargs)) for m in prompts]
    limit = cfg.max_seq_length - cfg.max_completion_length
    fits = [i for i, n in enumerate(lengths) if n <= limit]  # the rest score wrong
    golds = [(scoring.flatten_sql(ex["query"]), ex["db_id"]) for ex in examples]
    print(f"[grpo] eval/ex every {cfg.eval_steps} steps on {len(examples)} of {len(dev)} dev questions "
          f"(seed {cfg.seed}, stratified by database and {spec.eval_strata[-1]}; {len(examples) - len(fits)} over the prompt limit)")

    def generate(model, adapter_dir: Path) -> list[str]:
        kwargs = dict(max_new_tokens=cfg.max_completion_length, temperature=0.0, batch_size=cfg.eval_batch_size,
                      progress=False, fast_inference=cfg.fast_inference)
        if tool is None:
            return utils.generate(model, tokenizer, [prompts[i] for i in fits], backend, adapter_dir=adapter_dir, **kwargs)
        db_paths = [str(dataset.db_path(examples[i]["db_id"])) for i in fits]
        return [t.answer for t in agent.answer_with_tools(
            model, tokenizer, backend, [prompts[i] for i in fits], db_paths, tool=tool, max_calls=cfg.max_tool_calls,
            template_kwargs=template_kwargs, adapter_dir=adapter_dir, max_seq_length=cfg.max_seq_length, **kwargs)]

    def answer(model) -> list[str]:
        if backend != "unsloth" or not cfg.fast_inference:  # the live PeftModel itself; adapter_dir only names it (and checks it has LoRA)
            return generate(model, out)
        live = Path(tempfile.mkdtemp(prefix=".eval-adapter-", dir=out))
        try:
            model.save_pretrained(str(live))
            return generate(model, live)
        finally:
            shutil.rmtree(live, ignore_errors=True)

    class DevEX(TrainerCallback):
        ex: float | None = None  # measured at a step's end, logged in that step's line

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % cfg.eval_steps:
                return
            control.should_log = True  # on every process: the log line gathers across them
            if not state.is_world_process_zero:
                return
            start = time.time()
            was_training, padding_side = model.training, tokenizer.padding_side
            model.eval()
            try:
                generated = answer(model)
            finally:
                model.train(was_training)
                if backend == "unsloth" and not cfg.fast_inference and was_training:
                    # generate's for_inference turned the KV cache on (and on CUDA gradient checkpointing off)
                    # for the rest of the run: back to unsloth's training mode, as memory_probe does.
                    from unsloth import FastLanguageModel

                    FastLanguageModel.for_training(model)
                tokenizer.padding_side = padding_side
            answers = [""] * len(examples)
            for i, text in zip(fits, generated):
                answers[i] = text
            preds = [scoring.flatten_sql(extract_sql(a)) for a in answers]
            records = scoring.score_predictions(preds, golds, dataset.db_dir("dev"), cfg.sql_timeout_s, workers=1,
                                              rule=spec.rule)
            self.ex = sum(r["exec_match"] for r in records) / len(records)
            print(f"[grpo] step {state.global_step}: eval/ex={self.ex:.3f} greedy on {len(records)} dev questions "
                  f"({time.time() - start:.1f} s)", flush=True)

        def on_log(self, args, state, control, logs=None, **kwargs):
            # Through the public callback API, not the trainer's private _metrics: every later callback gets the
            # same logs dict, and the log history (trainer_state.json in checkpoints) its entry for this step.
            if self.ex is None or logs is None:
                return
            logs["eval/ex"] = self.ex
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1]["eval/ex"] = self.ex
            self.ex = None

    return DevEX()


def pass_counts(cfg, model, tokenizer, backend: str, rows: list[dict], reward: utils.SQLExecutionReward,
                adapter_dir: Path, template_kwargs: dict, rank: int = 0, world: int = 1,
                tool: SQLTool | None = None) -> tuple[list[int], int]:
    """For each row, how many of --grpo_filter_samples answers of the model (the SFT adapter, before any
    GRPO step) match its gold result; and how many answers could not be scored (their worker process
    died: scored as not matching), reported here rather than in GRPO's first step.

    The prompts are rendered as GRPOTrainer renders them (the same chat template kwargs) and sampled as
    the rollouts are (temperature, top_p, top_k, max_completion_length): vLLM on unsloth with
    fast_inference, batched generate otherwise. Each answer is scored by the reward itself (its match
    rule, its cached gold results, its worker processes). Under several processes each samples every
    world-th prompt and the counts are gathered, so every process trains on the same prompts.
    """
    k = cfg.grpo_filter_samples
    mine = list(range(rank, len(rows), world))
    # Rendered text for generate; the agentic mode's loop renders each chat itself, with the tool offered.
    prompts = [utils.render_prompt(tokenizer, rows[i]["prompt"], template_kwargs) for i in mine] if tool is None else []
    rollout_rows = max(k, cfg.grpo_prompts_per_step * cfg.num_generations // world)  # what one rollout generates at once
    chunk = max(rollout_rows // k, -(-len(mine) // 10))  # about ten progress lines
    share = f" (this process's share of {len(rows)})" if world > 1 else ""
    counts: list[int] = []
    start, failures = time.time(), reward.worker_failures
    was_training, padding_side = model.training, tokenizer.padding_side
    model.eval()
    try:
        for first in range(0, len(mine), chunk):
            batch = mine[first:first + chunk]
            # Seeded per chunk (by its first prompt's index), so that chunks do not replay one random stream.
            sampling = dict(adapter_dir=adapter_dir, max_new_tokens=cfg.max_completion_length, temperature=cfg.temperature,
                            top_p=cfg.top_p, top_k=cfg.top_k, num_return_sequences=k, seed=cfg.seed + batch[0],
                            batch_size=rollout_rows, progress=False, fast_inference=cfg.fast_inference)
            if tool is None:
                answers = utils.generate(model, tokenizer, prompts[first:first + chunk], backend, **sampling)
            else:  # the agentic mode: each answer is a conversation, as the rollouts will be
                answers = [t.answer for t in agent.answer_with_tools(
                    model, tokenizer, backend, [rows[i]["prompt"] for i in batch], [rows[i]["db_path"] for i in batch],
                    tool=tool, max_calls=cfg.max_tool_calls, template_kwargs=template_kwargs,
                    max_seq_length=cfg.max_seq_length, **sampling)]
            scored = reward.score(answers, [rows[i]["gold_sql"] for i in batch for _ in range(k)],
                                  [rows[i]["db_path"] for i in batch for _ in range(k)],
                                  [rows[i].get("rule") for i in batch for _ in range(k)])  # each row's own rule
            counts += [sum(outcome == "match" for _, outcome, _ in scored[j * k:(j + 1) * k]) for j in range(len(batch))]
            if rank == 0:
                print(f"[grpo] pass rates: {len(counts)}/{len(mine)} prompts x {k} answers sampled and scored"
                      f"{share} ({time.time() - start:.0f} s)", flush=True)
    finally:
        model.train(was_training)
        if backend == "unsloth" and not cfg.fast_inference and was_training:
            from unsloth import FastLanguageModel  # generate's for_inference: back to training mode, as in dev_ex_callback

            FastLanguageModel.for_training(model)
        tokenizer.padding_side = padding_side
    failed = reward.worker_failures - failures
    if world == 1:
        return counts, failed
    import torch.distributed as dist

    shares: list = [None] * world
    dist.all_gather_object(shares, (mine, counts, failed))
    merged = [0] * len(rows)
    for indices, values, _ in shares:
        for i, value in zip(indices, values):
            merged[i] = value
    return merged, sum(share[2] for share in shares)


def reused_pass_counts(path: Path, keys: list[tuple[str, str, str]], k: int, sft_digest: str) -> list[int]:
    """The pass counts --resume reuses: `path` must hold one record per prompt of this run, in order
    (`keys`: db_id, question, gold SQL), each of K answers of this SFT adapter; else a one-line refusal."""
    again = "pass --overwrite to start the GRPO stage again"
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise UserError(f"--resume: {path} is missing, and the checkpoint was trained on the prompts it left in: "
                        f"{again}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"--resume: {path} cannot be read ({exc}): {again}") from None
    if not all(isinstance(r, dict) for r in records):
        raise UserError(f"--resume: {path} is not a pass-rate file (a line is not a JSON object): {again}")
    ks = sorted({str(r.get("k")) for r in records})
    if ks != [str(k)]:
        raise UserError(f"--resume: {path} holds {'/'.join(ks) or 'no'} answers per prompt, not --grpo_filter_samples "
                        f"{k}: {again}")
    if {r.get("sft_adapter_sha256") for r in records} != {sft_digest}:
        raise UserError(f"--resume: {path} was sampled from another SFT adapter than {sft_digest[:12]}: {again}")
    if [(r.get("db_id"), r.get("question"), r.get("gold_sql")) for r in records] != keys:
        raise UserError(f"--resume: {path} was sampled for another set of prompts ({len(records)}; this run has "
                        f"{len(keys)}): {again}")
    counts = [r.get("passes") for r in records]
    if not all(isinstance(c, int) and 0 <= c <= k for c in counts):
        raise UserError(f"--resume: {path} has a pass count outside 0..{k}: {again}")
    return counts


def leave_out_always_matched(rows: list[dict], counts: list[int], k: int) -> list[dict]:
    """The rows GRPO trains on: those whose K sampled answers did not all match (a group that always
    matches has zero reward spread, so zero advantage: it only costs rollouts). None left: one line."""
    kept = [row for row, passes in zip(rows, counts) if passes < k]
    if not kept:
        raise UserError(f"--grpo_filter_samples {k}: the SFT adapter answered each of the {len(rows)} training prompts "
                        f"right {k} times out of {k}, so no prompt is left for GRPO to learn from; train on harder or "
                        "more questions, or pass --grpo_filter_samples 0")
    return kept


def pass_rate_filter(cfg, out: Path, resuming: bool, model, tokenizer, backend: str, rows: list[dict],
                     keys: list[tuple[str, str, str]], reward: utils.SQLExecutionReward, sft_dir: Path, sft_digest: str,
                     template_kwargs: dict, args, tool: SQLTool | None = None) -> tuple[list[dict], dict]:
    """--grpo_filter_samples K: (the rows left for GRPO, the counts for run_info.json). A new run samples
    and writes <out>/prompt_pass_rates.jsonl (one record per prompt) before training starts; --resume
    reuses that file, so an interrupted run never samples again. `args`: the built GRPOConfig (device,
    process index, world size)."""
    k = cfg.grpo_filter_samples
    path = out / run_folders.PASS_RATES_FILE
    start, failed = time.time(), 0
    if resuming:
        counts = reused_pass_counts(path, keys, k, sft_digest)
    else:
        if backend == "hf":  # a model to train is still where it was loaded (the trainer moves it later)
            model.to(args.device)
        counts, failed = pass_counts(cfg, model, tokenizer, backend, rows, reward, sft_dir, template_kwargs,
                                     args.process_index, args.world_size, tool)
        if args.process_index == 0:
            run_folders.write_jsonl(path, [{"db_id": db_id, "question": question, "gold_sql": gold, "passes": passes, "k": k,
                                            "sft_adapter_sha256": sft_digest}
                                           for (db_id, question, gold), passes in zip(keys, counts)])
    kept = leave_out_always_matched(rows, counts, k)
    histogram = [counts.count(n) for n in range(k + 1)]
    summary = {"k": k, "prompts_sampled": len(rows), "left_out_always_matched": histogram[k],
               "never_matched": histogram[0], "kept": len(kept), "prompts_by_passes": histogram, "reused": resuming,
               "worker_failed": failed, "seconds": round(time.time() - start, 1)}
    how = f"--resume: reused {path} (not sampled again)" if resuming else f"pass rates in {path}"
    if args.process_index == 0:
        print(f"[grpo] pass-rate filter, {k} answers per prompt: {len(rows)} prompts, {histogram[k]} always matched "
              f"(left out), {histogram[0]} never matched, {len(rows) - histogram[k] - histogram[0]} in between; "
              f"{len(kept)} prompts for GRPO ({summary['seconds']:.0f} s); {how}", flush=True)
        if failed:
            print(f"[grpo] pass-rate filter: {failed} of {len(rows) * k} sampled answers could not be scored (their "
                  "SQL worker process died: out of memory?) and count as not matched", flush=True)
    return kept, summary


def main() -> None:
    cfg, _ = parse_config(script="train_grpo.py")
    sft_dir = Path(cfg.output_dir) / "sft"
    out = Path(cfg.output_dir) / "grpo"
    if not (sft_dir / "run_info.json").exists():
        raise UserError(f"no finished SFT adapter in {sft_dir}: run `python train_sft.py` with the same "
                              "--output_dir (and --preset) first")
    utils.read_adapter_config(sft_dir)  # a finished marker without a readable adapter: one line, not a traceback
    # The SFT adapter it starts from is part of the run: a checkpoint trained from another one never resumes.
    start_digest = adapter_digest(sft_dir)
    resume_from = run_folders.prepare_output_dir(out, cfg, "run_info.json", {"sft_adapter_sha256": start_digest})

    datasets = utils.open_training_datasets(cfg)  # Spider and/or BIRD (--train_benchmarks, default --benchmark)
    examples = utils.training_examples(cfg, datasets)
    reward = utils.SQLExecutionReward(cfg.sql_timeout_s, cfg.reward_workers,
                                      utils.RewardValues.from_config(cfg),
                                      num_samples=cfg.num_completions_to_log, rule=utils.benchmark_spec(cfg).rule,
                                      tool_calls=cfg.max_tool_calls > 0)
    reward.start()  # its worker processes start while the model loads; they run the gold checks below

    backend = utils.pick_backend(cfg)
    use_vllm_engine = backend == "unsloth" and cfg.fast_inference  # unsloth's colocated vLLM for rollouts
    model, tokenizer = utils.load_model(cfg, backend, adapter=sft_dir, trainable=True, fast_inference=use_vllm_engine)
    print(f"[grpo] backend={backend} starting from {sft_dir}: {utils.count_trainable(model):,} trainable parameters")

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    # The same check and template kwargs as SFT and evaluation: GRPO prompts render as evaluation's do.
    template_kwargs = utils.check_chat_template(tokenizer, cfg.model_name, utils.stop_token_ids(model, tokenizer))
    if cfg.max_tool_calls > 0:
        agent.check_tool_template(tokenizer, cfg.model_name, template_kwargs)
    rows, lengths, skipped = grpo_rows(cfg, datasets, examples, tokenizer)
    left_out = {id(ex) for ex in skipped}
    keys = {id(row): (ex["db_id"], ex["question"], ex["query"])  # how prompt_pass_rates.jsonl names each prompt
            for row, ex in zip(rows, (ex for ex in examples if id(ex) not in left_out))}
    if not rows:
        raise UserError("no training prompt fits in --max_prompt_length")

    # Fail now, not at step 1000, if a gold query does not run; leave out empty gold results (free reward).
    fitting = rows
    rows, skipped_empty_gold = utils.checked_gold_rows(rows, reward, cfg.grpo_skip_empty_gold)
    kept = {id(row) for row in rows}
    by_benchmark = utils.count_by_benchmark(list(datasets), prompts=rows, skipped_over_max_prompt_length=skipped,
                                            skipped_empty_gold=[row for row in fitting if id(row) not in kept])
    print(f"[grpo] prompts={len(rows)} skipped_over_max_prompt_length={len(skipped)} "
          f"skipped_empty_gold={skipped_empty_gold}; {utils.length_report(lengths)}")
    if len(datasets) > 1:
        print(f"[grpo] training mix: {utils.mix_report(by_benchmark)}")
    if not rows:
        raise UserError("no training prompt left (every gold result is empty); try --grpo_skip_empty_gold false")

    world_size = training.world_size()
    passed = dict(
        # learning rate, steps, loss, sampling, ... and the batch fields derived from prompts per step
        **{**training.trainer_args(cfg, out, backend, GRPO_TRAINER_ARGS), **grpo_batch_args(cfg, world_size)},
        chat_template_kwargs=template_kwargs or None,  # GRPOTrainer applies the template to the prompts itself
        **rollout_args(cfg, backend),
        # TRL's completion log: every completion of the last generation (gathered from all processes, with
        # reward, advantage and outcome) in grpo/completions/*.parquet and wandb at each log step. Its
        # printed table is off (0): sample_lines shows --num_completions_to_log answers in a line each.
        log_completions=True,
        num_completions_to_print=0,
        # The agentic mode: TRL's tool loop, at most N calling turns then one last turn (sql_rlvr/agent.py).
        **({"max_tool_calling_iterations": cfg.max_tool_calls} if cfg.max_tool_calls > 0 else {}),
    )
    args = GRPOConfig(**passed)
    # One tool for every rollout's environment: its worker process runs the calls under a hard time limit.
    tool = SQLTool.from_config(cfg) if cfg.max_tool_calls > 0 else None
    tools = ({"environment_factory": lambda: agent.SQLEnvironment(tool, cfg.max_tool_calls)}
             if tool is not None else {})
    if tool is not None:  # TRL marks environment_factory experimental: the pinned versions are the ones we test
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    filtering = {}
    if cfg.grpo_filter_samples > 0:
        try:
            rows, filtering = pass_rate_filter(cfg, out, resume_from is not None, model, tokenizer, backend, rows,
                                               [keys[id(row)] for row in rows], reward, sft_dir, start_digest,
                                               template_kwargs, args, tool)
        except BaseException:  # the reward's worker processes, started to score the sampled answers
            reward.close()
            if tool is not None:
                tool.close()
            raise
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          callbacks=[training.metrics_callback(out / "metrics.jsonl", resume=resume_from is not None)],
                          **tools)
    training.check_trainer_args(trainer, passed)  # unsloth or TRL changed one of them: stop now, in one line
    if cfg.eval_steps > 0:  # on --benchmark's dev split, whatever the training mix; first: its on_log adds eval/ex
        dev = datasets[cfg.benchmark] if cfg.benchmark in datasets else utils.open_dataset(cfg)
        trainer.callback_handler.callbacks.insert(0, dev_ex_callback(cfg, dev, backend, tokenizer, out, tool,
                                                                     template_kwargs))
    trainer_args = training.effective_trainer_args(trainer, GRPO_TRAINER_ARGS.values())
    start = time.time()
    trainer.add_callback(run_folders.run_identity_callback(out))  # each checkpoint names its run (--resume checks it)
    # Each log step: reward, its spread, the groups that teach nothing (all answers scored alike), dev EX when
    # measured, and the outcome mix; then a few sample answers.
    shown = ("reward", "reward_std", "frac_reward_zero_std", "eval/ex") + (
        ("tool_calls_mean", "answered_after_call") if tool is not None else ())
    training.readable_progress(trainer, "grpo", shown, mix=True, every_log=True, after=sample_lines(reward))
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        reward.close()
        if tool is not None:
            tool.close()
    sft_digest = adapter_digest(sft_dir)
    training.plot_metrics(out / "metrics.jsonl", out / "curves.png", "grpo")  # rank 0; also explains a refusal below

    def refuse_unchanged(path: Path) -> None:
        # Before run_info.json: a GRPO run that changed nothing must never count as finished.
        if adapter_digest(path) == sft_digest:
            raise UserError(f"the GRPO adapter in {path} is identical to the SFT adapter: no update happened "
                                  "(every group scored the same? see frac_reward_zero_std in metrics.jsonl)")

    run_folders.save_adapter(trainer, out, {
        "stage": "grpo", "base_model": cfg.model_name, "backend": backend, "sft_adapter": str(sft_dir),
        "sft_adapter_sha256": sft_digest, "global_step": trainer.state.global_step, "prompts": len(rows),
        "skipped_prompts": len(skipped), "skipped_empty_gold": skipped_empty_gold,
        "train_benchmarks": by_benchmark, "seconds": round(time.time() - start, 1), "config": cfg.to_dict(),
        "trainer_args": trainer_args, **({"pass_rate_filter": filtering} if filtering else {}),
    }, check=refuse_unchanged)
    if trainer.is_world_process_zero():
        changed = f"the adapter changed from the SFT one (sha256 {sft_digest[:12]} -> {adapter_digest(out)[:12]})"
        print(training.training_summary("grpo", out, trainer.state.global_step, time.time() - start,
                                       (f"backend={backend}", changed), resumed_at=run_folders.checkpoint_step(resume_from)))


if __name__ == "__main__":
    run_folders.run_main(main)
