"""Stage 2: GRPO on the SFT adapter, rewarded by executing the generated SQL on the real database.

    python train_grpo.py                     # after train_sft.py, same --output_dir
    python train_grpo.py --preset smoke

Reads <output_dir>/sft, saves the further-trained adapter under <output_dir>/grpo. Each log line
carries the reward mean/std, the fraction of each outcome (match / partial / wrong / invalid / empty,
plus parse failures and timeouts) and a few sample completions, so a run that is not learning shows
it within minutes.

No separate format reward: the execution reward already ranks "no SQL" (-1) and "empty" (-2) below
any query that runs, so a format term would only add a second, weaker signal for the same thing.
"""

import hashlib
import time
from pathlib import Path

import utils
from config import parse_config


def adapter_digest(path: Path) -> str:
    return hashlib.sha256((path / "adapter_model.safetensors").read_bytes()).hexdigest()


def main() -> None:
    cfg, _ = parse_config(script="train_grpo.py")
    sft_dir = Path(cfg.output_dir) / "sft"
    out = Path(cfg.output_dir) / "grpo"
    if not (sft_dir / "run_info.json").exists():
        raise utils.UserError(f"no finished SFT adapter in {sft_dir}: run `python train_sft.py` with the same "
                              "--output_dir (and --preset) first")
    resume_from = utils.prepare_output_dir(out, cfg, "run_info.json")

    spider = utils.Spider.open(cfg.spider_dir)
    examples = spider.examples("train", cfg.use_train_others)
    if cfg.max_train_examples > 0:
        examples = examples[: cfg.max_train_examples]

    backend = utils.pick_backend(cfg)
    model, tokenizer = utils.load_model(cfg, backend, adapter=sft_dir, trainable=True,
                                        fast_inference=backend == "unsloth")  # vLLM rollouts on unsloth
    print(f"[grpo] backend={backend} starting from {sft_dir}: {utils.count_trainable(model):,} trainable parameters")

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows, lengths, skipped = [], [], 0
    for ex in examples:
        messages = utils.build_messages(spider.schema(ex["db_id"], cfg.schema_sample_values), ex["question"])
        n_tokens = len(tokenizer(utils.render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"])
        if n_tokens > cfg.max_prompt_length:
            skipped += 1
            continue
        lengths.append(n_tokens)
        rows.append({"prompt": messages, "gold_sql": ex["query"], "db_path": str(spider.db_path(ex["db_id"]))})
    if not rows:
        raise utils.UserError("no training prompt fits in --max_prompt_length")

    reward = utils.SQLExecutionReward(cfg.sql_timeout_s, cfg.reward_workers, utils.RewardValues.from_config(cfg),
                                      num_samples=cfg.num_completions_to_log)
    # Fail now, not at step 1000, if a gold query does not run; leave out empty gold results (free reward).
    rows, skipped_empty_gold = utils.checked_gold_rows(rows, reward, cfg.grpo_skip_empty_gold)
    print(f"[grpo] prompts={len(rows)} skipped_over_max_prompt_length={skipped} "
          f"skipped_empty_gold={skipped_empty_gold}; {utils.length_report(lengths)}")
    if not rows:
        raise utils.UserError("no training prompt left (every gold result is empty); try --grpo_skip_empty_gold false")

    class SQLGRPOTrainer(GRPOTrainer):
        """GRPOTrainer whose log lines also carry the outcome fractions and a few sample answers."""

        def log(self, logs: dict, start_time: float | None = None) -> None:
            if "loss" in logs or "reward" in logs:
                logs.update(reward.pop_metrics())
            super().log(logs, start_time)
            if self.is_world_process_zero() and "reward" in logs:
                shown = {k: round(v, 3) for k, v in logs.items()
                         if k in ("reward", "reward_std", "frac_reward_zero_std") or k.startswith("outcome/")}
                print(f"[grpo] step {self.state.global_step}: {shown}")
                for sample in reward.samples:
                    print(f"    {sample['outcome']:>8} {sample['reward']:+.2f}  {sample['completion'][:120]!r}")

    world_size = utils.world_size()
    args = GRPOConfig(
        output_dir=str(out),
        learning_rate=cfg.grpo_learning_rate,
        max_steps=cfg.grpo_max_steps,
        per_device_train_batch_size=cfg.grpo_per_device_batch(world_size),
        gradient_accumulation_steps=cfg.grpo_grad_accum,
        num_generations=cfg.num_generations,
        temperature=cfg.temperature,
        beta=cfg.beta,
        max_completion_length=cfg.max_completion_length,
        # unsloth: its own colocated vLLM (fast_inference). hf: plain generate, or TRL's vLLM server mode,
        # where `trl vllm-serve` generates on its own GPUs and the trainer syncs LoRA-merged weights to it.
        use_vllm=backend == "unsloth" or cfg.vllm_mode == "server",
        vllm_mode="server" if backend == "hf" and cfg.vllm_mode == "server" else "colocate",
        vllm_server_host=cfg.vllm_server_host,
        vllm_server_port=cfg.vllm_server_port,
        vllm_gpu_memory_utilization=cfg.gpu_memory_utilization,
        bf16=utils.bf16_supported(),
        use_cpu=not utils.cuda_available(),  # several processes without a GPU: gloo (MULTI_CPU)
        gradient_checkpointing=cfg.gradient_checkpointing and backend == "hf",
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=utils.report_to(cfg),
        seed=cfg.seed,
    )
    trainer = SQLGRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer,
                             callbacks=[utils.metrics_callback(out / "metrics.jsonl", resume=resume_from is not None)])
    start = time.time()
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        reward.close()
    sft_digest = adapter_digest(sft_dir)
    utils.save_adapter(trainer, out, {
        "stage": "grpo", "base_model": cfg.model_name, "backend": backend, "sft_adapter": str(sft_dir),
        "sft_adapter_sha256": sft_digest, "global_step": trainer.state.global_step, "prompts": len(rows),
        "skipped_prompts": skipped, "skipped_empty_gold": skipped_empty_gold, "seconds": round(time.time() - start, 1), "config": cfg.to_dict(),
    })
    if not trainer.is_world_process_zero():
        return
    utils.plot_metrics(out / "metrics.jsonl", out / "curves.png", "grpo")
    if adapter_digest(out) == sft_digest:
        raise utils.UserError(f"the GRPO adapter in {out} is identical to the SFT adapter: no update happened "
                              "(every group scored the same? see frac_reward_zero_std in metrics.jsonl)")
    print(f"[grpo] saved adapter to {out} after {trainer.state.global_step} steps")


if __name__ == "__main__":
    utils.run_main(main)
