"""GRPO's start on real data: checking every prompt's gold query before training, and what each reward
batch then carries to the worker processes.

Usage:
    python bench/grpo_start.py [--spider DIR] [--before DIR] [--workers 2] [--repeats 3]

  --spider   Spider release folder (default: ../shared/spider next to the repository; absent -> skip).
             Its 1034 dev questions stand in for a training set: their gold queries are GRPO's prompts.
  --before   a checkout of an earlier sql-rlvr to measure beside this one, e.g. the commit before the
             gold checks moved into the worker pool:
                 git archive 0a7fb6d | tar -x -C /tmp/before && python bench/grpo_start.py --before /tmp/before

Each run is a fresh child process that does what train_grpo.py does between loading its data and
training, on the code of one checkout: build an SQLExecutionReward (sql_timeout_s 30, BIRD's limit,
--workers processes) and run checked_gold_rows on every prompt (gold checks: seconds); then score
GRPO-shaped reward batches over all kept prompts (4 prompts x 8 completions a call, each completion
its prompt's gold query, called as TRL calls it). Measured there:

- workers' start, s: where the code has SQLExecutionReward.start(), as train_grpo.py calls it before
  loading the model, the time until every worker process is ready (then the checks begin); without
  it the workers start inside the first reward call;
- gold checks, s: wall time of checked_gold_rows;
- start, s: the gold checks and the first reward call, when training could begin (a worker start
  that overlaps the model's loading left out);
- trainer peak RSS: the child's peak resident memory (VmHWM), checks and reward calls included, and
  the same peak after its imports, before anything ran;
- gold kept in the trainer: pickled size of what the reward object holds per gold query afterwards;
- pickled per reward batch: bytes each batch of a reward call sends to a worker (what
  multiprocessing pickles), mean and max over all calls;
- reward calls, s: wall time of all the reward calls;
- worker peak RSS: the largest peak resident memory among the reward's worker processes.

The checkouts' runs alternate, so a busy machine slows both alike; the median of --repeats runs is
printed, as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO_DIR as REPO  # the shared opening (bench/common.py): the repository on sys.path


def peak_rss_mib(pid: int | None = None) -> float:
    """Peak resident memory of a process (VmHWM), MiB."""
    with open(f"/proc/{pid or 'self'}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(code: Path, spider: Path, workers: int, prompts_per_call: int, generations: int) -> dict:
    """One measured run on the checkout `code` (a fresh process: nothing cached, its own peak memory)."""
    sys.path.insert(0, str(code))
    import importlib
    import pickle
    from multiprocessing.reduction import ForkingPickler

    # The library modules live in sql_rlvr/ since it became a package, at the checkout's root before.
    package = "sql_rlvr." if (code / "sql_rlvr").is_dir() else ""
    benchmarks = importlib.import_module(f"{package}benchmarks")
    sandbox = importlib.import_module(f"{package}sandbox")
    # The reward lives in execution_reward.py since the gold checks moved into the worker pool, in utils.py before.
    reward_file = code / package.rstrip(".") / "execution_reward.py"
    module = importlib.import_module(f"{package}execution_reward" if reward_file.exists() else "utils")
    sent: list[int] = []
    run = sandbox.WorkerPool.run

    def counting_run(self, batches, args, *rest, **kwargs):
        # What Connection.send pickles for each batch: (items, args).
        sent.extend(len(ForkingPickler.dumps((batch, args))) for batch in batches if batch)
        return run(self, batches, args, *rest, **kwargs)

    sandbox.WorkerPool.run = counting_run
    dataset = benchmarks.Spider.open(spider)
    rows = [{"gold_sql": ex["query"], "db_path": str(dataset.db_path(ex["db_id"]))} for ex in dataset.examples("dev")]
    rss_start = peak_rss_mib()
    reward = module.SQLExecutionReward(timeout_s=30.0, workers=workers)
    workers_start_s = float("nan")
    if hasattr(reward, "start"):  # train_grpo.py starts the workers before it loads the model
        start = time.perf_counter()
        reward.start()
        for conn in reward._pool.starting:
            conn.poll(60)  # until the worker has said "ready" (left unread for the pool)
        workers_start_s = time.perf_counter() - start
    try:
        start = time.perf_counter()
        kept, skipped = module.checked_gold_rows(rows, reward, True)
        check_s = time.perf_counter() - start
        gold_bytes = len(pickle.dumps(reward._gold))
        check_batches = len(sent)
        sent.clear()
        start = time.perf_counter()
        first_call_s = None
        for k in range(0, len(kept), prompts_per_call):
            group = [row for row in kept[k:k + prompts_per_call] for _ in range(generations)]
            values = reward(prompts=[[{"role": "user", "content": "q"}]] * len(group),
                            completions=[[{"role": "assistant", "content": row["gold_sql"]}] for row in group],
                            gold_sql=[row["gold_sql"] for row in group], db_path=[row["db_path"] for row in group])
            assert len(values) == len(group)
            if first_call_s is None:
                first_call_s = time.perf_counter() - start
        reward_s = time.perf_counter() - start
        workers_rss = [peak_rss_mib(process.pid) for process, _ in (reward._pool.idle if reward._pool else [])]
    finally:
        reward.close()
    return {"prompts": len(rows), "kept": len(kept), "skipped_empty": skipped, "check_s": check_s,
            "check_batches": check_batches, "workers_start_s": workers_start_s, "start_s": check_s + first_call_s, "rss_start": rss_start, "rss_peak": peak_rss_mib(),
            "gold_bytes": gold_bytes, "batch_mean": statistics.mean(sent), "batch_max": max(sent),
            "batches": len(sent), "reward_s": reward_s, "worker_rss": max(workers_rss, default=float("nan"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spider", default=str(REPO.parent / "shared" / "spider"))
    ap.add_argument("--before", default=None, help="an earlier checkout to measure beside this one")
    ap.add_argument("--workers", type=int, default=2, help="reward worker processes (--reward_workers)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=4, help="prompts per reward call (--grpo_prompts_per_step)")
    ap.add_argument("--generations", type=int, default=8, help="completions per prompt (--num_generations)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: measure this checkout, print JSON
    args = ap.parse_args()
    spider = Path(args.spider)
    if args.child:
        print(json.dumps(child(Path(args.child), spider, args.workers, args.prompts, args.generations)))
        return 0
    if not (spider / "dev.json").is_file() or not (spider / "database").is_dir():
        print(f"SKIP: no Spider data at {spider} (needs dev.json and database/); pass --spider DIR")
        return 0
    checkouts = ([("before", Path(args.before).resolve())] if args.before else []) + [("after", REPO)]
    results: dict[str, list[dict]] = {label: [] for label, _ in checkouts}
    if hasattr(os, "getloadavg"):
        print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
              "(anything else running slows both alike: the runs alternate)")
    for r in range(args.repeats):
        for label, code in checkouts:
            done = subprocess.run([sys.executable, __file__, "--child", str(code), "--spider", str(spider),
                                   "--workers", str(args.workers), "--prompts", str(args.prompts),
                                   "--generations", str(args.generations)],
                                  capture_output=True, text=True, cwd=code)
            if done.returncode != 0:
                print(f"{label} failed:\n{done.stderr[-3000:]}")
                return 1
            results[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"run {r + 1} {label}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                        for k, v in results[label][-1].items()), flush=True)

    first = next(iter(results.values()))[0]
    print(f"\nSpider dev as GRPO prompts: {first['prompts']} gold queries ({first['skipped_empty']} with an empty "
          f"result left out), sql_timeout_s 30, {args.workers} reward workers; reward calls of {args.prompts} prompts "
          f"x {args.generations} completions; median of {args.repeats} runs\n")
    print("| code | workers' start, s | gold checks, s | start, s | trainer peak RSS, MiB (after imports) "
          "| gold kept in the trainer, KiB | pickled per reward batch, bytes: mean (max) | reward calls, s "
          "| worker peak RSS, MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, runs in results.items():
        med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        workers_start = ("in the first reward call" if med["workers_start_s"] != med["workers_start_s"]  # NaN
                         else f"{med['workers_start_s']:.2f} (while the model loads)")
        print(f"| {label} | {workers_start} | {med['check_s']:.2f} | {med['start_s']:.2f} | {med['rss_peak']:.0f} ({med['rss_start']:.0f}) "
              f"| {med['gold_bytes'] / 1024:,.0f} | {med['batch_mean']:,.0f} ({med['batch_max']:,.0f}) "
              f"| {med['reward_s']:.1f} | {med['worker_rss']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
