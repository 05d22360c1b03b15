"""Spider's robustness sets through `evaluate.py --eval_file`, on the real Spider dev databases.

Usage:
    python bench/eval_sets.py [--spider DIR] [--variants DIR] [--workdir DIR] [--max_eval_examples N]
                              [--skip_generation]

  --spider     Spider release folder with dev.json, tables.json, database/ (default: ../shared/spider)
  --variants   the sets' folder (default: ../shared/spider_variants): spider_syn_dev.json, spider_dk.json with
               spider_dk_tables.json and dk_database/, spider_realistic.json (its README)
  absent -> SKIP, exit 0.

What it does:
  1. Golds against themselves, no model: each set (dev.json, Spider-Syn, Spider-DK, Spider-Realistic) is
     read as `--eval_file` reads it (sql_rlvr/question_files.py: Spider-DK's tables and databases merged
     over Spider's), its gold queries run as evaluation runs them before generating (a gold that fails
     is left out), and every other gold is scored as a prediction against itself with the scorer of
     `evaluate.py --score_only` (scoring.score_predictions: the official rewrites, DISTINCT removal,
     `value` -> 1 in the prediction, the sandbox). Prints per set: questions, golds left out, golds that
     match themselves, any that do not (listed), and the seconds.
  2. Run time: `evaluate.py --preset smoke --adapter none` (the tiny local model, greedy) on Spider dev
     alone, then on the four sets in one run (`--eval_file dev.json,syn,dk,realistic` with DK's tables and
     databases): wall seconds of each, and the per-file generation seconds from each metrics.json. Prints
     the run's own table (a row per file: EX, and TS / voted EX when asked). --skip_generation: step 1 only.

Both runs write under --workdir (default: a fresh temporary folder, kept and printed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_DIR, SHARED_DIR, machine_line, skip, table

from config import parse_config
from sql_rlvr import question_files, scoring

SETS = {  # name: (question file, its own tables file, its own database folder), under --variants
    "spider_syn_dev": ("spider_syn_dev.json", None, None),
    "spider_dk": ("spider_dk.json", "spider_dk_tables.json", "dk_database"),
    "spider_realistic": ("spider_realistic.json", None, None),
}


def set_flags(spider: Path, variants: Path, names: list[str]) -> list[str]:
    """evaluate.py's flags for the sets `names` ("dev" is Spider's own dev.json)."""
    files = [str(spider / "dev.json") if n == "dev" else str(variants / SETS[n][0]) for n in names]
    flags = ["--spider_dir", str(spider), "--eval_file", ",".join(files)]
    if any(SETS.get(n, (None, None))[1] for n in names):
        flags += ["--eval_tables", str(variants / "spider_dk_tables.json"), "--eval_db_dir", str(variants / "dk_database")]
    return flags


def golds_against_themselves(spider: Path, variants: Path, workdir: Path) -> list[list]:
    rows = []
    for name in ["dev", *SETS]:
        cfg, _ = parse_config(["--preset", "smoke", *set_flags(spider, variants, [name])], script="evaluate.py")
        start = time.time()
        (qf,) = question_files.open_question_files(cfg)
        qf.prepare(workdir / "golds" / qf.name)  # DK: one folder of links to its databases, as evaluation does
        failed = question_files.leave_out_failing_golds(qf, cfg)
        golds = [(scoring.flatten_sql(q["query"]), q["db_id"]) for q in qf.questions]
        records = scoring.score_predictions([g for g, _ in golds], golds, qf.db_dir(), cfg.sql_timeout_s,
                                            cfg.reward_workers)
        seconds = time.time() - start
        misses = [(r, qf.questions[r["index"]]) for r in records if not r["exec_match"]]
        for f in failed:
            print(f"  {qf.name}: gold left out, record {f['file_index']} ({f['db_id']}): {f['error']}")
        for r, q in misses:
            print(f"  {qf.name}: gold does not match itself, record {q['file_index']} ({r['db_id']}, {r['outcome']}: "
                  f"{r['error']}): {q['query']}")
        rows.append([qf.name, qf.size, len(failed), f"{len(records) - len(misses)}/{len(records)}", len(misses),
                     f"{seconds:.1f}"])
    return rows


def timed_run(args: list[str], log: Path) -> tuple[float, int]:
    start = time.time()
    with open(log, "w") as fh:
        rc = subprocess.call([sys.executable, "evaluate.py", *args], cwd=REPO_DIR, stdout=fh, stderr=subprocess.STDOUT)
    return time.time() - start, rc


def main() -> int:
    parser = argparse.ArgumentParser(description="Spider's robustness sets through evaluate.py --eval_file: "
                                     "golds against themselves, and run time beside dev alone (tiny model).")
    parser.add_argument("--spider", type=Path, default=SHARED_DIR / "spider")
    parser.add_argument("--variants", type=Path, default=SHARED_DIR / "spider_variants")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--max_eval_examples", type=int, default=0, help="per set, for a quick run (0 = all)")
    parser.add_argument("--skip_generation", action="store_true", help="golds against themselves only")
    args = parser.parse_args()
    needed = [args.spider / "dev.json", args.spider / "database"] + [args.variants / SETS[n][0] for n in SETS]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        return skip("eval_sets", f"missing {', '.join(missing)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sql-rlvr-eval-sets-"))
    workdir.mkdir(parents=True, exist_ok=True)

    print("## Gold queries scored against themselves (the scorer of --score_only; no model)\n")
    rows = golds_against_themselves(args.spider.resolve(), args.variants.resolve(), workdir)
    print(table(["set", "questions", "golds left out (fail on their database)", "golds matching themselves",
                 "not matching", "seconds"], rows))
    print(f"\n{machine_line()}")
    if args.skip_generation:
        return 0

    print("\n## Run time, the tiny model (--preset smoke --adapter none), greedy\n")
    common = ["--preset", "smoke", "--adapter", "none", "--max_eval_examples", str(args.max_eval_examples)]
    spider, variants = args.spider.resolve(), args.variants.resolve()
    dev_s, dev_rc = timed_run([*common, "--spider_dir", str(spider), "--output_dir", str(workdir / "dev_alone")],
                              workdir / "dev_alone.log")
    names = ["dev", *SETS]
    sets_s, sets_rc = timed_run([*common, *set_flags(spider, variants, names), "--output_dir", str(workdir / "sets")],
                                workdir / "sets.log")
    if dev_rc or sets_rc:
        print(f"a run failed (exit {dev_rc} / {sets_rc}): see {workdir}/dev_alone.log, {workdir}/sets.log")
        return 1
    dev_metrics = json.loads((workdir / "dev_alone" / "eval" / "base" / "metrics.json").read_text())
    timing = [["dev alone (evaluate.py)", dev_metrics["examples"], f"{dev_s:.0f}",
               f"{dev_metrics['generation_seconds']:.0f}"]]
    total_q = total_gen = 0
    for name in names:
        metrics = json.loads((workdir / "sets" / "eval" / "base" / Path(set_flags(spider, variants, [name])[3]).stem
                              / "metrics.json").read_text())
        total_q += metrics["examples"]
        total_gen += metrics["generation_seconds"]
        timing.append([f"  {Path(metrics['eval_file']).stem}", metrics["examples"], "", f"{metrics['generation_seconds']:.0f}"])
    timing.insert(1, ["the four sets, one --eval_file run", total_q, f"{sets_s:.0f}", f"{total_gen:.0f}"])
    print(table(["run", "questions", "wall s", "generation s"], timing))
    log = (workdir / "sets.log").read_text()
    print("\nThe run's own table (from its log):\n")
    print(log[log.rindex("[eval] 4 question files"):].split("\n[eval] done")[0])
    print(f"\n{machine_line()}; outputs and logs in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
