"""GRPO's pass-rate filter (--grpo_filter_samples K): before training, each prompt is answered K times by
the model GRPO starts from (the SFT adapter, or with --grpo_start base the base model), as the rollouts will
answer it, and scored by the reward; a prompt whose K answers all match is left out (its group would have
zero reward spread, so zero advantage: it only costs rollouts). The counts go to
<output_dir>/grpo/prompt_pass_rates.jsonl, one record per prompt (db_id, question, gold_sql, passes, k,
sft_adapter_sha256: null for the base model), which --resume reuses instead of sampling again.

A module of its own, not a part of train_grpo.py: it is a stage of its own before training, with its own
sampling, its own file and its own --resume rule; train_grpo.py calls pass_rate_filter and nothing else.
Each GRPO row names its prompt by its own db_id, question and gold_sql (prompt_key).

Imports agent, config, errors, execution_reward, progress, run_folders, sql_tool and utils; torch.distributed
inside a function (several processes gather their counts).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import utils
from config import Config
from sql_rlvr import agent, run_folders
from sql_rlvr.errors import UserError
from sql_rlvr.execution_reward import SQLExecutionReward
from sql_rlvr.progress import Report, progress_line
from sql_rlvr.sql_tool import SQLTool


def prompt_key(row: dict) -> tuple[str, str, str]:
    """How prompt_pass_rates.jsonl names a GRPO row's prompt: its db_id, question and gold SQL."""
    return row["db_id"], row["question"], row["gold_sql"]


def pass_rate_filter(cfg: Config, out: Path, rows: list[dict], *, model, tokenizer, backend: str,
                     reward: SQLExecutionReward, tool: SQLTool | None, template_kwargs: dict, sft_dir: Path | None,
                     sft_digest: str | None, resuming: bool, args) -> tuple[list[dict], dict]:
    """--grpo_filter_samples K: (the rows left for GRPO, the counts for run_info.json). A new run samples
    and writes <out>/prompt_pass_rates.jsonl (one record per prompt) before training starts; --resume
    reuses that file, so an interrupted run never samples again. `args`: the built GRPOConfig (device,
    process index, world size). `sft_dir` and `sft_digest`: the SFT adapter GRPO starts from, or None for
    --grpo_start base (`model`'s new LoRA, its lora_B zero, answers as the base model)."""
    k = cfg.grpo_filter_samples
    path = out / run_folders.PASS_RATES_FILE
    keys = [prompt_key(row) for row in rows]
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
    kept = leave_out_always_matched(rows, counts, k, "the SFT adapter" if sft_digest is not None else "the base model")
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


def pass_counts(cfg: Config, model, tokenizer, backend: str, rows: list[dict], reward: SQLExecutionReward,
                adapter_dir: Path | None, template_kwargs: dict, rank: int = 0, world: int = 1,
                tool: SQLTool | None = None) -> tuple[list[int], int]:
    """For each row, how many of --grpo_filter_samples answers of the model (before any GRPO step: the SFT
    adapter, or with adapter_dir None the base model, which a new LoRA answers as) match its gold result; and
    how many answers could not be scored (their worker process died: scored as not matching), reported here
    rather than in GRPO's first step.

    The prompts are rendered as GRPOTrainer renders them (the same chat template kwargs) and sampled as
    the rollouts are (temperature, top_p, top_k, max_completion_length): vLLM on unsloth with
    fast_inference, batched generate otherwise; with `tool` (the agentic mode) each answer is a
    conversation, as the rollouts will be. Each answer is scored by the reward itself (its match rule,
    its cached gold results, its worker processes). Under several processes each samples every world-th
    prompt and the counts are gathered, so every process trains on the same prompts.
    """
    k = cfg.grpo_filter_samples
    mine = list(range(rank, len(rows), world))
    prompts, _, _ = agent.model_prompts(tokenizer, [rows[i]["prompt"] for i in mine], template_kwargs,
                                        tool is not None, cfg.max_prompt_length)
    rollout_rows = max(k, cfg.grpo_prompts_per_step * cfg.num_generations // world)  # what one rollout generates at once
    chunk = max(rollout_rows // k, -(-len(mine) // 10))  # at most about ten chunks
    share = f" (this process's share of {len(rows)})" if world > 1 else ""
    counts: list[int] = []
    start, failures = time.time(), reward.worker_failures
    said = start
    with utils.inference_mode(model, tokenizer, backend, cfg.fast_inference):
        for first in range(0, len(mine), chunk):
            batch = mine[first:first + chunk]
            # A long chunk's generation reports too (a log's lines at --progress_every_s; no bar under the trainer's).
            report = Report(f"[grpo] pass rates, prompts {first + 1}-{first + len(batch)} of {len(mine)}",
                            cfg.progress_every_s, bar=False, unit="prompts") if rank == 0 else False
            # Seeded per chunk (by its first prompt's index), so that chunks do not replay one random stream.
            answers = agent.answers(model, tokenizer, backend, prompts[first:first + chunk],
                                    [rows[i]["db_path"] for i in batch], tool=tool, max_calls=cfg.max_tool_calls,
                                    template_kwargs=template_kwargs, max_seq_length=cfg.max_seq_length,
                                    adapter_dir=adapter_dir, max_new_tokens=cfg.max_completion_length,
                                    temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                                    num_return_sequences=k, seed=cfg.seed + batch[0], batch_size=rollout_rows,
                                    progress=report, fast_inference=cfg.fast_inference)
            scored = reward.score(answers, [rows[i]["gold_sql"] for i in batch for _ in range(k)],
                                  [rows[i]["db_path"] for i in batch for _ in range(k)],
                                  [rows[i].get("rule") for i in batch for _ in range(k)])  # each row's own rule
            counts += [sum(outcome == "match" for _, outcome, _ in scored[j * k:(j + 1) * k]) for j in range(len(batch))]
            # A line at the pace of --progress_every_s (and the last one): prompts done, rate, time left.
            if rank == 0 and (time.time() - said >= cfg.progress_every_s or len(counts) == len(mine)):
                said = time.time()
                print(progress_line(f"[grpo] pass rates{share}", len(counts), len(mine), said - start,
                                    f"prompts x {k} answers sampled and scored"), flush=True)
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


def reused_pass_counts(path: Path, keys: list[tuple[str, str, str]], k: int, sft_digest: str | None) -> list[int]:
    """The pass counts --resume reuses: `path` must hold one record per prompt of this run, in order
    (`keys`: db_id, question, gold SQL), each of K answers of this SFT adapter (None: of the base model);
    else a one-line refusal."""
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
        start = f"another SFT adapter than {sft_digest[:12]}" if sft_digest else "an SFT adapter, not the base model"
        raise UserError(f"--resume: {path} was sampled from {start}: {again}")
    if [(r.get("db_id"), r.get("question"), r.get("gold_sql")) for r in records] != keys:
        raise UserError(f"--resume: {path} was sampled for another set of prompts ({len(records)}; this run has "
                        f"{len(keys)}): {again}")
    counts = [r.get("passes") for r in records]
    if not all(isinstance(c, int) and 0 <= c <= k for c in counts):
        raise UserError(f"--resume: {path} has a pass count outside 0..{k}: {again}")
    return counts


def leave_out_always_matched(rows: list[dict], counts: list[int], k: int, model: str = "the SFT adapter") -> list[dict]:
    """The rows GRPO trains on: those whose K sampled answers did not all match (a group that always
    matches has zero reward spread, so zero advantage: it only costs rollouts). None left: one line
    (`model`: who answered, the SFT adapter or the base model)."""
    kept = [row for row, passes in zip(rows, counts) if passes < k]
    if not kept:
        raise UserError(f"--grpo_filter_samples {k}: {model} answered each of the {len(rows)} training prompts "
                        f"right {k} times out of {k}, so no prompt is left for GRPO to learn from; train on harder or "
                        "more questions, or pass --grpo_filter_samples 0")
    return kept
