"""Stage 1: LoRA supervised fine-tuning on Spider's question -> SQL pairs.

    python train_sft.py                      # the real run (Qwen3-4B-Instruct-2507, CUDA + unsloth)
    python train_sft.py --preset smoke       # tiny model + shipped mini-Spider, seconds on a CPU
    python train_sft.py --reasoning true --sft_traces traces.jsonl   # reasoning, then the SQL (docs/reasoning.md)

Saves the adapter and tokenizer in PEFT format under <output_dir>/sft (checkpoints beside it).
"""

from __future__ import annotations

from config import SFT_TRAINER_ARGS, Config, parse_config  # first: it stops Python < 3.11 in one line

import time
from pathlib import Path

import utils
from sql_rlvr import agent, run_folders, traces, training
from sql_rlvr.errors import UserError
from sql_rlvr.sql_tool import SQLTool


def read_sft_traces(cfg: Config) -> tuple[list[traces.Trace], str] | None:
    """--reasoning true: the traces of --sft_traces and the file's sha256, read before any model is loaded
    (None without reasoning). Every combination SFT cannot train is one line here."""
    if not cfg.reasoning:
        if cfg.sft_traces:
            raise UserError("--sft_traces holds answers with reasoning: add --reasoning true (the reasoning prompt), "
                            "or drop --sft_traces to train on the gold SQL")
        return None
    if cfg.max_tool_calls > 0:
        raise UserError("SFT with --reasoning true has no agentic mode (reasoning traces are single answers, not "
                        "conversations with the database): drop --max_tool_calls for SFT, or --reasoning; GRPO and "
                        "evaluation take both")
    if not cfg.sft_traces:
        raise UserError("SFT with --reasoning true trains on answers with reasoning: pass --sft_traces FILE (JSONL, "
                        "one {db_id, question, completion} a line); make one from the model itself with `python "
                        "evaluate.py --self_traces traces.jsonl --num_samples 8 --reasoning true --adapter none`, or "
                        "bring a teacher's file in that format (docs/reasoning.md)")
    return traces.read_traces(cfg.sft_traces)


def build_trainer(cfg: Config, out: Path, resume_from: str | None = None,
                  sft_traces: tuple[list[traces.Trace], str] | None = None):
    """The SFTTrainer of a run (also used by the tests to inspect the real loss mask). Returns (trainer, info).
    `sft_traces`: read_sft_traces(cfg), when the caller has read them already."""
    # Data first: a missing dataset or trace file fails in a second, before any model is loaded.
    sft_traces = sft_traces if sft_traces is not None else read_sft_traces(cfg)
    datasets = utils.open_training_datasets(cfg)  # Spider and/or BIRD (--train_benchmarks, default --benchmark)
    examples = utils.training_examples(cfg, datasets)

    backend = utils.pick_backend(cfg)
    model, tokenizer = utils.load_model(cfg, backend, adapter=None, trainable=True)  # unsloth, if used, first

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    # Conversational prompt-completion: TRL puts the loss on the completion only, end-of-turn token
    # included, with any chat template (Qwen's has no {% generation %} markers for assistant_only_loss).
    # The agentic mode (--max_tool_calls N) passes token ids with a completion mask instead: its tool
    # results sit between the model's turns and must carry no loss.
    # The model's own template is checked first: the labels must be exactly the SQL + end of turn.
    template_kwargs = agent.checked_template_kwargs(model, tokenizer, cfg.model_name, agentic=cfg.max_tool_calls > 0,
                                                    reasoning=cfg.reasoning)
    # --reasoning true: the answers are the verified traces (sql_rlvr/traces.py), checked by execution now, each
    # written as the template renders it; a question without one is left out. Else each example's gold SQL.
    answers, trace_info = [(ex, ex["query"], None) for ex in examples], None
    if sft_traces is not None:
        opener = utils.think_opener(tokenizer, template_kwargs)
        answers, trace_info = traces.verified_traces(cfg, *sft_traces, examples, datasets, opener,
                                                     bool(opener) or bool(template_kwargs.get("enable_thinking")))
    # The agentic mode: each example becomes a trajectory (agent.sft_trajectory) whose call this tool runs.
    tool = SQLTool.from_config(cfg) if cfg.max_tool_calls > 0 else None
    rows, lengths, used, skipped = [], [], [], []
    try:
        for ex, answer, line in answers:
            dataset = datasets[ex["benchmark"]]  # its own schema and prompt extras (BIRD: evidence, descriptions)
            messages = utils.build_messages(dataset.example_schema(ex, cfg.schema_sample_values, cfg.value_hints),
                                            ex["question"], answer, evidence=ex.get("evidence", ""), tokenizer=tokenizer,
                                            reasoning=cfg.reasoning)
            if tool is not None:
                # Pre-tokenized, as GRPO and evaluation build a conversation: the loss on the model's turns only.
                ids, mask, _ = agent.sft_trajectory(tokenizer, messages[:-1], ex["query"],
                                                    dataset.db_path(ex["db_id"]), tool, cfg.max_tool_calls,
                                                    template_kwargs)
                row = {"input_ids": ids, "completion_mask": mask}
                n_tokens = len(ids)
            else:
                full = tokenizer.apply_chat_template(messages, tokenize=False, **template_kwargs)
                n_tokens = len(tokenizer(full, add_special_tokens=False)["input_ids"])
                prompt = utils.render_prompt(tokenizer, messages[:-1], template_kwargs) if line is not None else ""
                if line is not None and not full.startswith(prompt + answer):  # a trace, as the template renders it
                    raise UserError(f"the chat template of {cfg.model_name} renders the trace on line {line} of "
                                    f"{cfg.sft_traces} otherwise than written: SFT would train another text than "
                                    "generation produces (docs/reasoning.md)")
                row = {"prompt": messages[:-1], "completion": messages[-1:]}
                if template_kwargs:  # TRL (1.15 and 1.16) reads per-example template kwargs from this column
                    row["chat_template_kwargs"] = template_kwargs
            if n_tokens > cfg.max_seq_length:
                skipped.append(ex)  # never cut through a schema: a truncated example teaches the wrong thing
                continue
            lengths.append(n_tokens)
            used.append(ex)
            rows.append(row)
    finally:
        if tool is not None:
            tool.close()
    by_benchmark = utils.count_by_benchmark(list(datasets), examples=used, skipped_over_max_seq_length=skipped)
    mode = f" agentic (a call with the gold query, its result, the answer; --max_tool_calls {cfg.max_tool_calls})" if tool else ""
    if trace_info:
        mode += f" reasoning (verified traces for {trace_info['questions']} of {len(examples)} questions)"
    print(f"[sft] backend={backend} model={cfg.model_name}{mode} examples={len(rows)} "
          f"skipped_over_max_seq_length={len(skipped)}; {utils.length_report(lengths)}")
    if len(datasets) > 1:
        print(f"[sft] training mix: {utils.mix_report(by_benchmark)}")
    if not rows:
        raise UserError("no training example fits in --max_seq_length")
    longest = max(range(len(rows)), key=lengths.__getitem__)

    passed = dict(
        training.trainer_args(cfg, out, backend, SFT_TRAINER_ARGS),  # learning rate, steps, batch, loss, ...
        completion_only_loss=True,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model=model, args=SFTConfig(**passed), train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer,
                         callbacks=[training.metrics_callback(out / "metrics.jsonl", resume=resume_from is not None)])
    training.check_trainer_args(trainer, passed)  # unsloth or TRL changed one of them: stop now, in one line
    info = {"longest_example": longest, "stage": "sft", "base_model": cfg.model_name, "backend": backend, "train_examples": len(rows),
            "skipped_examples": len(skipped), "train_benchmarks": by_benchmark, "config": cfg.to_dict(),
            "trainer_args": training.effective_trainer_args(trainer, SFT_TRAINER_ARGS.values())}
    if trace_info is not None:  # the file, its sha256 (also what --resume checks) and what became of each record
        info.update(sft_traces=trace_info, sft_traces_sha256=trace_info["sha256"])
    return trainer, info


def main() -> None:
    cfg, _ = parse_config(script="train_sft.py")
    out = Path(cfg.output_dir) / "sft"
    sft_traces = read_sft_traces(cfg)  # the trace file's content is part of the run: --resume checks its sha256
    resume_from = run_folders.prepare_output_dir(out, cfg, "run_info.json",
                                                 {"sft_traces_sha256": sft_traces[1]} if sft_traces else None)
    trainer, info = build_trainer(cfg, out, resume_from, sft_traces)
    trainer.add_callback(run_folders.run_identity_callback(out))  # each checkpoint names its run (--resume checks it)
    training.readable_progress(trainer, "sft", ("loss", "learning_rate", "mean_token_accuracy"))
    # The trainer shuffles, so the longest example could come hours in: try a full batch of it now,
    # and an out-of-memory error shows in the first minute.
    training.memory_probe(trainer, info.pop("longest_example"), cfg.sft_batch_size, info["backend"])
    start = time.time()
    trainer.train(resume_from_checkpoint=resume_from)
    run_folders.save_adapter(trainer, out, {**info, "global_step": trainer.state.global_step,
                                             "seconds": round(time.time() - start, 1)})
    if not trainer.is_world_process_zero():
        return
    training.plot_metrics(out / "metrics.jsonl", out / "curves.png", "sft")
    print(training.training_summary("sft", out, trainer.state.global_step, time.time() - start,
                                   (f"backend={info['backend']}",), resumed_at=run_folders.checkpoint_step(resume_from)))


if __name__ == "__main__":
    run_folders.run_main(main)
