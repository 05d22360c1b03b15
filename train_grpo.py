"""Stage 2: GRPO on the SFT adapter, rewarded by executing the generated SQL on the real database.

    python train_grpo.py                     # after train_sft.py, same --output_dir
    python train_grpo.py --preset smoke
    python train_grpo.py --grpo_start base   # a new LoRA on the base model: no SFT stage

Reads <output_dir>/sft (with --grpo_start base: nothing; a new LoRA from --lora_r and the other LoRA
fields), saves the trained adapter under <output_dir>/grpo. Each log line
carries the reward mean/std and the fraction of each outcome (match / partial / wrong / invalid /
empty, plus parse failures and timeouts), reported by the reward through TRL's `log_metric` so they
are averaged over all processes; a few sample answers follow each line, and TRL's completion log
keeps every completion with its reward and outcome under grpo/completions/. With --eval_steps N, greedy execution accuracy
on a fixed dev subset is logged as eval/ex every N steps: reward curves cannot show reward hacking.
With --grpo_filter_samples K, prompts whose K answers from the SFT adapter all match are left out
before training (sql_rlvr/pass_rate_filter.py; counts per prompt in grpo/prompt_pass_rates.jsonl, reused by
--resume). The --eval_steps check is sql_rlvr/dev_check.py.

No separate format reward: the execution reward already ranks "no SQL" (-1) and "empty" (-2) below
any query that runs, so a format term would only add a second, weaker signal for the same thing.
"""

from config import GRPO_TRAINER_ARGS, parse_config  # first: it stops Python < 3.11 in one line

import contextlib
import functools
import os
import time
from pathlib import Path

import utils  # model loading, the prompt, and the execution reward (utils.SQLExecutionReward)
from sql_rlvr import agent, benchmarks, run_folders, training
from sql_rlvr.errors import UserError
from sql_rlvr.pass_rate_filter import pass_rate_filter
from sql_rlvr.run_folders import adapter_digest
from sql_rlvr.sql_tool import SQLTool


def finished_sft_digest(sft_dir: Path) -> str:
    """The digest of the finished SFT adapter GRPO starts from; one line when there is none."""
    if not (sft_dir / "run_info.json").exists():
        raise UserError(f"no finished SFT adapter in {sft_dir}: run `python train_sft.py` with the same "
                        "--output_dir (and --preset) first, or pass --grpo_start base to start from the base model")
    utils.read_adapter_config(sft_dir)  # a finished marker without a readable adapter: one line, not a traceback
    return adapter_digest(sft_dir)


def execution_reward(cfg) -> utils.SQLExecutionReward:
    """GRPO's reward (sql_rlvr/execution_reward.py), its worker processes started."""
    reward = utils.SQLExecutionReward(cfg.sql_timeout_s, cfg.reward_workers, utils.RewardValues.from_config(cfg),
                                      num_samples=cfg.num_completions_to_log, rule=utils.benchmark_spec(cfg).rule,
                                      tool_calls=cfg.max_tool_calls > 0, reasoning=cfg.reasoning)
    reward.start()
    return reward


def grpo_rows(cfg, datasets: dict, examples: list[dict], tokenizer,
              template_kwargs: dict | None = None) -> tuple[list[dict], list[int], list[dict]]:
    """GRPO's dataset rows, each prompt rendered from its own benchmark's schema and extras, with its gold
    query, database and match rule (the reward judges each row by its own), and its db_id and question
    (with the gold query, the prompt's name in prompt_pass_rates.jsonl): (rows, prompt lengths, examples
    left out as longer than --max_prompt_length, the tool's description counted in the agentic mode)."""
    template_kwargs = utils.chat_template_kwargs(tokenizer, cfg.reasoning) if template_kwargs is None else template_kwargs
    rows, lengths, skipped = [], [], []
    for ex in examples:
        dataset = datasets[ex["benchmark"]]
        messages = utils.build_messages(dataset.example_schema(ex, cfg.schema_sample_values, cfg.value_hints),
                                        ex["question"], evidence=ex.get("evidence", ""), tokenizer=tokenizer,
                                        reasoning=cfg.reasoning)
        _, n_tokens = agent.model_prompt(tokenizer, messages, template_kwargs, agentic=cfg.max_tool_calls > 0)
        if n_tokens > cfg.max_prompt_length:
            skipped.append(ex)
            continue
        lengths.append(n_tokens)
        rows.append({"prompt": messages, "gold_sql": ex["query"], "db_path": str(dataset.db_path(ex["db_id"])),
                     "rule": benchmarks.get(ex["benchmark"]).rule, "benchmark": ex["benchmark"],
                     "db_id": ex["db_id"], "question": ex["question"]})
    return rows, lengths, skipped


def checked_rows(cfg, datasets: dict, examples: list[dict], tokenizer, template_kwargs: dict,
                 reward: utils.SQLExecutionReward) -> tuple[list[dict], dict]:
    """The rows GRPO trains on (grpo_rows) once each gold query has run: one that fails stops the run now,
    not at step 1000, and empty gold results are left out (free reward). Prints the counts; returns the
    rows and run_info.json's counts (skipped prompts, skipped empty golds, the mix by benchmark)."""
    rows, lengths, skipped = grpo_rows(cfg, datasets, examples, tokenizer, template_kwargs)
    if not rows:
        raise UserError("no training prompt fits in --max_prompt_length")
    names = list(datasets)
    fitting = utils.count_by_benchmark(names, prompts=rows)
    rows, skipped_empty_gold = utils.checked_gold_rows(rows, reward, cfg.grpo_skip_empty_gold)
    by_benchmark = utils.count_by_benchmark(names, prompts=rows, skipped_over_max_prompt_length=skipped)
    for name, counts in by_benchmark.items():
        counts["skipped_empty_gold"] = fitting[name]["prompts"] - counts["prompts"]
    print(f"[grpo] prompts={len(rows)} skipped_over_max_prompt_length={len(skipped)} "
          f"skipped_empty_gold={skipped_empty_gold}; {utils.length_report(lengths)}")
    if len(datasets) > 1:
        print(f"[grpo] training mix: {utils.mix_report(by_benchmark)}")
    if not rows:
        raise UserError("no training prompt left (every gold result is empty); try --grpo_skip_empty_gold false")
    return rows, {"skipped_prompts": len(skipped), "skipped_empty_gold": skipped_empty_gold,
                  "train_benchmarks": by_benchmark}


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


def grpo_args(cfg, out: Path, backend: str, template_kwargs: dict) -> dict:
    """Everything GRPOConfig gets, in one dict (check_trainer_args compares the built trainer with it)."""
    args = training.trainer_args(cfg, out, backend, GRPO_TRAINER_ARGS)  # learning rate, steps, loss, sampling, ...
    args.update(grpo_batch_args(cfg, training.world_size()))  # derived from prompts per step and the group size
    args["chat_template_kwargs"] = template_kwargs or None  # GRPOTrainer applies the template to the prompts itself
    args.update(rollout_args(cfg, backend))
    # TRL's completion log: every completion of the last generation (gathered from all processes, with
    # reward, advantage and outcome) in grpo/completions/*.parquet and wandb at each log step. Its
    # printed table is off (0): sample_lines shows --num_completions_to_log answers in a line each.
    args["log_completions"] = True
    args["num_completions_to_print"] = 0
    if cfg.max_tool_calls > 0:  # the agentic mode: TRL's tool loop, at most N calling turns then one last turn
        args["max_tool_calling_iterations"] = cfg.max_tool_calls
    return args


def tool_environment(cfg, tool: SQLTool | None) -> dict:
    """GRPOTrainer's environment_factory in the agentic mode (none otherwise): each rollout's SQLEnvironment,
    all sharing one tool, whose worker process runs the calls under a hard time limit (sql_rlvr/agent.py)."""
    if tool is None:
        return {}
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # TRL marks it experimental: we test the pinned versions
    return {"environment_factory": lambda: agent.SQLEnvironment(tool, cfg.max_tool_calls)}


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


def show_progress(trainer, reward: utils.SQLExecutionReward, tool: SQLTool | None) -> None:
    """Each log step in one line: reward, its spread, the groups that teach nothing (all answers scored alike),
    dev EX when measured, the tool numbers in the agentic mode, and the outcome mix; then a few sample answers."""
    shown = ("reward", "reward_std", "frac_reward_zero_std", "eval/ex") + (
        ("tool_calls_mean", "answered_after_call") if tool is not None else ())
    training.readable_progress(trainer, "grpo", shown, mix=True, every_log=True, after=sample_lines(reward))


def refuse_unchanged(path: Path, sft_digest: str | None) -> None:
    """Before run_info.json: a GRPO run that changed nothing must never count as finished. From the SFT adapter
    (its digest): the same weights. From the base model (None): every lora_B weight still zero, as a new LoRA
    starts, so it answers as the base model whatever lora_A holds (weight decay moves lora_A without a gradient)."""
    why = "no update happened (every group scored the same? see frac_reward_zero_std in metrics.jsonl)"
    if sft_digest is not None:
        if adapter_digest(path) == sft_digest:
            raise UserError(f"the GRPO adapter in {path} is identical to the SFT adapter: {why}")
        return
    from safetensors import safe_open

    with safe_open(str(path / "adapter_model.safetensors"), framework="pt") as fh:
        moved = any(bool(fh.get_tensor(k).any()) for k in fh.keys() if "lora_B" in k or "lora_embedding_B" in k)
    if not moved:
        raise UserError(f"the GRPO adapter in {path} is still the base model (every lora_B weight is zero): {why}")


def save_and_report(trainer, cfg, out: Path, start_dir: Path | None, info: dict, resume_from: str | None,
                    start: float) -> None:
    """curves.png, then the adapter and run_info.json (refused when the run changed nothing), and the summary."""
    sft_digest = adapter_digest(start_dir) if start_dir else None
    training.plot_metrics(out / "metrics.jsonl", out / "curves.png", "grpo")  # rank 0; also explains a refusal below
    run_folders.save_adapter(trainer, out, {
        "stage": "grpo", "base_model": cfg.model_name, "grpo_start": cfg.grpo_start,
        **({"sft_adapter": str(start_dir), "sft_adapter_sha256": sft_digest} if start_dir else {}),
        "global_step": trainer.state.global_step, **info, "seconds": round(time.time() - start, 1),
        "config": cfg.to_dict(),
    }, check=functools.partial(refuse_unchanged, sft_digest=sft_digest))
    if trainer.is_world_process_zero():
        changed = (f"the adapter changed from the SFT one (sha256 {sft_digest[:12]} -> {adapter_digest(out)[:12]})"
                   if start_dir else f"a new adapter on the base model (sha256 {adapter_digest(out)[:12]})")
        print(training.training_summary("grpo", out, trainer.state.global_step, time.time() - start,
                                       (f"backend={info['backend']}", changed),
                                       resumed_at=run_folders.checkpoint_step(resume_from)))


def main() -> None:
    cfg, _ = parse_config(script="train_grpo.py")
    out = Path(cfg.output_dir) / "grpo"
    # --grpo_start sft: the finished SFT adapter; base: a new LoRA on the base model, no SFT adapter required.
    start_dir = Path(cfg.output_dir) / "sft" if cfg.grpo_start == "sft" else None
    start_digest = finished_sft_digest(start_dir) if start_dir else None
    # The SFT adapter it starts from is part of the run: a checkpoint trained from another one never resumes
    # (--grpo_start is too, through the config: a run from the base model never resumes from the SFT adapter).
    resume_from = run_folders.prepare_output_dir(out, cfg, "run_info.json",
                                                 {"sft_adapter_sha256": start_digest} if start_dir else {})

    datasets = utils.open_training_datasets(cfg)  # Spider and/or BIRD (--train_benchmarks, default --benchmark)
    examples = utils.training_examples(cfg, datasets)
    reward = execution_reward(cfg)  # its worker processes start now, while the model loads; they run the gold checks

    backend = utils.pick_backend(cfg)
    use_vllm_engine = backend == "unsloth" and cfg.fast_inference  # unsloth's colocated vLLM for rollouts
    model, tokenizer = utils.load_model(cfg, backend, adapter=start_dir, trainable=True, fast_inference=use_vllm_engine)
    origin = start_dir or f"the base model, a new LoRA (r={cfg.lora_r}, alpha={cfg.lora_alpha})"
    print(f"[grpo] backend={backend} starting from {origin}: {utils.count_trainable(model):,} trainable parameters")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from sql_rlvr.dev_check import DevEXCallback  # a TrainerCallback: transformers only after unsloth

    # The same checks and template kwargs as SFT and evaluation: GRPO prompts render as evaluation's do.
    template_kwargs = agent.checked_template_kwargs(model, tokenizer, cfg.model_name, agentic=cfg.max_tool_calls > 0,
                                                    reasoning=cfg.reasoning)
    if cfg.reasoning:  # a thinking template opens the think block in the prompt: the completions start inside it
        reward.think_opener = utils.think_opener(tokenizer, template_kwargs)
    rows, row_counts = checked_rows(cfg, datasets, examples, tokenizer, template_kwargs, reward)
    passed = grpo_args(cfg, out, backend, template_kwargs)
    args = GRPOConfig(**passed)
    tool = SQLTool.from_config(cfg) if cfg.max_tool_calls > 0 else None  # the agentic mode's, for every rollout
    filtering = {}
    # The reward's and the tool's worker processes stop when this block ends, however it ends.
    with contextlib.closing(reward), (contextlib.closing(tool) if tool else contextlib.nullcontext()):
        if cfg.grpo_filter_samples > 0:  # leave out the prompts the start model already answers right every time
            rows, filtering = pass_rate_filter(cfg, out, rows, model=model, tokenizer=tokenizer, backend=backend,
                                               reward=reward, tool=tool, template_kwargs=template_kwargs, args=args,
                                               sft_dir=start_dir, sft_digest=start_digest, resuming=resume_from is not None)
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tokenizer, **tool_environment(cfg, tool), callbacks=[
                                  training.metrics_callback(out / "metrics.jsonl", resume=resume_from is not None)])
        training.check_trainer_args(trainer, passed)  # unsloth or TRL changed one of them: stop now, in one line
        if cfg.eval_steps > 0:  # on --benchmark's dev split, whatever the training mix
            dev = datasets[cfg.benchmark] if cfg.benchmark in datasets else utils.open_dataset(cfg)
            DevEXCallback(cfg, dev, backend, tokenizer, out, tool, template_kwargs).add_to(trainer)
        info = {"backend": backend, "prompts": len(rows), **row_counts,
                "trainer_args": training.effective_trainer_args(trainer, GRPO_TRAINER_ARGS.values()),
                **({"pass_rate_filter": filtering} if filtering else {})}
        trainer.add_callback(run_folders.run_identity_callback(out))  # each checkpoint names its run (--resume checks it)
        show_progress(trainer, reward, tool)
        start = time.time()
        trainer.train(resume_from_checkpoint=resume_from)
    save_and_report(trainer, cfg, out, start_dir, info, resume_from, start)


if __name__ == "__main__":
    run_folders.run_main(main)
