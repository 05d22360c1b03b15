"""Compare hardness.spider_hardness with Spider's official evaluator, query by query.

Usage:
    python bench/check_hardness.py --official DIR [--spider DIR] [--splits dev train_others]
                                     [--official-python PY] [-v]

DIR is a checkout of taoyds/test-suite-sql-eval (holding evaluation.py and
process_sql.py).  The official code needs nltk (and sqlparse); if the running
interpreter lacks them, pass --official-python with one that has them: the
official labels are then computed in a subprocess (it does not need sqlglot).

Per split it prints how many official labels could be computed and how many
agree.  Two official variants are run:
  strict  - the schema is the split's SQLite database when present (as in the
            official ``evaluate``), else tables.json; queries the official parser
            rejects (unknown names) are skipped;
  lenient - same parser, but unknown table/column names are accepted, so every
            query that is syntactically within the official grammar gets a label
            (train_others uses column names that tables.json lacks).
nltk's punkt data is not needed: when it is missing, word_tokenize runs with
preserve_line=True, which tokenizes Spider SQL identically (no '.', '?' or '!'
followed by whitespace occurs outside string literals).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
from common import SHARED_DIR  # noqa: E402  (the shared opening, bench/common.py: the repository on sys.path)

# SQL words that must never be taken as an unknown table name in lenient mode,
# so syntax the official parser cannot handle (comma joins, INNER JOIN) still fails.
_KEYWORDS = {
    "inner", "left", "right", "outer", "cross", "natural", "full", "join", "on", "as", "using",
    "select", "from", "where", "group", "order", "by", "having", "limit", "union", "intersect",
    "except", "and", "or", "not", "in", "like", "between", "is", "null", "exists", "distinct",
    "asc", "desc", "count", "max", "min", "sum", "avg",
}


def _official_labels(official: str, split_file: str, spider: str, lenient: bool) -> List[Optional[str]]:
    """Official hardness per example (None where the official parser raises)."""
    sys.path.insert(0, official)
    import nltk  # noqa: F401  (required by process_sql)
    import process_sql
    from evaluation import Evaluator

    try:
        nltk.word_tokenize("select a")
    except LookupError:  # punkt data not installed (offline)
        process_sql.word_tokenize = lambda s: nltk.tokenize.word_tokenize(s, preserve_line=True)

    class AnyList(list):
        def __contains__(self, item: object) -> bool:
            return True

    class LenientSchemaDict(dict):
        def __missing__(self, key: str) -> list:
            return AnyList()

    class LenientIdMap(dict):
        def __missing__(self, key: str) -> str:
            return "__" + key + "__"

    class LenientAliases(dict):
        def __missing__(self, key: str) -> str:
            if key in _KEYWORDS or not re.fullmatch(r"[a-z_][a-z0-9_]*", key):
                raise KeyError(key)
            return key

    orig_aliases = process_sql.get_tables_with_alias
    if lenient:
        process_sql.get_tables_with_alias = lambda schema, toks: LenientAliases(orig_aliases(schema, toks))

    tables = {e["db_id"]: e for e in json.load(open(os.path.join(spider, "tables.json")))}
    schema_cache: Dict[str, dict] = {}

    def raw_schema(db_id: str) -> dict:
        if db_id not in schema_cache:
            db_file = os.path.join(spider, "database", db_id, db_id + ".sqlite")
            if os.path.exists(db_file):
                schema_cache[db_id] = process_sql.get_schema(db_file)
            else:
                entry = tables.get(db_id, {"table_names_original": [], "column_names_original": []})
                names = [t.lower() for t in entry["table_names_original"]]
                sch: dict = {t: [] for t in names}
                for ti, col in entry["column_names_original"]:
                    if ti >= 0:
                        sch[names[ti]].append(col.lower())
                schema_cache[db_id] = sch
        return schema_cache[db_id]

    evaluator = Evaluator()
    labels: List[Optional[str]] = []
    for ex in json.load(open(split_file)):
        sch = raw_schema(ex["db_id"])
        if lenient:
            schema = process_sql.Schema(LenientSchemaDict({t: AnyList(c) for t, c in sch.items()}))
            schema._idMap = LenientIdMap(schema._idMap)
        else:
            schema = process_sql.Schema(sch)
        try:
            labels.append(evaluator.eval_hardness(process_sql.get_sql(schema, ex["query"])))
        except Exception:  # official parser rejects the query
            labels.append(None)
    process_sql.get_tables_with_alias = orig_aliases
    return labels


def _official_labels_any(args: argparse.Namespace, split_file: str, lenient: bool) -> List[Optional[str]]:
    if args.official_python:
        cmd = [args.official_python, os.path.abspath(__file__), "--_worker", "--official", args.official,
               "--spider", args.spider, "--_split-file", split_file] + (["--_lenient"] if lenient else [])
        return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return _official_labels(args.official, split_file, args.spider, lenient)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True, help="test-suite-sql-eval checkout")
    ap.add_argument("--spider", default=str(SHARED_DIR / "spider"), help="folder with dev.json, tables.json, database/")
    ap.add_argument("--splits", nargs="+", default=["dev", "train_others"])
    ap.add_argument("--official-python", help="interpreter with nltk for the official code")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every mismatch")
    ap.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_split-file", help=argparse.SUPPRESS)
    ap.add_argument("--_lenient", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.official = os.path.abspath(args.official)

    if args._worker:  # subprocess mode: official labels only, no sqlglot needed
        print(json.dumps(_official_labels(args.official, args._split_file, args.spider, args._lenient)))
        return 0

    from sql_rlvr.hardness import spider_hardness

    all_ok = True
    for split in args.splits:
        split_file = os.path.join(args.spider, split + ".json")
        queries = [ex["query"] for ex in json.load(open(split_file))]
        mine = [spider_hardness(q) for q in queries]
        print(f"{split}: {len(queries)} examples; spider_hardness distribution {dict(Counter(mine))}")
        for variant in ("strict", "lenient"):
            official = _official_labels_any(args, split_file, variant == "lenient")
            pairs = [(i, o, m) for i, (o, m) in enumerate(zip(official, mine)) if o is not None]
            equal = sum(o == m for _, o, m in pairs)
            print(f"  official {variant:7s}: labelled {len(pairs)}/{len(queries)}, "
                  f"equal {equal}/{len(pairs)}; official distribution "
                  f"{dict(Counter(o for _, o, _ in pairs))}")
            if equal != len(pairs):
                all_ok = False
                for i, o, m in pairs:
                    if o != m and args.verbose:
                        print(f"    #{i}: official={o} mine={m} :: {queries[i]}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
