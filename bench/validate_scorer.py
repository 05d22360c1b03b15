"""Does our execution match agree with Spider's official evaluator, example by example, on real dev?

Usage:
    python bench/validate_scorer.py [--spider DIR] [--official DIR --official-python PY]
                                    [--max-per-family N] [--workdir DIR] [--seed S]

  --spider    Spider release folder with dev_gold.sql, tables.json, database/<db>/<db>.sqlite
              (default: ../shared/spider next to the repository; absent -> skip, exit 0)
  --official  a checkout of github.com/taoyds/test-suite-sql-eval (no default: without it only
              our side is run, and the official columns are left empty)
  --official-python  a python with the official code's requirements (sqlparse, nltk, tqdm);
              default: this interpreter. Example: --official-python /tmp/offvenv/bin/python

What it does:
  1. Builds perturbation families of the 1034 dev gold queries (gold itself, reordered SELECT
     columns, ORDER BY dropped or flipped, LIMIT changed, DISTINCT added/removed, another gold of
     the same database, broken syntax, `value` placeholders, `> =` spacing, empty answers, ...),
     with sqlglot or plain string edits, and writes a pred.txt / gold.txt pair per family into
     the work directory (a fresh temporary one unless --workdir is given; it is kept).
  2. Scores every family with ours (scoring.read_gold_file / read_pred_file / score_predictions,
     the code path of `python evaluate.py --score_only`).
  3. With --official: gets per-example official verdicts from a small driver (written to the work
     directory, run with the official python) that imports the official `exec_eval.eval_exec_match`
     and calls it as `evaluation.py` does (same file reading, same `value` -> 1 rewrite, default
     flags). The official `evaluation.py --etype exec` is also run, unmodified, on every family;
     its printed accuracy must equal the driver's (a check that the driver reproduces it).
  4. Prints a table: family, n, ours match rate, official match rate, disagreements; then every
     disagreement with its queries and a diagnosis of its cause.
  5. Checks the hardness distribution of dev (easy 248, medium 446, hard 174, extra 166), ours,
     and per example against the official `Evaluator.eval_hardness`.

The `edge_*` families hold predictions that are not queries a Spider model writes: an empty
statement, a comment, PRAGMA, DELETE, EXPLAIN (on golds with an empty result), printf(), a column
aliased GO, `... FROM t GO SELECT 1`. They run on a writable copy of their databases in the work
directory, whose checksums are compared before and after (the official code executes whatever it
is given; a DELETE is rolled back by its close-without-commit). Their disagreements are listed
apart (a few per family), and the exit status is 1 only when a Spider-like family disagrees.
Two last probes: pred.txt lines holding characters that str.splitlines() treats as line breaks,
and a prediction whose timed-out result is reused for an identical, slower gold query.

Nothing here is imported by the project; the official code is never copied into the repository.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from common import REPO_DIR as REPO  # the shared opening (bench/common.py): the repository on sys.path

EXPECTED_HARDNESS = {"easy": 248, "medium": 446, "hard": 174, "extra": 166}

# The per-example driver, run with the official python. It reads the files as evaluation.py's
# evaluate() does (strip, split on tabs; one example a line here, so no blank-line sessions),
# rewrites "value" -> "1" in the prediction as evaluate() does, and calls eval_exec_match with the
# default flags. It also reports what the official code executes (postprocess + remove_distinct)
# and, on request, the official hardness of each gold query.
DRIVER = r'''
import json, os, sys
official, gold_path, pred_path, db_dir, out_path, want_hardness = sys.argv[1:7]
sys.path.insert(0, official)
os.chdir(official)
from exec_eval import eval_exec_match, postprocess
from parse import remove_distinct
with open(gold_path) as f:
    golds = [l.strip().split("\t") for l in f.readlines() if len(l.strip())]
with open(pred_path) as f:
    preds = [l.strip().split("\t") for l in f.readlines() if len(l.strip())]
assert len(golds) == len(preds), (len(golds), len(preds))
if want_hardness == "1":
    from evaluation import Evaluator
    from process_sql import Schema, get_schema, get_sql
    evaluator = Evaluator()
out = []
for p, (g_str, db) in zip(preds, golds):
    p_str = p[0].replace("value", "1")
    db_file = os.path.join(db_dir, db, db + ".sqlite")
    row = {}
    try:
        row["executed"] = remove_distinct(postprocess(p_str))
    except Exception as exc:
        row["executed"] = "<%s: %s>" % (type(exc).__name__, exc)
    try:
        row["verdict"] = int(eval_exec_match(db=db_file, p_str=p_str, g_str=g_str, plug_value=False,
                                             keep_distinct=False, progress_bar_for_each_datapoint=False))
    except BaseException as exc:
        row["verdict"] = None
        row["crash"] = "%s: %s" % (type(exc).__name__, exc)
    if want_hardness == "1":
        try:
            row["hardness"] = evaluator.eval_hardness(get_sql(Schema(get_schema(db_file)), g_str))
        except Exception as exc:
            row["hardness"] = None
    out.append(row)
with open(out_path, "w") as f:
    json.dump(out, f)
'''


# ----------------------------------------------------------------------
# perturbations

def strip_semicolon(sql: str) -> str:
    return sql.rstrip().rstrip(";").rstrip()


class Perturber:
    """Builds the perturbation families. Each builder returns a prediction or None (not applicable)."""

    def __init__(self, golds: list[tuple[str, str]], db_dir: Path, seed: int):
        import sqlglot

        self.sqlglot = sqlglot
        self.golds = golds
        self.db_dir = db_dir
        self.rng = random.Random(seed)
        self.by_db: dict[str, list[int]] = collections.defaultdict(list)
        for i, (_, db) in enumerate(golds):
            self.by_db[db].append(i)
        self._rows: dict[int, list[tuple] | None] = {}

    # helpers
    def parse(self, sql: str):
        try:
            return self.sqlglot.parse_one(strip_semicolon(sql), read="sqlite")
        except Exception:
            return None

    def gen(self, tree) -> str | None:
        try:
            return tree.sql(dialect="sqlite")
        except Exception:
            return None

    def gold_rows(self, i: int) -> list[tuple] | None:
        """The gold result, from a plain read-only sqlite3 connection (independent of utils)."""
        if i not in self._rows:
            sql, db = self.golds[i]
            path = self.db_dir / db / f"{db}.sqlite"
            conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True)
            conn.text_factory = lambda b: b.decode(errors="ignore")
            try:
                self._rows[i] = conn.execute(strip_semicolon(sql)).fetchall()
            except sqlite3.Error:
                self._rows[i] = None
            finally:
                conn.close()
        return self._rows[i]

    def top_select(self, sql: str):
        tree = self.parse(sql)
        exp = self.sqlglot.exp
        return tree if isinstance(tree, exp.Select) else None

    # families: name -> builder(i) (i indexes self.golds)
    def families(self) -> dict:
        return {
            "gold": lambda i: self.golds[i][0],
            "gold_regenerated": self.regenerated,
            "select_reordered": self.select_reordered,
            "order_by_dropped": self.order_by_dropped,
            "order_dir_flipped": self.order_dir_flipped,
            "limit_changed": self.limit_changed,
            "distinct_added": self.distinct_added,
            "distinct_removed": self.distinct_removed,
            "other_gold_same_db": self.other_gold_same_db,
            "syntax_error": self.syntax_error,
            "value_placeholder": self.value_placeholder,
            "op_spacing": self.op_spacing,
            "empty": lambda i: "",
            "where_dropped": self.where_dropped,
            "agg_swapped": self.agg_swapped,
            "int_as_real": self.int_as_real,
            "lowercased": lambda i: self.golds[i][0].lower(),
            "cte_wrapped": lambda i: f"WITH q AS ({strip_semicolon(self.golds[i][0])}) SELECT * FROM q",
            "subquery_wrapped": lambda i: f"SELECT * FROM ({strip_semicolon(self.golds[i][0])})",
            "comments": self.comments,
            "second_statement": self.second_statement,
            "union_all_self": self.union_all_self,
        }

    def regenerated(self, i):
        tree = self.parse(self.golds[i][0])
        return self.gen(tree) if tree is not None else None

    def select_reordered(self, i):
        tree = self.top_select(self.golds[i][0])
        if tree is None or len(tree.expressions) < 2:
            return None
        tree.set("expressions", list(reversed(tree.expressions)))
        return self.gen(tree)

    def order_by_dropped(self, i):
        tree = self.parse(self.golds[i][0])
        if tree is None or not tree.args.get("order"):
            return None
        tree.set("order", None)
        return self.gen(tree)

    def order_dir_flipped(self, i):
        tree = self.parse(self.golds[i][0])
        if tree is None or not tree.args.get("order"):
            return None
        for key in tree.args["order"].expressions:
            key.set("desc", not key.args.get("desc"))
        return self.gen(tree)

    def limit_changed(self, i):
        sql = strip_semicolon(self.golds[i][0])
        m = re.search(r"\bLIMIT\s+(\d+)\s*$", sql, re.I)
        if m:
            return sql[: m.start(1)] + str(int(m.group(1)) + 1)
        return sql + " LIMIT 1"

    def distinct_added(self, i):
        sql = self.golds[i][0]
        if re.match(r"\s*SELECT\s+DISTINCT\b", sql, re.I):
            return None
        return re.sub(r"^\s*SELECT\s+", "SELECT DISTINCT ", sql, count=1, flags=re.I)

    def distinct_removed(self, i):
        sql = self.golds[i][0]
        if not re.search(r"\bdistinct\b", sql, re.I):
            return None
        return re.sub(r"\bdistinct\b\s*", "", sql, flags=re.I)

    def other_gold_same_db(self, i):
        sql, db = self.golds[i]
        others = [j for j in self.by_db[db] if self.golds[j][0] != sql]
        return self.golds[self.rng.choice(others)][0] if others else None

    def syntax_error(self, i):
        sql = strip_semicolon(self.golds[i][0])
        variant = i % 5
        if variant == 0:
            return re.sub(r"\bFROM\b", "FORM", sql, count=1, flags=re.I)
        if variant == 1:
            return sql + " WHERE"
        if variant == 2:
            return re.sub(r"^SELECT\b", "SELEC", sql, count=1, flags=re.I)
        if variant == 3:
            return re.sub(r"^SELECT\s+", "SELECT ( ", sql, count=1, flags=re.I)
        return sql + " AND AND 1"

    _LITERAL = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(?<![\w.])\d+(?:\.\d+)?(?![\w.])")

    def value_placeholder(self, i):
        sql = self.golds[i][0]
        if not self._LITERAL.search(sql):
            return None
        variant = i % 3
        if variant == 0:
            return self._LITERAL.sub("value", sql)  # every literal -> value (the official makes it 1)
        if variant == 1:
            return self._LITERAL.sub("value", sql, count=1)
        return self._LITERAL.sub("'value'", sql, count=1)  # a quoted placeholder: '1' after the rewrite

    def op_spacing(self, i):
        sql = self.golds[i][0]
        if not re.search(r"[<>!]", sql):
            return None
        spaced = sql.replace(">=", "> =").replace("<=", "< =").replace("!=", "! =")
        if i % 2 and re.search(r"(?<![<>!])[<>](?![=>])", sql):
            # strict -> non-strict written with a space: '> =' (the official joins it to '>=')
            spaced = re.sub(r"(?<![<>!])([<>])(?![=>])", r"\1 =", sql)
        if "<>" in sql and i % 3 == 0:
            spaced = sql.replace("<>", "< >")  # not rewritten by anyone: a syntax error
        return spaced if spaced != sql else None

    def where_dropped(self, i):
        tree = self.top_select(self.golds[i][0])
        if tree is None or not tree.args.get("where"):
            return None
        tree.set("where", None)
        return self.gen(tree)

    def agg_swapped(self, i):
        sql = self.golds[i][0]
        swap = {"max": "min", "min": "max", "avg": "sum", "sum": "avg"}
        out = re.sub(r"\b(max|min|avg|sum)\s*\(", lambda m: swap[m.group(1).lower()] + "(", sql, flags=re.I)
        return out if out != sql else None

    def int_as_real(self, i):
        """An integer result column computed as REAL: equal values under Python's ==, other str()."""
        tree = self.top_select(self.golds[i][0])
        rows = self.gold_rows(i)
        if tree is None or not rows or len(tree.expressions) != len(rows[0]) or len(rows[0]) < 2:
            return None
        exp = self.sqlglot.exp
        for col, proj in enumerate(tree.expressions):
            if isinstance(proj, exp.Star) or not all(type(r[col]) is int for r in rows):
                continue
            target = proj.this if isinstance(proj, exp.Alias) else proj
            real = exp.Mul(this=exp.Paren(this=target.copy()), expression=exp.Literal.number("1.0"))
            if isinstance(proj, exp.Alias):
                proj.set("this", real)
            else:
                proj.replace(real)
            return self.gen(tree)
        return None

    def comments(self, i):
        sql = strip_semicolon(self.golds[i][0])
        return f"/* answer */ {sql}" if i % 2 else f"{sql} -- the answer"

    def second_statement(self, i):
        sql = strip_semicolon(self.golds[i][0])
        return f"{sql}; SELECT 1" if i % 2 else f"{sql} ;"

    def union_all_self(self, i):
        sql = strip_semicolon(self.golds[i][0])
        if re.search(r"\b(order\s+by|limit|union|intersect|except)\b", sql, re.I):
            return None
        return f"{sql} UNION ALL {sql}"

    # edge families: not queries a Spider model writes; they run on a writable copy of the databases
    def edge_families(self) -> dict:
        return {
            "edge_empty_statement": lambda i: self._on_empty_gold(i, ";"),
            "edge_comment_only": lambda i: self._on_empty_gold(i, "-- no query"),
            "edge_pragma": lambda i: self._on_empty_gold(i, "PRAGMA table_info(no_such_table)"),
            "edge_delete": self.edge_delete,
            "edge_explain": lambda i: self._on_empty_gold(i, "EXPLAIN " + strip_semicolon(self.golds[i][0])),
            "edge_select_nothing": lambda i: self._on_empty_gold(i, "SELECT 1 WHERE 0"),  # a control: both match
            "edge_printf": self.edge_printf,
            "edge_alias_GO": self.edge_alias_go,
            "edge_GO_then_query": self.edge_go_tail,
        }

    def _on_empty_gold(self, i, pred):
        return pred if self.gold_rows(i) == [] else None

    def edge_delete(self, i):
        tree = self.parse(self.golds[i][0]) if self.gold_rows(i) == [] else None
        table = next(iter(tree.find_all(self.sqlglot.exp.Table)), None) if tree is not None else None
        return f"DELETE FROM {table.sql(dialect='sqlite')}" if table is not None else None

    def _first_projection(self, i):
        tree = self.top_select(self.golds[i][0])
        if tree is None or not self.gold_rows(i) or isinstance(tree.expressions[0], self.sqlglot.exp.Star):
            return None, None, None
        proj = tree.expressions[0]
        return tree, proj, (proj.this if isinstance(proj, self.sqlglot.exp.Alias) else proj)

    def edge_printf(self, i):
        """printf('%s', x) on a text column: the same values; ours denies printf (it can run for seconds)."""
        tree, proj, target = self._first_projection(i)
        if tree is None or not all(isinstance(r[0], str) for r in self.gold_rows(i)):
            return None
        exp = self.sqlglot.exp
        wrapped = exp.Anonymous(this="printf", expressions=[exp.Literal.string("%s"), target.copy()])
        if isinstance(proj, exp.Alias):
            proj.set("this", wrapped)
        else:
            proj.replace(wrapped)
        return self.gen(tree)

    def edge_alias_go(self, i):
        """A column aliased GO: sqlparse ends a statement after the keyword GO."""
        tree, proj, target = self._first_projection(i)
        if tree is None:
            return None
        proj.replace(self.sqlglot.exp.alias_(target.copy(), "GO"))
        return self.gen(tree)

    def edge_go_tail(self, i):
        base = strip_semicolon(self.golds[i][0])
        return f"{base} GO SELECT 1" if re.search(r"\bFROM\s+\w+$", base, re.I) else None


# ----------------------------------------------------------------------
# running the two scorers

def write_family(folder: Path, name: str, items: list[tuple[int, str]], golds: list[tuple[str, str]]) -> tuple[Path, Path]:
    from sql_rlvr import scoring

    pred, gold = folder / f"{name}.pred.txt", folder / f"{name}.gold.txt"
    pred.write_text("".join(scoring.flatten_sql(p) + "\n" for _, p in items), encoding="utf-8")
    gold.write_text("".join(f"{golds[i][0]}\t{golds[i][1]}\n" for i, _ in items), encoding="utf-8")
    return pred, gold


def run_ours(pred: Path, gold: Path, db_dir: Path, timeout_s: float, workers: int) -> list[dict]:
    from sql_rlvr import scoring

    golds = scoring.read_gold_file(gold)
    preds = scoring.read_pred_file(pred, expected=len(golds))
    return scoring.score_predictions(preds, golds, db_dir, timeout_s, workers)


def official_env(workdir: Path) -> dict:
    # An empty English punkt_tab model serves offline (word_tokenize only needs it to exist).
    punkt = workdir / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    punkt.mkdir(parents=True, exist_ok=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (punkt / name).touch()
    env = dict(os.environ)
    env["NLTK_DATA"] = str(workdir / "nltk_data")
    return env


def run_official_driver(args, workdir: Path, pred: Path, gold: Path, db_dir: Path, hardness: bool) -> list[dict]:
    driver = workdir / "official_driver.py"
    if not driver.exists():
        driver.write_text(DRIVER)
    out = pred.with_suffix(".official.json")
    cmd = [args.official_python, str(driver), str(Path(args.official).resolve()), str(gold.resolve()),
           str(pred.resolve()), str(db_dir.resolve()), str(out.resolve()), "1" if hardness else "0"]
    proc = subprocess.run(cmd, env=official_env(workdir), capture_output=True, text=True, timeout=args.official_timeout)
    if proc.returncode != 0:
        raise SystemExit(f"official driver failed on {pred.name}:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def run_official_cli(args, workdir: Path, pred: Path, gold: Path, db_dir: Path, tables: Path) -> dict | str:
    """Run the unmodified evaluation.py; return its count and execution rows, or why it failed."""
    cmd = [args.official_python, "evaluation.py", "--gold", str(gold.resolve()), "--pred", str(pred.resolve()),
           "--db", str(db_dir.resolve()), "--table", str(tables.resolve()), "--etype", "exec"]
    try:
        proc = subprocess.run(cmd, cwd=args.official, env=official_env(workdir), capture_output=True, text=True,
                              timeout=args.official_timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {args.official_timeout} s"
    if proc.returncode != 0:
        return "crashed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
    table = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("count", "execution") and len(parts) == 6:
            table[parts[0]] = dict(zip(("easy", "medium", "hard", "extra", "all"), parts[1:]))
    return table


# ----------------------------------------------------------------------
# diagnosing a disagreement

def _plain_exec(db_file: str, sql: str):
    conn = sqlite3.connect(f"file:{urllib.parse.quote(db_file)}?mode=ro", uri=True)
    conn.text_factory = lambda b: b.decode(errors="ignore")
    try:
        return conn.execute(sql).fetchall()
    except Exception as exc:
        return f"<{type(exc).__name__}: {exc}>"
    finally:
        conn.close()


def diagnose(pred: str, gold_sql: str, db_file: str, ours: dict, official: dict) -> str:
    from sql_rlvr import scoring

    ours_sql = scoring.official_normalize(pred.replace("\t", " "), is_prediction=True)
    off_sql = official.get("executed", "")
    if "crash" in official:
        return f"the official code crashed: {official['crash']}"
    if ours_sql != off_sql:
        return (f"different text executed: the official runs {off_sql!r} (sqlparse's first statement), "
                f"ours runs {ours_sql!r}")
    if ours["outcome"] == "invalid" and (ours["error"] or "").startswith("refused"):
        gold_rows = _plain_exec(db_file, scoring.official_normalize(gold_sql, is_prediction=False))
        if gold_rows == [] and official["verdict"] == 1:
            return (f"ours refuses to run it ({ours['error']}); the official executes it, sqlite3 returns no "
                    "rows for a statement that yields none, and two empty results match")
        return (f"ours refuses to run it ({ours['error']}); the official executes it "
                f"(result {str(_plain_exec(db_file, off_sql))[:120]})")
    if ours["outcome"] == "invalid":
        return f"ours fails to run it ({ours['error']}); plain sqlite3 gives {str(_plain_exec(db_file, off_sql))[:120]}"
    gold_rows = _plain_exec(db_file, scoring.official_normalize(gold_sql, is_prediction=False))
    pred_rows = _plain_exec(db_file, off_sql)
    if isinstance(gold_rows, list) and isinstance(pred_rows, list) and gold_rows == pred_rows:
        kinds = sorted({f"{type(a).__name__}/{type(b).__name__}" for g, p in zip(gold_rows, pred_rows)
                        for a, b in zip(g, p) if type(a) is not type(b)})
        unordered_differ = any(scoring.unordered_rows([g]) != scoring.unordered_rows([p]) for g, p in zip(gold_rows, pred_rows))
        return ("results equal under Python == (value types " + ", ".join(kinds or ["same"]) + ")"
                + ("; the official's per-row sort by str(value)+str(type) orders them differently, so its "
                   "quick_rej rejects, while ours returns True at `if gold == pred`" if unordered_differ else ""))
    return f"unexplained: gold {str(gold_rows)[:150]} / pred {str(pred_rows)[:150]}"


# ----------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spider", default=str(REPO.parent / "shared" / "spider"))
    ap.add_argument("--official", default=None, help="checkout of taoyds/test-suite-sql-eval")
    ap.add_argument("--official-python", default=sys.executable)
    ap.add_argument("--official-timeout", type=int, default=900, help="seconds per official run (it hangs on runaway SQL)")
    ap.add_argument("--max-per-family", type=int, default=400, help="examples per perturbation family (gold: all)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=2.0, help="our per-query limit, seconds")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--show-edge", type=int, default=2, help="disagreements shown per edge family")
    args = ap.parse_args()

    spider = Path(args.spider)
    if not ((spider / "dev_gold.sql").is_file() and (spider / "database").is_dir()):
        print(f"SKIP: no Spider data at {spider} (needs dev_gold.sql and database/); pass --spider DIR")
        return 0
    if args.official and not (Path(args.official) / "exec_eval.py").is_file():
        print(f"--official {args.official} holds no exec_eval.py (expected a test-suite-sql-eval checkout)")
        return 2
    from sql_rlvr import errors, scoring

    db_dir = spider / "database"
    golds = scoring.read_gold_file(spider / "dev_gold.sql")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="validate_scorer_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"Spider: {spider} ({len(golds)} dev examples); work dir: {workdir}")
    if not args.official:
        print("official evaluator: SKIPPED (no --official DIR given); only our side runs")

    perturber = Perturber(golds, db_dir, args.seed)
    rng = random.Random(args.seed)
    families: dict[str, list[tuple[int, str]]] = {}
    for name, build in {**perturber.families(), **perturber.edge_families()}.items():
        items = []
        for i in range(len(golds)):
            pred = build(i)
            if pred is None or (name != "gold" and pred == golds[i][0]):
                continue
            items.append((i, pred))
        if name != "gold" and len(items) > args.max_per_family:
            items = sorted(rng.sample(items, args.max_per_family))
        if items:
            families[name] = items

    # the edge families get their own writable copy of their databases
    edge_db = workdir / "edge_database"
    if edge_db.exists():
        shutil.rmtree(edge_db)
    for db in sorted({golds[i][1] for name, items in families.items() if is_edge(name) for i, _ in items}):
        shutil.copytree(db_dir / db, edge_db / db)
    edge_db.mkdir(exist_ok=True)
    for path in [edge_db, *edge_db.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in edge_db.rglob("*.sqlite")}

    rows, disagreements = [], []
    official_hardness, ours_gold, checks = None, None, []
    start = time.time()
    for name, items in families.items():
        fam_db = edge_db if is_edge(name) else db_dir
        pred_path, gold_path = write_family(workdir, name, items, golds)
        ours = run_ours(pred_path, gold_path, fam_db, args.timeout, args.workers)
        ours_rate = sum(r["exec_match"] for r in ours) / len(ours)
        if name == "gold":
            ours_gold = ours
        off_rate, n_dis = None, None
        if args.official:
            off = run_official_driver(args, workdir, pred_path, gold_path, fam_db, hardness=(name == "gold"))
            if name == "gold":
                official_hardness = [o.get("hardness") for o in off]
            off_rate = sum(o["verdict"] or 0 for o in off) / len(off)
            n_dis = 0
            flat_preds = scoring.read_pred_file(pred_path)
            for (i, _), o, r in zip(items, off, ours):
                if o["verdict"] != int(r["exec_match"]):
                    n_dis += 1
                    pred = flat_preds[r["index"]]
                    db_file = str(fam_db / golds[i][1] / f"{golds[i][1]}.sqlite")
                    disagreements.append((name, i, pred, golds[i], r, o, diagnose(pred, golds[i][0], db_file, r, o)))
            cli = run_official_cli(args, workdir, pred_path, gold_path, fam_db, spider / "tables.json")
            if isinstance(cli, str):
                checks.append(f"{name}: evaluation.py {cli}")
            else:
                printed = float(cli["execution"]["all"])
                ok = abs(printed - off_rate) < 0.0005 + 1e-9
                checks.append(f"{name}: evaluation.py prints all={printed:.3f}, driver {off_rate:.4f} "
                              f"-> {'consistent' if ok else 'MISMATCH'}")
                if name == "gold":
                    checks.append("gold: evaluation.py hardness counts " + json.dumps(cli["count"]))
        rows.append((name, len(items), ours_rate, off_rate, n_dis))
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in edge_db.rglob("*.sqlite")}
    seconds = time.time() - start

    # ------------------------------------------------------------ report
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    print()
    print("| family | n | ours match | official match | disagreements |")
    print("|---|---:|---:|---:|---:|")
    for group in (False, True):
        part = [r for r in rows if is_edge(r[0]) == group]
        for name, n, o, f, d in part:
            print(f"| {name} | {n} | {fmt(o)} | {fmt(f)} | {'-' if d is None else d} |")
        label = "**edge families (not Spider-like)**" if group else "**Spider-like families**"
        dis = "-" if not args.official else sum(r[4] for r in part)
        print(f"| {label} | {sum(r[1] for r in part)} | | | {dis} |")
    print(f"\n({seconds:.0f} s; edge databases unchanged after both scorers ran: {before == after})")

    print("\nGold vs gold (ours): " + ("100% match" if all(r["exec_match"] for r in ours_gold)
                                     else f"{sum(not r['exec_match'] for r in ours_gold)} NOT matching"))
    counts = collections.Counter(r["hardness"] for r in ours_gold)
    ours_counts = {k: counts.get(k, 0) for k in EXPECTED_HARDNESS}
    verdict = "as expected" if ours_counts == EXPECTED_HARDNESS else f"DIFFERENT from {EXPECTED_HARDNESS}"
    print(f"Hardness (ours): {ours_counts} -> {verdict}")
    if official_hardness is not None:
        agree = sum(h == r["hardness"] for h, r in zip(official_hardness, ours_gold))
        print(f"Hardness per example vs the official Evaluator.eval_hardness: {agree}/{len(ours_gold)} agree")
        for (sql, _), h, r in zip(golds, official_hardness, ours_gold):
            if h != r["hardness"]:
                print(f"  official {h} / ours {r['hardness']}: {sql}")
    if checks:
        print("\nOfficial evaluation.py (unmodified) vs the per-example driver:")
        for line in checks:
            print("  " + line)

    def show(entry):
        name, i, pred, (gsql, db), r, o, why = entry
        print(f"- [{name}] dev #{i} ({db}): ours {int(r['exec_match'])} ({r['outcome']}), official {o['verdict']}")
        print(f"    pred: {pred}")
        print(f"    gold: {gsql}")
        print(f"    why:  {why}")

    main_dis = [d for d in disagreements if not is_edge(d[0])]
    edge_dis = [d for d in disagreements if is_edge(d[0])]
    if args.official:
        print(f"\nDisagreements on Spider-like predictions: {len(main_dis)}")
        for entry in main_dis:
            show(entry)
        print(f"\nDisagreements in the edge families: {len(edge_dis)} (at most {args.show_edge} shown per family)")
        shown = collections.Counter()
        for entry in edge_dis:
            shown[entry[0]] += 1
            if shown[entry[0]] <= args.show_edge:
                show(entry)

    # file reading: the official splits lines like readlines() (\n, \r only); str.splitlines splits more
    print("\npred.txt line splitting: one prediction line holding the character inside a string literal "
          "(gold: SELECT count(*) FROM singer):")
    for k, char in enumerate(("\x0c", "\x1c", "\x85", "\u2028")):
        probe, probe_gold = workdir / f"line_separator{k}.pred.txt", workdir / f"line_separator{k}.gold.txt"
        probe.write_text(f"SELECT count(*) FROM singer WHERE name != 'a{char}b'\n", encoding="utf-8")
        probe_gold.write_text("SELECT count(*) FROM singer\tconcert_singer\n", encoding="utf-8")
        try:
            r = run_ours(probe, probe_gold, db_dir, args.timeout, 1)[0]
            reading = f"one line, verdict {int(r['exec_match'])}"
        except errors.UserError as exc:
            reading = f"UserError ({str(exc).split(': ', 1)[1]})"
        official = "not run (no --official)"
        if args.official:
            o = run_official_driver(args, workdir, probe, probe_gold, db_dir, hardness=False)[0]
            official = f"one line, verdict {o['verdict']}"
        print(f"  {char!r}: ours -> {reading}; official -> {official}")

    # ours caches results by (database file, normalised SQL) for gold and prediction alike, though a
    # gold query gets max(timeout, 30 s) and a prediction `timeout`: a prediction that timed out
    # and equals a later gold query of the same database makes that gold "fail"
    slow = "SELECT count(*) FROM city AS a JOIN city AS b ON a.Population > b.Population"
    world = db_dir / "world_1" / "world_1.sqlite"
    if world.is_file():
        start = time.perf_counter()
        _plain_exec(str(world), slow)
        took = time.perf_counter() - start
        limit = round(took / 4, 3)
        probe_golds = [("SELECT count(*) FROM city", "world_1"), (slow, "world_1")]
        try:
            got = [(r["exec_match"], r["outcome"]) for r in
                   scoring.score_predictions([slow, slow], probe_golds, db_dir, limit, 1)]
        except errors.UserError as exc:
            got = f"UserError: {exc}"
        print(f"\nResult cache shared by gold and prediction (timeout_s={limit:g}; the query takes {took:.2f} s):\n"
              f"  pred.txt = [Q, Q], gold.txt = [SELECT count(*) FROM city, Q] (world_1), Q = {slow}\n"
              f"  ours -> {got}\n  expected: both invalid (each prediction is over its limit), and no gold error "
              f"(line 2's gold runs under 30 s; tests/test_scoring.py::test_gold_and_prediction_time_limits_are_kept_apart)"
              f" -> {'as expected' if got == [(False, 'invalid'), (False, 'invalid')] else 'DIFFERENT (a bug in ours)'}")
    return 1 if main_dis else 0


def is_edge(name: str) -> bool:
    return name.startswith("edge_")


if __name__ == "__main__":
    sys.exit(main())
