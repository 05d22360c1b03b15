"""The levers this project has, zero-shot on a real model: direct answer, reasoning, value hints, both, the
agentic mode, voting; and how many sampled reasoned answers verify (the self-trace yield).

What it measures
    Each lever is one `evaluate.py --adapter none` run of the same real model on the same seeded subset of
    Spider dev (`--max_eval_examples N --seed S`: stratified by database and hardness), into its own folder:
      direct             the default prompt, one SQLite query, greedy
      reasoning          --reasoning true: reason step by step, the final query in a ```sql block
      value_hints        --value_hints 3: stored values that match the question's words in the schema
      reasoning+hints    both
      agentic            --max_tool_calls 2: up to 2 queries on the database before the answer
      vote4              --num_samples 3: greedy + 3 sampled answers (T=0.8), voted on by execution
    and, with --yield_questions M > 0, `reasoning_yield`: --reasoning true --num_samples K-1 on the first M
    of those questions, whose candidates.jsonl says how many of the K sampled-or-greedy reasoned answers
    give the gold result: what the self-trace command (evaluate.py --self_traces) keeps.
    Per lever: EX, the paired difference from `direct` on the same questions with its 95% interval
    (normal approximation of the mean of per-question differences), the greedy answers' length in
    tokens (median / p95, metrics.json's completion_tokens), answers with no final query, and generation
    seconds per question on this machine.

How to run (from the repository root, project venv active; ~1 min per reasoned answer on 2 cores)
    bash ../shared/tools/make_coder_model.sh .venv/bin/python         # Qwen2.5-Coder-0.5B-Instruct
    python bench/reasoning_levers.py --model_dir /tmp/qwen2.5-coder-0.5b-instruct --questions 40
    python bench/reasoning_levers.py ... --table_only                 # the table from the folders written

Exits 0 with one SKIP line when the model or Spider is missing. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from common import REPO_DIR, SHARED_DIR, machine_line, skip, table

LEVERS: dict[str, list[str]] = {
    "direct": [],
    "reasoning": ["--reasoning", "true"],
    "value_hints": ["--value_hints", "3"],
    "reasoning+hints": ["--reasoning", "true", "--value_hints", "3"],
    "agentic": ["--max_tool_calls", "2"],
    "vote4": ["--num_samples", "3"],
}


def run_lever(name: str, flags: list[str], args: argparse.Namespace, questions: int) -> float:
    """One evaluate.py run into <out>/<name>; its wall time in seconds (also in <out>/<name>/bench.json)."""
    out = Path(args.out) / name
    command = [sys.executable, str(REPO_DIR / "evaluate.py"), "--adapter", "none", "--model_name", args.model_dir,
               "--spider_dir", args.spider_dir, "--max_eval_examples", str(questions), "--seed", str(args.seed),
               "--output_dir", str(out), "--overwrite", "--backend", "hf", "--torch_threads", str(args.torch_threads),
               "--eval_batch_size", str(args.batch_size), *flags]
    if args.reasoning_tokens and "--reasoning" in flags:
        command += ["--max_completion_length", str(args.reasoning_tokens)]
    print(f"[bench] {name}: {' '.join(command)}", flush=True)
    start = time.time()
    with open(Path(args.out) / f"{name}.log", "w") as log:
        done = subprocess.run(command, cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.time() - start
    if done.returncode != 0:
        print(f"[bench] {name} failed (exit {done.returncode}): see {Path(args.out) / f'{name}.log'}", flush=True)
    else:
        (out / "eval" / "base" / "bench.json").write_text(json.dumps({"wall_seconds": round(seconds, 1),
                                                                      "command": command, "machine": machine_line()}))
    return seconds


def read_lever(out: Path, name: str) -> tuple[dict, list[dict]] | None:
    folder = out / name / "eval" / "base"
    if not (folder / "metrics.json").exists():
        return None
    metrics = json.loads((folder / "metrics.json").read_text())
    records = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines() if line.strip()]
    return metrics, records


def paired(base: list[dict], other: list[dict]) -> str:
    """Mean per-question difference of exec_match (other - base) with a 95% normal interval."""
    if [r["db_id"] for r in base] != [r["db_id"] for r in other] or not base:
        return "-"
    diffs = [int(o["exec_match"]) - int(b["exec_match"]) for b, o in zip(base, other)]
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
    half = 1.96 * sd / math.sqrt(n)
    return f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"


def yield_line(out: Path) -> str | None:
    """How many of the K reasoned answers per question verify (reasoning_yield's candidates.jsonl)."""
    path = out / "reasoning_yield" / "eval" / "base" / "candidates.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    k = len(rows[0]["candidates"])
    verified = [sum(c["exec_match"] for c in row["candidates"]) for row in rows]
    counts = [verified.count(v) for v in range(k + 1)]
    return (f"self-trace yield: {sum(verified)} of {k * len(rows)} reasoned answers verify ({sum(verified) / (k * len(rows)):.3f}); "
            f"{sum(v > 0 for v in verified)} of {len(rows)} questions have at least one; questions by verified "
            f"answers 0..{k}: {counts}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", default=os.environ.get("REAL_MODEL_DIR", "/tmp/qwen2.5-coder-0.5b-instruct"))
    parser.add_argument("--spider_dir", default=str(SHARED_DIR / "spider"))
    parser.add_argument("--questions", type=int, default=40, help="seeded Spider dev questions (>= 40 for the docs)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated, of {','.join(LEVERS)}")
    parser.add_argument("--yield_questions", type=int, default=0, help="questions of the self-trace yield run (0 = off)")
    parser.add_argument("--yield_samples", type=int, default=4, help="reasoned answers per question in that run")
    parser.add_argument("--reasoning_tokens", type=int, default=0,
                        help="--max_completion_length of the reasoning levers (0 = the --reasoning default)")
    parser.add_argument("--torch_threads", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--out", default=str(REPO_DIR / "outputs" / "bench_reasoning_levers"))
    parser.add_argument("--table_only", action="store_true", help="print the table of the folders already written")
    args = parser.parse_args()
    if not (Path(args.model_dir) / "config.json").exists():
        return skip("reasoning levers", f"no model in {args.model_dir} (bash ../shared/tools/make_coder_model.sh PYTHON)")
    if not (Path(args.spider_dir) / "dev.json").exists():
        return skip("reasoning levers", f"no Spider dev in {args.spider_dir}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.levers.split(",") if n.strip()]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        parser.error(f"unknown lever(s) {unknown}; choose from {list(LEVERS)}")
    if not args.table_only:
        for name in names:
            run_lever(name, LEVERS[name], args, args.questions)
        if args.yield_questions > 0:
            run_lever("reasoning_yield", ["--reasoning", "true", "--num_samples", str(args.yield_samples - 1)],
                      args, args.yield_questions)

    base = read_lever(out, "direct")
    rows = []
    for name in LEVERS:
        got = read_lever(out, name)
        if got is None:
            continue
        metrics, records = got
        tokens = metrics.get("completion_tokens") or {}
        n = metrics["examples"]
        rows.append([name, f"{metrics['ex']:.3f}", paired(base[1], records) if base and name != "direct" else "-",
                     f"{tokens.get('median', '-')} / {tokens.get('p95', '-')}",
                     metrics.get("no_answer", 0) if metrics.get("reasoning") else "-",
                     f"{metrics['generation_seconds'] / max(1, n):.1f}", n])
    if not rows:
        print("no lever has been evaluated yet")
        return 0
    print(f"\nmodel {args.model_dir}, Spider dev, seeded subset (seed {args.seed}), zero-shot, greedy unless said\n")
    print(table(["lever", "EX", "vs direct (95% CI)", "tokens median / p95", "no final query", "s / question",
                 "questions"], rows))
    line = yield_line(out)
    if line:
        print("\n" + line)
    print(f"\n{machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
