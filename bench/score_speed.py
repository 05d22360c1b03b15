"""How fast do we score? Scored pairs per second on Spider dev, and rewards per second for a GRPO batch.

Usage:
    python bench/score_speed.py [--spider DIR] [--official DIR --official-python PY] [--repeats 3]

  --spider    Spider release folder (default: ../shared/spider next to the repository; absent -> skip)
  --official  a checkout of github.com/taoyds/test-suite-sql-eval; without it the official rows are
              skipped. --official-python: a python with its requirements, e.g. /tmp/offvenv/bin/python

Runs on at most 2 CPU cores (the process pins itself to the first two it may use; subprocesses
inherit that) and prints markdown tables. Each configuration runs --repeats times (default 3); the
median is reported.

1. Scoring pred.txt/gold.txt pairs on all 1034 dev examples, for two prediction files:
   `gold` (each prediction is its gold query) and `mix` (about half the predictions are perturbed:
   another gold of the same database, WHERE or ORDER BY dropped, LIMIT changed, a syntax error,
   an empty answer, ...; the perturbations of bench/validate_scorer.py).
   - ours: scoring.score_predictions with workers=1 and workers=2, after clearing every process-level
     cache (hardness.spider_hardness, scoring.official_normalize, scoring.remove_distinct, and the
     per-thread connection cache), as in a fresh process;
   - ours, CLI: wall time of `python evaluate.py --score_only` (process start and imports included);
   - naive: the same normalisation, hardness and scoring.results_match, but a fresh sqlite3
     connection per query and the gold query re-executed for every pair, sequentially;
   - official: wall time of its `evaluation.py --etype exec` on the same files (process start
     and imports included, nothing subtracted).
2. Rewards per second for a GRPO-shaped batch: 16 dev prompts x 8 completions (the gold SQL as an
   assistant message, or a perturbation of it, about half each), scored by
   execution_reward.SQLExecutionReward called exactly as TRL calls it:
       reward(prompts=[...], completions=[[{"role": "assistant", "content": text}], ...],
              gold_sql=[...], db_path=[...])
   - fresh object: the first call of a new SQLExecutionReward (its worker pool starts, no gold cached);
   - new prompts: a later call on 16 other prompts (pool running, gold not cached: a usual GRPO step);
   - cached: a call on the same 16 prompts again, new completions (gold results cached);
   with workers=2 and workers=1.
3. Voting (self-consistency): k = 8 prediction files of the 1034 dev pairs (8 mixes with different
   seeds) scored with scoring.vote_predictions (workers 1 and 2) and `evaluate.py --score_only
   --pred ... x8`; candidate pairs/s against the single-file score and against the official
   evaluator run k times (k x its time on one mix file, when --official is given).
4. Test suites: the mix file scored on the original databases and on a folder with 3 databases
   per db_id built from Spider's by perturbing copies (rows deleted and numbers shifted; rows
   duplicated), ours and (with --official) the official evaluator, with both accuracies.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from common import REPO_DIR as REPO  # the shared opening (bench/common.py): the repository on sys.path

MIX_FAMILIES = ("other_gold_same_db", "where_dropped", "order_by_dropped", "limit_changed", "select_reordered",
                "value_placeholder", "agg_swapped", "syntax_error", "empty", "lowercased", "distinct_added")


def fresh_caches() -> None:
    """Forget everything a process remembers between scoring calls."""
    from sql_rlvr import hardness, sandbox, scoring

    hardness.spider_hardness.cache_clear()
    scoring.official_normalize.cache_clear()
    scoring.remove_distinct.cache_clear()
    sandbox.close_connections()


def naive_score(preds: list[str], golds: list[tuple[str, str]], db_dir: Path) -> list[bool]:
    """A straightforward scorer: open, run, close, for every query; nothing reused."""
    from sql_rlvr import hardness, scoring

    def run(db_file: str, sql: str):
        conn = sqlite3.connect(f"file:{urllib.parse.quote(db_file)}?mode=ro", uri=True)
        conn.text_factory = lambda b: b.decode(errors="ignore")
        try:
            return conn.execute(sql).fetchall()
        except Exception:
            return None
        finally:
            conn.close()

    verdicts = []
    for pred, (gold, db) in zip(preds, golds):
        hardness.spider_hardness(gold)  # the same work as ours: every record carries its hardness
        db_file = str(db_dir / db / f"{db}.sqlite")
        gold_norm = scoring.official_normalize(gold, is_prediction=False)
        gold_rows = run(db_file, gold_norm)
        if not pred.strip() or pred.strip() == scoring.EMPTY_PREDICTION:
            verdicts.append(False)
            continue
        pred_rows = run(db_file, scoring.official_normalize(pred, is_prediction=True))
        verdicts.append(pred_rows is not None and
                        scoring.results_match(gold_rows, pred_rows, "order by" in gold_norm.lower()))
    return verdicts


def _spin(_=None) -> float:
    start = time.perf_counter()
    x = 0
    for i in range(3_000_000):
        x += i * i
    return time.perf_counter() - start


def effective_cores() -> float:
    """A pure-Python loop alone, then in two processes at once: ~2.0 on two idle cores, ~1.0 when
    something else holds a core (then workers=2 cannot beat workers=1)."""
    import concurrent.futures
    import multiprocessing

    alone = min(_spin() for _ in range(3))
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        pool.submit(_spin).result()  # start both workers
        start = time.perf_counter()
        list(pool.map(_spin, range(2)))
        both = time.perf_counter() - start
    return 2 * alone / both


def official_env(workdir: Path) -> dict:
    punkt = workdir / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    punkt.mkdir(parents=True, exist_ok=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (punkt / name).touch()
    return {**os.environ, "NLTK_DATA": str(workdir / "nltk_data")}


def timed_subprocess(cmd: list[str], cwd: str, env: dict) -> float | str:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
    return seconds


def build_mix(golds: list[tuple[str, str]], db_dir: Path, seed: int) -> list[str]:
    """About half the predictions are gold, the rest perturbed (validate_scorer's families)."""
    from validate_scorer import Perturber

    perturber = Perturber(golds, db_dir, seed)
    builders = perturber.families()
    rng = random.Random(seed)
    preds = []
    for i, (gold, _) in enumerate(golds):
        pred = gold
        if rng.random() < 0.5:
            for name in [rng.choice(MIX_FAMILIES), "other_gold_same_db"]:
                candidate = builders[name](i)
                if candidate is not None and candidate != gold:
                    pred = candidate
                    break
        preds.append(pred)
    return preds


def grpo_batches(golds: list[tuple[str, str]], mix: list[str], db_dir: Path, seed: int, count: int):
    """`count` batches of 16 prompts x 8 completions on disjoint prompts, and the first prompts again."""
    rng = random.Random(seed)
    prompt_ids = rng.sample(range(len(golds)), 16 * count)
    by_db: dict[str, list[int]] = {}
    for i, (_, db) in enumerate(golds):
        by_db.setdefault(db, []).append(i)

    def completion(i: int) -> str:
        if rng.random() < 0.5:
            return f"```sql\n{golds[i][0]}\n```"
        other = mix[i] if mix[i] != golds[i][0] else golds[rng.choice(by_db[golds[i][1]])][0]
        return rng.choice([f"```sql\n{other}\n```", other, "", "I cannot answer that."])

    def batch(ids: list[int]) -> dict:
        rows = [i for i in ids for _ in range(8)]
        return dict(prompts=[[{"role": "user", "content": f"question {i}"}] for i in rows],
                    completions=[[{"role": "assistant", "content": completion(i)}] for i in rows],
                    gold_sql=[golds[i][0] for i in rows],
                    db_path=[str(db_dir / golds[i][1] / f"{golds[i][1]}.sqlite") for i in rows])

    batches = [batch(prompt_ids[16 * k:16 * (k + 1)]) for k in range(count)]
    return batches, batch(prompt_ids[:16])  # the last: the first prompts again, new completions


def reward_speed(golds, mix, db_dir: Path, workers: int, repeats: int, seed: int) -> dict[str, float]:
    """fresh object: first call; then 3 warm-up calls (workers open their connections), then a call
    on 16 new prompts and a call on the first 16 prompts again with new completions (gold cached)."""
    from sql_rlvr import execution_reward

    times: dict[str, list[float]] = {"fresh object": [], "new prompts": [], "cached": []}
    for r in range(repeats):
        batches, again = grpo_batches(golds, mix, db_dir, seed + r, 5)
        fresh_caches()
        reward = execution_reward.SQLExecutionReward(timeout_s=2.0, workers=workers)
        try:
            plan = [("fresh object", batches[0]), (None, batches[1]), (None, batches[2]), (None, batches[3]),
                    ("new prompts", batches[4]), ("cached", again)]
            for label, batch in plan:
                start = time.perf_counter()
                values = reward(**batch)
                seconds = time.perf_counter() - start
                assert len(values) == 128
                if label:
                    times[label].append(seconds)
        finally:
            reward.close()
    return {label: 128 / statistics.median(t) for label, t in times.items()}


def build_test_suite(spider_db: Path, db_ids: set[str], out: Path) -> Path:
    """A test-suite folder with 3 databases per db_id: the original, a copy with rows deleted and
    numbers shifted, and a copy with rows duplicated (OR IGNORE: unique keys stay unique)."""
    import shutil

    for db in sorted(db_ids):
        folder = out / db
        folder.mkdir(parents=True, exist_ok=True)
        original = spider_db / db / f"{db}.sqlite"
        for name, edits in ((f"{db}.sqlite", None), (f"{db}_1.sqlite", "delete_shift"), (f"{db}_2.sqlite", "duplicate")):
            target = folder / name
            shutil.copyfile(original, target)
            if edits is None:
                continue
            conn = sqlite3.connect(target)
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                 "AND name NOT LIKE 'sqlite_%'")]
            for table in tables:
                q = '"' + table.replace('"', '""') + '"'
                try:
                    if edits == "delete_shift":
                        conn.execute(f"DELETE FROM {q} WHERE rowid % 10 = 3")
                        numeric = [r[1] for r in conn.execute(f"PRAGMA table_info({q})")
                                   if r[2].upper().startswith(("INT", "REAL", "NUMERIC", "FLOAT", "DOUBLE", "DECIMAL"))]
                        for col in numeric:
                            c = '"' + col.replace('"', '""') + '"'
                            conn.execute(f"UPDATE OR IGNORE {q} SET {c} = {c} + 1 "
                                         f"WHERE rowid % 5 = 1 AND typeof({c}) IN ('integer', 'real')")
                    else:
                        conn.execute(f"INSERT OR IGNORE INTO {q} SELECT * FROM {q} WHERE rowid % 4 = 0")
                except sqlite3.Error:
                    pass  # a WITHOUT ROWID table or a trigger: left as it is
            conn.commit()
            conn.close()
    return out


def official_ex(cmd: list[str], cwd: str, env: dict) -> tuple[float | str, float | None]:
    """Wall time of the official evaluator and the overall accuracy it prints."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:200], None
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("execution")]
    return seconds, float(rows[-1][-1]) if rows else None


def voting_and_test_suites(args, spider: Path, golds, mix, workdir: Path, rates: dict, official_key: str) -> None:
    """3. k = 8 candidate files voted on; 4. scoring on a folder with 3 databases per db_id."""
    from sql_rlvr import scoring

    db_dir = spider / "database"
    n, k = len(golds), 8
    gold_path = workdir / "mix.gold.txt"
    paths = []
    for j in range(k):  # 8 different mixes: each ~half perturbed, differently
        path = workdir / f"vote{j}.pred.txt"
        preds = mix if j == 0 else build_mix(golds, db_dir, args.seed + 100 + j)
        path.write_text("".join(scoring.flatten_sql(p) + "\n" for p in preds), encoding="utf-8")
        paths.append(path)
    candidates = [list(c) for c in zip(*(scoring.read_pred_file(p, n) for p in paths))]
    times: dict[str, list] = {}
    cli = [sys.executable, str(REPO / "evaluate.py"), "--score_only", "--gold", str(gold_path), "--db_dir", str(db_dir),
           "--results", str(workdir / "vote" / "results.jsonl")]
    for p in paths:
        cli += ["--pred", str(p)]
    records = None
    for _ in range(args.repeats):
        for workers in (1, 2):
            fresh_caches()
            start = time.perf_counter()
            records = scoring.vote_predictions(candidates, golds, db_dir, 2.0, workers)
            times.setdefault(f"ours, vote_predictions workers={workers}", []).append(time.perf_counter() - start)
        times.setdefault("ours, `evaluate.py --score_only --pred x8` (wall, 2 workers)", []).append(
            timed_subprocess(cli, str(REPO), dict(os.environ)))
    single = rates.get(("ours, score_predictions workers=2", "mix"))
    off = rates.get((official_key, "mix"))
    print(f"\n### Voting: k = {k} prediction files of {n} predictions (candidate pairs per second = {k} x {n} / time)\n")
    print("| scorer | seconds | candidate pairs/s | vs single-file score (w=2) | vs official run k times |")
    print("|---|---:|---:|---:|---:|")
    for label, values in times.items():
        errors = [v for v in values if isinstance(v, str)]
        if errors:
            print(f"| {label} | {errors[0]} | | | |")
            continue
        seconds = statistics.median(values)
        pairs = k * n / seconds
        vs_single = f"{pairs / single:.2f}x" if isinstance(single, float) else "-"
        vs_official = f"{pairs / off:.1f}x" if isinstance(off, float) else "-"  # official: k files = k runs
        print(f"| {label} | {seconds:.2f} | {pairs:,.0f} | {vs_single} | {vs_official} |")
    if isinstance(off, float):
        print(f"| official `evaluation.py --etype exec`, {k} runs (estimated: {k} x one mix run) | {k * n / off:.1f} "
              f"| {off:,.0f} | | 1.0x |")
    assert records is not None
    print(f"\n- vote EX {sum(r['exec_match'] for r in records) / n:.3f}, pass@{k} "
          f"{sum(r['any_match'] for r in records) / n:.3f}, file 0 alone "
          f"{sum(r['candidate_matches'][0] for r in records) / n:.3f}; distinct SQL texts per question "
          f"{sum(len(set(c)) for c in candidates) / n:.2f} of {k} (each runs once)")

    # ---------------------------------------------------------------- 4. test suites
    suite = build_test_suite(db_dir, {db for _, db in golds}, workdir / "test_suite")
    pred_path = workdir / "mix.pred.txt"
    ts_times: dict[str, list] = {}
    verdicts = {}
    for _ in range(args.repeats):
        for folder, name in ((db_dir, "original (1 database per db_id)"), (suite, "test suite (3 per db_id)")):
            for workers in (1, 2):
                fresh_caches()
                start = time.perf_counter()
                recs = scoring.score_predictions(mix, golds, folder, 2.0, workers)
                ts_times.setdefault((f"ours, score_predictions workers={workers}", name), []).append(
                    time.perf_counter() - start)
                verdicts[name] = sum(r["exec_match"] for r in recs) / n
        if args.official:
            for folder, name in ((db_dir, "original (1 database per db_id)"), (suite, "test suite (3 per db_id)")):
                cmd = [args.official_python, "evaluation.py", "--gold", str(gold_path), "--pred", str(pred_path),
                       "--db", str(folder), "--table", str(spider / "tables.json"), "--etype", "exec"]
                seconds, acc = official_ex(cmd, args.official, official_env(workdir))
                ts_times.setdefault((official_key, name), []).append(seconds)
                verdicts[("official", name)] = acc
    print(f"\n### Test suites: the mix file ({n} pairs) on the original databases and on a folder with 3 databases "
          f"per db_id ({suite}; copies with rows deleted and numbers shifted, rows duplicated)\n")
    print("| scorer | original: pairs/s | test suite: pairs/s | test suite / original time |")
    print("|---|---:|---:|---:|")
    for label in dict.fromkeys(label for label, _ in ts_times):
        cells, secs = [], []
        for name in ("original (1 database per db_id)", "test suite (3 per db_id)"):
            values = ts_times.get((label, name), [])
            errors = [v for v in values if isinstance(v, str)]
            if errors or not values:
                cells.append(errors[0] if errors else "-")
                secs.append(None)
            else:
                secs.append(statistics.median(values))
                cells.append(f"{n / secs[-1]:,.0f}")
        ratio = f"{secs[1] / secs[0]:.2f}" if None not in secs else "-"
        print(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")
    line = (f"\n- ours: EX {verdicts['original (1 database per db_id)']:.3f}, "
            f"TS {verdicts['test suite (3 per db_id)']:.3f}")
    if args.official:
        line += (f"; official: EX {verdicts.get(('official', 'original (1 database per db_id)'))}, "
                 f"TS {verdicts.get(('official', 'test suite (3 per db_id)'))}")
    print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spider", default=str(REPO.parent / "shared" / "spider"))
    ap.add_argument("--official", default=None)
    ap.add_argument("--official-python", default=sys.executable)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    spider = Path(args.spider)
    if not ((spider / "dev_gold.sql").is_file() and (spider / "database").is_dir()):
        print(f"SKIP: no Spider data at {spider} (needs dev_gold.sql and database/); pass --spider DIR")
        return 0
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[:2])
        print(f"CPU cores used: {sorted(os.sched_getaffinity(0))} (of {len(cpus)} available)")
    from sql_rlvr import scoring

    db_dir = spider / "database"
    golds = scoring.read_gold_file(spider / "dev_gold.sql")
    mix = build_mix(golds, db_dir, args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="score_speed_"))
    files = {}
    for name, preds in (("gold", [g for g, _ in golds]), ("mix", mix)):
        pred_path, gold_path = workdir / f"{name}.pred.txt", workdir / f"{name}.gold.txt"
        pred_path.write_text("".join(scoring.flatten_sql(p) + "\n" for p in preds), encoding="utf-8")
        gold_path.write_text("".join(f"{g}\t{db}\n" for g, db in golds), encoding="utf-8")
        files[name] = (pred_path, gold_path)
    n = len(golds)
    print(f"Spider dev: {n} pairs; files in {workdir}; {args.repeats} runs each, median")
    if hasattr(os, "getloadavg"):
        print(f"load average at start: {os.getloadavg()[0]:.2f} (anything else running skews these numbers)")
    print(f"effective parallel cores (two CPU-bound processes vs one): {effective_cores():.2f}")
    if not args.official:
        print("official evaluator: SKIPPED (no --official DIR given)")

    # ---------------------------------------------------------------- 1. scoring files
    official_key = "official `evaluation.py --etype exec` (wall)"
    configs = []  # (label, file name, run() -> seconds or an error message, verdicts list or None)
    verdicts: dict[tuple[str, str], list[bool]] = {}
    for name, (pred_path, gold_path) in files.items():
        g = scoring.read_gold_file(gold_path)
        p = scoring.read_pred_file(pred_path, expected=len(g))

        def ours(workers, name=name, p=p, g=g):
            fresh_caches()
            start = time.perf_counter()
            records = scoring.score_predictions(p, g, db_dir, 2.0, workers)
            seconds = time.perf_counter() - start
            verdicts[(f"ours w={workers}", name)] = [r["exec_match"] for r in records]
            return seconds

        def naive(name=name, p=p, g=g):
            fresh_caches()
            start = time.perf_counter()
            verdicts[("naive", name)] = naive_score(p, g, db_dir)
            return time.perf_counter() - start

        cli = [sys.executable, str(REPO / "evaluate.py"), "--score_only", "--pred", str(pred_path), "--gold",
               str(gold_path), "--db_dir", str(db_dir), "--results", str(workdir / f"{name}.results.jsonl")]
        configs += [
            ("ours, score_predictions workers=1", name, lambda f=ours: f(1)),
            ("ours, score_predictions workers=2", name, lambda f=ours: f(2)),
            ("ours, `evaluate.py --score_only` (wall, 2 workers)", name,
             lambda cmd=cli: timed_subprocess(cmd, str(REPO), dict(os.environ))),
            ("naive (connection per query, gold re-run per pair)", name, naive),
        ]
        if args.official:
            cmd = [args.official_python, "evaluation.py", "--gold", str(gold_path), "--pred", str(pred_path),
                   "--db", str(db_dir), "--table", str(spider / "tables.json"), "--etype", "exec"]
            configs.append((official_key, name,
                            lambda cmd=cmd: timed_subprocess(cmd, args.official, official_env(workdir))))
    times: dict[tuple[str, str], list] = {}
    for _ in range(args.repeats):  # interleaved, so that a burst of load elsewhere hits every row alike
        for label, name, run in configs:
            times.setdefault((label, name), []).append(run())
    rates: dict[tuple[str, str], float | str] = {}
    for key, values in times.items():
        errors = [v for v in values if isinstance(v, str)]
        rates[key] = errors[0] if errors else n / statistics.median(values)
    notes = []
    for name, (pred_path, gold_path) in files.items():
        p = [" ".join(x.split()) for x in scoring.read_pred_file(pred_path)]
        g = [" ".join(x.split()) for x, _ in scoring.read_gold_file(gold_path)]
        same = verdicts[("ours w=1", name)] == verdicts[("ours w=2", name)] == verdicts[("naive", name)]
        notes.append(f"{name}: {sum(a != b for a, b in zip(p, g))} of {n} predictions differ from their gold "
                     f"(whitespace aside), match rate {sum(verdicts[('ours w=2', name)]) / n:.3f}; "
                     f"ours w=1, ours w=2 and naive give identical verdicts: {same}")

    print("\n### Scoring pred.txt/gold.txt on Spider dev (pairs per second, higher is better)\n")
    print("| scorer | gold vs gold | mix (~half perturbed) | speedup vs official (gold / mix) |")
    print("|---|---:|---:|---:|")
    labels = list(dict.fromkeys(k for k, _ in rates))
    for label in labels:
        cells, speedups = [], []
        for name in files:
            v = rates[(label, name)]
            cells.append(v if isinstance(v, str) else f"{v:,.0f}")
            off = rates.get((official_key, name))
            speedups.append(f"{v / off:.1f}x" if isinstance(v, float) and isinstance(off, float) else "-")
        print(f"| {label} | {cells[0]} | {cells[1]} | {' / '.join(speedups)} |")
    for line in notes:
        print(f"\n- {line}", end="")
    print()

    # ---------------------------------------------------------------- 2. GRPO rewards
    print("\n### GRPO reward: 16 prompts x 8 completions = 128 rewards per call (rewards per second; "
          "in brackets, the speedup vs the official evaluator on the mix file)\n")
    print("| SQLExecutionReward | fresh object (pool starts, no gold cached) | new prompts (gold not cached) "
          "| cached (same prompts again) |")
    print("|---|---:|---:|---:|")
    off = rates.get((official_key, "mix"))
    for workers in (2, 1):
        r = reward_speed(golds, mix, db_dir, workers, args.repeats, args.seed)
        cells = [f"{r[k]:,.0f}" + (f" ({r[k] / off:.1f}x)" if isinstance(off, float) else "")
                 for k in ("fresh object", "new prompts", "cached")]
        print(f"| workers={workers} | " + " | ".join(cells) + " |")
    voting_and_test_suites(args, spider, golds, mix, workdir, rates, official_key)
    print(f"\neffective parallel cores at the end: {effective_cores():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
