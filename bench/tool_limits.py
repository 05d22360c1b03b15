"""The agentic mode's tool time (sql_tool.SQLTool, a worker process): what --tool_timeout_s must allow.

What it measures, each query run once through `SQLTool(probe_s, 10, workers=1)` (the path of every stage)
with a generous probe limit, so the time a query needs shows rather than the limit:
    * Spider dev: the 1034 gold queries on their real databases (`../shared/spider`);
    * BIRD-sized: BIRD's rows are not here (`../shared/bird` holds its schemas and mini-dev questions only),
      so each of the 11 dev databases is built from its real schema and filled with synthetic rows: the
      published row count of every table, each column's published null rate and number of distinct
      values (the schema comments' "Stats"), a unique index on each primary key. The 500 mini-dev gold
      queries then run on them. Values are synthetic: filters on literals mostly match nothing, so this
      measures scans, joins and sorts at BIRD's sizes, not BIRD's own results;
    * a big table: BIRD's largest (financial.trans, 1,056,320 rows) at --big_rows rows, and the queries
      an exploring model may write on it (full scans, a sort, a GROUP BY, SELECT *, a self-join, a cross
      join), each against the limits.

How to run (from the repository root, project venv active)
    python bench/tool_limits.py [--probe_s 30] [--big_rows 3000000] [--work_dir /tmp/tool_limits] [--skip_bird]

The databases are built once under --work_dir and reused. Prints markdown; parts whose inputs are
absent say "skipped".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sqlite3
import statistics
import sys
import time
from pathlib import Path

from common import REPO_DIR  # the shared opening (bench/common.py): the repository on sys.path

from sql_rlvr.sql_tool import SQLTool  # noqa: E402

LIMITS = (1, 2, 5, 10, 30)  # candidate --tool_timeout_s values: how many queries each would stop


def stats(ms: list[float]) -> str:
    """'median / p95 / p99 / max' in ms (nearest-rank percentiles)."""
    o = sorted(ms)
    pick = lambda q: o[min(len(o) - 1, int(q * len(o)))]  # noqa: E731
    return " / ".join(f"{v:.1f}" for v in (statistics.median(o), pick(0.95), pick(0.99), o[-1]))


def over(ms: list[float]) -> str:
    return ", ".join(f"> {s} s: {sum(t > 1000 * s for t in ms)}" for s in LIMITS)


def run_all(tool: SQLTool, items: list[tuple[str, str]]) -> tuple[list[float], dict[str, int], list[tuple[float, str]]]:
    """Each (db, sql) through the tool, one call at a time as TRL's loop makes them: wall ms, outcomes,
    and the slowest five."""
    ms, outcomes, slow = [], {}, []
    for db, sql in items:
        start = time.perf_counter()
        call = tool.run([(db, sql)])[0]
        ms.append(1000 * (time.perf_counter() - start))
        outcomes[call.outcome] = outcomes.get(call.outcome, 0) + 1
        slow = sorted(slow + [(ms[-1], f"{Path(db).stem}: {call.outcome}, {' '.join(sql.split())[:100]}")])[-5:]
    return ms, outcomes, slow


# ---------------------------------------------------------------- BIRD-sized synthetic databases


def _table_stats(schema_sql: str) -> dict[str, dict]:
    """{table: {"rows": n, "key": [cols], "cols": [(null fraction, unique fraction)] in column order}} from
    the schema file's comments ("-- N rows, primary key: (a, b)", "-- Stats: 17.3% null 0.4% unique")."""
    tables, current, stats_line = {}, None, None
    pending = {"rows": 1000, "key": [], "cols": []}  # a table without a row count gets 1000
    for line in schema_sql.splitlines():
        s = line.strip()
        if m := re.match(r"--\s*(\d+) rows(?:, primary key: \(([^)]*)\))?", s):
            pending = {"rows": int(m.group(1)), "key": [k.strip().strip('"`') for k in (m.group(2) or "").split(",")
                                                           if k.strip()], "cols": []}
        elif m := re.match(r'CREATE TABLE\s+["`]?([^"`\s(]+)', s, re.I):
            current = tables[m.group(1)] = pending
            pending = {"rows": 1000, "key": [], "cols": []}
        elif m := re.match(r"--\s*Stats:\s*([\d.]+)% null\s+([\d.]+)% unique", s):
            stats_line = (float(m.group(1)) / 100, float(m.group(2)) / 100)
        elif current is not None and s and not s.startswith(("--", ")")):
            current["cols"].append(stats_line or (0.0, 1.0))
            stats_line = None
    return tables


def build_bird_db(schema: Path, path: Path) -> None:
    """An empty database from the real schema, filled with synthetic rows of the published shape."""
    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    text = schema.read_text()
    conn.executescript(text)
    for table, info in _table_stats(text).items():
        columns = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        n, exprs = info["rows"], []
        for (_, name, kind, *_), (nulls, unique) in zip(columns, info["cols"] + [(0.0, 1.0)] * len(columns)):
            distinct = max(1, round(n * unique))
            v = "x" if name in info["key"] and len(info["key"]) == 1 else f"(abs(random()) % {distinct} + 1)"
            kind = kind.lower()
            if "int" in kind:
                value = v
            elif "real" in kind or "float" in kind or "double" in kind or "numeric" in kind:
                value = f"{v} + 0.5"
            elif "date" in kind:
                value = f"date('1990-01-01', '+' || {v} || ' days')"
            else:
                value = f"'{name[:12]} ' || {v}"
            exprs.append(value if nulls == 0 else f"CASE WHEN abs(random()) % 1000 < {round(1000 * nulls)} "
                                                  f"THEN NULL ELSE {value} END")
        conn.execute(f'INSERT INTO "{table}" WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c '
                     f'LIMIT {n}) SELECT {", ".join(exprs)} FROM c')
        if info["key"]:
            keys = ", ".join(f'"{k}"' for k in info["key"])
            try:
                conn.execute(f'CREATE UNIQUE INDEX "pk_{table}" ON "{table}" ({keys})')
            except sqlite3.IntegrityError:  # a composite key the random values repeat: a plain index
                conn.execute(f'CREATE INDEX "pk_{table}" ON "{table}" ({keys})')
    conn.commit()
    conn.close()
    tmp.rename(path)


def build_big_db(path: Path, rows: int) -> None:
    """BIRD's largest table, financial.trans, at `rows` rows (published shape: 11,382 accounts, ...)."""
    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    conn.executescript(f"""
        CREATE TABLE trans (trans_id integer, account_id integer, "date" date, type text, operation text,
                            amount integer, balance integer, k_symbol text, bank text, account integer);
        INSERT INTO trans WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {rows})
        SELECT x, abs(random()) % 11382 + 1, date('1993-01-01', '+' || (abs(random()) % 2190) || ' days'),
               CASE abs(random()) % 3 WHEN 0 THEN 'PRIJEM' WHEN 1 THEN 'VYDAJ' ELSE 'VYBER' END,
               CASE WHEN abs(random()) % 6 = 0 THEN NULL ELSE 'VYBER KARTOU' END,
               abs(random()) % 87400, abs(random()) % 250000 - 41126,
               CASE WHEN abs(random()) % 2 = 0 THEN NULL ELSE 'SIPO' END,
               CASE WHEN abs(random()) % 4 = 0 THEN 'AB' ELSE NULL END, abs(random()) % 99994199
        FROM c;
        CREATE UNIQUE INDEX pk_trans ON trans (trans_id);
    """)
    conn.commit()
    conn.close()
    tmp.rename(path)


BIG_QUERIES = [
    ("count(*)", "SELECT count(*) FROM trans"),
    ("filter, full scan", "SELECT count(*) FROM trans WHERE amount > 5000 AND type = 'VYDAJ'"),
    ("LIKE, full scan", "SELECT trans_id, amount FROM trans WHERE operation LIKE '%KARTOU%' AND k_symbol = 'SIPO'"),
    ("GROUP BY account", "SELECT account_id, sum(amount) FROM trans GROUP BY account_id"),
    ("ORDER BY, top 10", "SELECT * FROM trans ORDER BY amount DESC LIMIT 10"),
    ("COUNT(DISTINCT)", "SELECT count(DISTINCT account) FROM trans"),
    ("SELECT * (every row)", "SELECT * FROM trans"),
    ("SELECT DISTINCT", "SELECT DISTINCT account_id, type FROM trans"),
    ("self-join on account", "SELECT count(*) FROM trans AS a JOIN trans AS b ON a.account_id = b.account_id "
                             "WHERE a.trans_id < 1000"),
    ("cross join", "SELECT count(*) FROM trans AS a, trans AS b"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared_dir", default=str(REPO_DIR.parent / "shared"))
    parser.add_argument("--work_dir", default="/tmp/tool_limits", help="where the synthetic databases are built")
    parser.add_argument("--probe_s", type=float, default=30.0, help="the tool's time limit while measuring")
    parser.add_argument("--big_rows", type=int, default=3_000_000)
    parser.add_argument("--skip_bird", action="store_true")
    args = parser.parse_args()
    shared, work = Path(args.shared_dir), Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    tool = SQLTool(args.probe_s, 10, workers=1)
    tool.run([(":memory:", "SELECT 1")])  # the worker's start is not a call's time
    print(f"# Tool time, SQLTool(timeout_s={args.probe_s:g}, max_rows=10, workers=1), one call at a time\n")
    print(f"- machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"{datetime.datetime.now():%Y-%m-%d %H:%M}; SQLite {sqlite3.sqlite_version}")
    print("- wall time per call in ms: median / p95 / p99 / max; `> N s`: calls a --tool_timeout_s of N would stop\n")

    spider = shared / "spider"
    if (spider / "dev.json").exists():
        dev = json.loads((spider / "dev.json").read_text())
        items = [(str(spider / "database" / ex["db_id"] / f"{ex['db_id']}.sqlite"), ex["query"]) for ex in dev]
        ms, outcomes, slow = run_all(tool, items)
        print(f"## Spider dev gold queries ({len(items)})\n\n- {stats(ms)} ms; {over(ms)}; outcomes {outcomes}")
        print("- slowest: " + "; ".join(f"{t:.0f} ms {s}" for t, s in reversed(slow)) + "\n")
    else:
        print(f"## Spider dev: skipped ({spider} absent)\n")

    bird = shared / "bird"
    if not args.skip_bird and (bird / "mini_dev_sqlite.json").exists():
        start = time.perf_counter()
        for schema in sorted((bird / "schemas").glob("*.sql")):
            build_bird_db(schema, work / f"{schema.stem}.sqlite")
        built = time.perf_counter() - start
        questions = json.loads((bird / "mini_dev_sqlite.json").read_text())
        items = [(str(work / f"{q['db_id']}.sqlite"), q["SQL"]) for q in questions]
        ms, outcomes, slow = run_all(tool, items)
        print(f"## BIRD mini-dev gold queries ({len(items)}) on synthetic rows of BIRD's sizes "
              f"(built in {built:.0f} s)\n\n- {stats(ms)} ms; {over(ms)}; outcomes {outcomes}")
        print("- slowest: " + "; ".join(f"{t:.0f} ms {s}" for t, s in reversed(slow)) + "\n")
    else:
        print("## BIRD-sized: skipped\n")

    big = work / f"trans_{args.big_rows}.sqlite"
    build_big_db(big, args.big_rows)
    print(f"## One big table: trans with {args.big_rows:,} rows\n")
    print("| query | seconds | outcome | what the model reads (last line) |\n| --- | ---: | --- | --- |")
    for name, sql in BIG_QUERIES:
        start = time.perf_counter()
        call = tool.run([(str(big), sql)])[0]
        print(f"| {name} | {time.perf_counter() - start:.2f} | {call.outcome} | `{call.text.splitlines()[-1][:60]}` |")
    tool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
