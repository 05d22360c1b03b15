"""Stage 1: LoRA supervised fine-tuning on Spider's question -> SQL pairs.

    python train_sft.py                      # the real run (Qwen3-4B-Instruct-2507, CUDA + unsloth)
    python train_sft.py --preset smoke       # tiny model + shipped mini-Spider, seconds on a CPU

Saves the adapter and tokenizer in PEFT format under <output_dir>/sft (checkpoints beside it).
"""

from __future__ import annotations

import sys

if sys.version_info < (3, 11):  # the GPU set's trl 1.15.0 needs 3.11: say so in one line, not in a traceback
    sys.exit(f"error: sql-rlvr needs Python 3.11 or newer; this is Python {sys.version.split()[0]}")

import time
from pathlib import Path

import utils
from config import SFT_TRAINER_ARGS, Config, parse_config


def build_trainer(cfg: Config, out: Path, resume_from: str | None = None):
    """The SFTTrainer of a run (also used by the tests to inspect the real loss mask). Returns (trainer, info)."""
    # Data first: a missing dataset fails in a second, before any model is loaded.
    spider = utils.open_benchmark(cfg)  # Spider or BIRD (--benchmark)
    examples = spider.examples("train", cfg.use_train_others)
    if cfg.max_train_examples > 0:  # a seeded sample over every database, in dataset order
        examples = [examples[i] for i in utils.stratified_subset(examples, cfg.max_train_examples, cfg.seed, ["db_id"])]

    backend = utils.pick_backend(cfg)
    model, tokenizer = utils.load_model(cfg, backend, adapter=None, trainable=True)  # unsloth, if used, first

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    # Conversational prompt-completion: TRL puts the loss on the completion only, end-of-turn token
    # included, with any chat template (Qwen's has no {% generation %} markers for assistant_only_loss).
    # The model's own template is checked first: the labels must be exactly the SQL + end of turn.
    template_kwargs = utils.check_chat_template(tokenizer, cfg.model_name, utils.stop_token_ids(model, tokenizer))
    rows, lengths, skipped = [], [], 0
    for ex in examples:
        messages = utils.build_messages(spider.schema(ex["db_id"], cfg.schema_sample_values), ex["question"], ex["query"],
                                        evidence=ex.get("evidence", ""), tokenizer=tokenizer)
        full = tokenizer.apply_chat_template(messages, tokenize=False, **template_kwargs)
        n_tokens = len(tokenizer(full, add_special_tokens=False)["input_ids"])
        if n_tokens > cfg.max_seq_length:
            skipped += 1  # never cut through a schema: a truncated example teaches the wrong thing
            continue
        lengths.append(n_tokens)
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
        if template_kwargs:  # TRL (1.15 and 1.16) reads per-example template kwargs from this column
            rows[-1]["chat_template_kwargs"] = template_kwargs
    print(f"[sft] backend={backend} model={cfg.model_name} examples={len(rows)} "
          f"skipped_over_max_seq_length={skipped}; {utils.length_report(lengths)}")
    if not rows:
        raise utils.UserError("no training example fits in --max_seq_length")
    longest = max(range(len(rows)), key=lengths.__getitem__)

    on_cuda = utils.cuda_available()
    args = SFTConfig(
        output_dir=str(out),
        learning_rate=cfg.sft_learning_rate,
        num_train_epochs=cfg.sft_epochs,
        max_steps=cfg.sft_max_steps,
        per_device_train_batch_size=cfg.sft_batch_size,
        gradient_accumulation_steps=cfg.sft_grad_accum,
        warmup_steps=cfg.sft_warmup_ratio,  # a float in [0, 1) is a ratio of total steps (transformers 5)
        lr_scheduler_type=cfg.sft_lr_scheduler_type,
        # Every setting that changes the run is passed: unsloth's configs have other defaults (config.py).
        optim=cfg.optim,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        loss_type=cfg.sft_loss_type,
        max_length=cfg.max_seq_length,
        completion_only_loss=True,
        bf16=on_cuda and utils.bf16_supported(),
        gradient_checkpointing=cfg.gradient_checkpointing and backend == "hf",  # unsloth applies its own
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=utils.report_to(cfg),
        seed=cfg.seed,
        dataloader_num_workers=0,
        use_cpu=not on_cuda,  # with several processes and no GPU, accelerate then uses gloo (MULTI_CPU)
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         callbacks=[utils.metrics_callback(out / "metrics.jsonl", resume=resume_from is not None)])
    info = {"longest_example": longest, "stage": "sft", "base_model": cfg.model_name, "backend": backend, "train_examples": len(rows),
            "skipped_examples": skipped, "config": cfg.to_dict(),
            "trainer_args": utils.effective_trainer_args(trainer, SFT_TRAINER_ARGS.values())}
    return trainer, info


def main() -> None:
    cfg, _ = parse_config(script="train_sft.py")
    out = Path(cfg.output_dir) / "sft"
    resume_from = utils.prepare_output_dir(out, cfg, "run_info.json")
    trainer, info = build_trainer(cfg, out, resume_from)
    trainer.add_callback(utils.run_identity_callback(out))  # each checkpoint names its run (--resume checks it)
    utils.readable_progress(trainer, "sft", ("loss", "learning_rate", "mean_token_accuracy"))
    # The trainer shuffles, so the longest example could come hours in: try a full batch of it now,
    # and an out-of-memory error shows in the first minute.
    utils.memory_probe(trainer, info.pop("longest_example"), cfg.sft_batch_size, info["backend"])
    start = time.time()
    trainer.train(resume_from_checkpoint=resume_from)
    utils.save_adapter(trainer, out, {**info, "global_step": trainer.state.global_step,
                                      "seconds": round(time.time() - start, 1)})
    if not trainer.is_world_process_zero():
        return
    utils.plot_metrics(out / "metrics.jsonl", out / "curves.png", "sft")
    print(utils.training_summary("sft", out, trainer.state.global_step, time.time() - start,
                                 (f"backend={info['backend']}",)))


if __name__ == "__main__":
    utils.run_main(main)
