"""Cost of the CPU smoke pipeline (SFT -> GRPO -> evaluation), run exactly as a user runs it.

What it measures
    Runs, as subprocesses from the repository root, in a fresh temporary output folder D:

        python train_sft.py  --preset smoke --output_dir D
        python train_grpo.py --preset smoke --output_dir D
        python evaluate.py   --preset smoke --output_dir D --adapter grpo

    and prints a markdown table: stage | wall s | peak RSS MiB | exit code, plus the total, then
    the run's outcome read back from D: SFT first/last loss (D/sft/metrics.jsonl), GRPO mean reward
    (D/grpo/metrics.jsonl) and execution accuracy EX (D/eval/grpo/metrics.json).

    Peak RSS is the largest resident set of any single process of the stage (the stage's python and
    its reward/scoring worker processes), from GNU `/usr/bin/time -v` when present, else from
    `resource.getrusage(RUSAGE_CHILDREN)` in a fresh python wrapper per stage. The "tree MiB"
    column is the peak of the summed RSS of the whole process tree, sampled from /proc every 50 ms
    (Linux only; '-' elsewhere), which is what the machine must actually hold.

    The target is at most --budget_s (180) seconds in total; the script exits 1 when a stage fails
    or the budget is exceeded, else 0. The tiny model is built once into .cache/ by the first stage
    that needs it; the output says whether this run built it (a stamp change) or reused it.

How to run (from anywhere; the project venv active, since the stages run with this interpreter)
    . .venv/bin/activate
    python bench/smoke_pipeline.py [--keep] [--budget_s 180] [--rss_method auto|time|rusage] [--threads N]

Wall time on a 2-core machine is very sensitive to other work on it: the table also gives each
stage's CPU seconds and the load average when it started, so a contended run can be recognised.

With --keep, D (adapters, metrics, per-stage logs under D/logs/) is left in place and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import REPO_DIR  # the shared opening (bench/common.py): the repository on sys.path
GNU_TIME = "/usr/bin/time"

# A fresh child python per stage: RUSAGE_CHILDREN then covers exactly that stage's process tree.
RUSAGE_WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1], 'w').write(json.dumps({'rc': rc, 'maxrss_kb': ru.ru_maxrss, 'cpu_s': ru.ru_utime + ru.ru_stime}))\n"
    "sys.exit(rc)\n"
)


def gnu_time_works() -> bool:
    if not os.access(GNU_TIME, os.X_OK):
        return False
    try:
        out = subprocess.run([GNU_TIME, "-v", "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "Maximum resident set size" in out.stderr


def _tree_rss_kb(root: int) -> int | None:
    """Summed VmRSS of `root` and all its descendants, from /proc (None when /proc is unavailable)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        ppid = re.search(r"^PPid:\s+(\d+)", status, re.M)
        vm = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
        if ppid:
            children.setdefault(int(ppid.group(1)), []).append(pid)
        rss[pid] = int(vm.group(1)) if vm else 0
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


class TreeSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kb, self._halt = pid, interval, None, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            kb = _tree_rss_kb(self.pid)
            if kb is None:
                return
            self.peak_kb = max(self.peak_kb or 0, kb)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_stage(name: str, argv: list[str], log_path: Path, method: str, extra_env: dict[str, str]) -> dict:
    """Run one stage; return wall s, CPU s, peak single-process RSS (MiB), peak tree RSS (MiB), exit code."""
    stats_path = log_path.with_suffix(".rss.json")
    if method == "time":
        cmd = [GNU_TIME, "-v", "-o", str(stats_path)] + argv
    else:
        cmd = [sys.executable, "-c", RUSAGE_WRAPPER, str(stats_path)] + argv
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra_env)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT, env=env)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        wall = time.perf_counter() - start
        sampler.stop()
    peak_kb = cpu = None
    try:
        text = stats_path.read_text()
        if method == "time":
            m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", text)
            peak_kb = int(m.group(1)) if m else None
            m = re.search(r"Exit status:\s*(\d+)", text)
            rc = int(m.group(1)) if m else rc
            times = [float(x) for x in re.findall(r"(?:User|System) time \(seconds\):\s*([\d.]+)", text)]
            cpu = sum(times) if len(times) == 2 else None
        else:
            data = json.loads(text)
            peak_kb, rc, cpu = data["maxrss_kb"], data["rc"], data["cpu_s"]
    except (OSError, ValueError, KeyError):
        pass
    return {"stage": name, "wall": wall, "cpu": cpu, "load": load, "rss_mib": peak_kb / 1024 if peak_kb else None,
            "tree_mib": sampler.peak_kb / 1024 if sampler.peak_kb else None, "rc": rc, "log": log_path}


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fmt(x, digits=1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description="Wall time and peak memory of the CPU smoke pipeline.")
    parser.add_argument("--keep", action="store_true", help="keep the temporary output folder")
    parser.add_argument("--budget_s", type=float, default=180.0, help="total seconds allowed (0 = no check)")
    parser.add_argument("--rss_method", choices=["auto", "time", "rusage"], default="auto",
                        help="auto = /usr/bin/time -v when it works, else a getrusage wrapper")
    parser.add_argument("--threads", type=int, default=0,
                        help="set OMP_NUM_THREADS/MKL_NUM_THREADS for the stages (0 = leave the environment as is)")
    args = parser.parse_args()

    method = args.rss_method
    if method == "auto":
        method = "time" if gnu_time_works() else "rusage"
    elif method == "time" and not gnu_time_works():
        print(f"error: {GNU_TIME} -v is not available; use --rss_method rusage", file=sys.stderr)
        return 2

    sys.path.insert(0, str(REPO_DIR))
    from sql_rlvr import tiny_model  # noqa: E402  (light: no torch at import)

    # Whether a stage (re)built the tiny model: compare its version stamp before and after the run
    # (the stamp's format is the project's business; only a change of it matters here).
    stamp = tiny_model.TINY_MODEL_DIR / "sql-rlvr-tiny-version"

    def stamp_state():
        try:
            return stamp.read_text(), stamp.stat().st_mtime_ns
        except OSError:
            return None

    stamp_before = stamp_state()

    out = Path(tempfile.mkdtemp(prefix="sql-rlvr-smoke-"))
    logs = out / "logs"
    logs.mkdir()
    py = sys.executable
    stages = [
        ("train_sft.py", [py, "train_sft.py", "--preset", "smoke", "--output_dir", str(out)]),
        ("train_grpo.py", [py, "train_grpo.py", "--preset", "smoke", "--output_dir", str(out)]),
        ("evaluate.py", [py, "evaluate.py", "--preset", "smoke", "--output_dir", str(out), "--adapter", "grpo"]),
    ]
    extra_env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)} if args.threads > 0 else {}
    results = []
    for name, argv in stages:
        res = run_stage(name, argv, logs / f"{Path(name).stem}.log", method, extra_env)
        results.append(res)
        if res["rc"] != 0:
            break

    tiny_rebuilt = stamp_state() != stamp_before
    total = sum(r["wall"] for r in results)
    failed = [r for r in results if r["rc"] != 0]
    print("# CPU smoke pipeline (`--preset smoke`)\n")
    print(f"- python: `{py}`; cwd `{REPO_DIR}`; output_dir `{out}`; {os.cpu_count()} CPU cores")
    print(f"- peak RSS from: {'GNU /usr/bin/time -v' if method == 'time' else 'getrusage(RUSAGE_CHILDREN) in a wrapper'}"
          f" (largest single process); tree MiB = peak summed RSS of the stage's process tree (/proc, 50 ms)")
    print(f"- tiny model `{tiny_model.TINY_MODEL_DIR}`: "
          f"{'built during this run (by the first stage; included in its time)' if tiny_rebuilt else 'already cached, reused'}")
    print(f"- threads: {('OMP_NUM_THREADS=MKL_NUM_THREADS=' + str(args.threads)) if extra_env else 'environment unchanged (torch default)'}; "
          "CPU s = user + system time of the stage's whole tree; load = 1-min load average when the stage started "
          f"(above {os.cpu_count()} means other work shared the cores and inflated wall time)\n")
    print("| stage | wall s | peak RSS MiB | tree MiB | exit code | CPU s | load at start |")
    print("| :--- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['stage']} | {r['wall']:.1f} | {fmt(r['rss_mib'], 0)} | {fmt(r['tree_mib'], 0)} | {r['rc']} | "
              f"{fmt(r['cpu'])} | {fmt(r['load'], 2)} |")
    for name, _argv in stages[len(results):]:
        print(f"| {name} | - | - | - | not run | - | - |")
    peak_rss = max((r["rss_mib"] for r in results if r["rss_mib"]), default=None)
    peak_tree = max((r["tree_mib"] for r in results if r["tree_mib"]), default=None)
    print(f"| **total** | **{total:.1f}** | {fmt(peak_rss, 0)} (max) | {fmt(peak_tree, 0)} (max) | "
          f"{'ok' if not failed else 'FAILED'} | {fmt(sum(r['cpu'] or 0 for r in results))} | |")
    print()

    # ---- what the run produced
    sft = [r for r in read_jsonl(out / "sft" / "metrics.jsonl") if "loss" in r]
    grpo = [r for r in read_jsonl(out / "grpo" / "metrics.jsonl") if "reward" in r]
    eval_path = out / "eval" / "grpo" / "metrics.json"
    ev = json.loads(eval_path.read_text()) if eval_path.exists() else None
    rows = []
    if sft:
        rows.append(["SFT loss, first -> last logged step",
                     f"{sft[0]['loss']:.3f} (step {sft[0]['step']}) -> {sft[-1]['loss']:.3f} (step {sft[-1]['step']})"])
    else:
        rows.append(["SFT loss", "no metrics"])
    if grpo:
        rewards = [r["reward"] for r in grpo]
        zero = [r["frac_reward_zero_std"] for r in grpo if "frac_reward_zero_std" in r]
        rows.append([f"GRPO mean reward over {len(grpo)} logged steps", f"{sum(rewards) / len(rewards):+.3f} "
                     f"(per step: {', '.join(f'{x:+.2f}' for x in rewards)})"])
        if zero:
            rows.append(["GRPO mean frac_reward_zero_std", f"{sum(zero) / len(zero):.3f}"])
    else:
        rows.append(["GRPO reward", "no metrics"])
    if ev:
        rows.append([f"EX on mini-Spider dev ({ev.get('examples')} examples, adapter grpo)", f"{ev['ex']:.3f}"])
    else:
        rows.append(["EX", "no metrics.json"])
    print("| result | value |\n| :--- | :--- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print()

    status = 0
    for r in failed:
        status = 1
        tail = r["log"].read_text().splitlines()[-25:]
        print(f"{r['stage']} exited {r['rc']}; last lines of its log:\n```\n" + "\n".join(tail) + "\n```")
    if args.budget_s > 0:
        verdict = "within" if total <= args.budget_s else "OVER"
        print(f"total {total:.1f} s is {verdict} the {args.budget_s:g} s budget")
        if total > args.budget_s:
            status = 1
    if args.keep or failed:
        print(f"outputs and per-stage logs kept in {out}")
    else:
        shutil.rmtree(out, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
