"""Scoring as the official evaluators score: the rewriting they do before executing, the match rules
(Spider's test-suite-sql-eval and BIRD's evaluation_ex.py), their file formats (pred.txt / gold.txt,
predict_dev.json / dev_gold.sql), batch scoring and self-consistency voting, and the score tables.

Executes only through sandbox.py (its worker pool makes every time limit hard). Imports errors,
sandbox and hardness; never utils, benchmarks or anything that loads a model: score-only
evaluation and the reward workers start in a second.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable

from sql_rlvr.errors import UserError
from sql_rlvr.hardness import spider_hardness
from sql_rlvr.sandbox import ExecResult, WorkerPool, execute_sql

GOLD_TIMEOUT_S = 30.0  # time limit of a gold query (at least the predictions' own)
EMPTY_PREDICTION = "SELECT"  # placeholder written for an empty answer: keeps pred.txt paired, always wrong

# ======================================================================
# Spider's execution match (test-suite-sql-eval exec_eval.py), and the rewriting before it


_TYPE_NAMES = {t: str(t) for t in (int, float, str, bytes, type(None))}


def _unorder_key(x: Any) -> str:
    # The official evaluator's sort key, str(x) + str(type(x)), with the type names looked up once.
    t = type(x)
    return str(x) + (_TYPE_NAMES[t] if t in _TYPE_NAMES else str(t))


def _unorder_row(row: tuple) -> tuple:
    """The official evaluator's row normalisation: values sorted by their key (a stable sort)."""
    if len(row) == 2:  # the common case, without sorted(): equal keys keep their order, as a stable sort does
        return row if _unorder_key(row[0]) <= _unorder_key(row[1]) else (row[1], row[0])
    return tuple(sorted(row, key=_unorder_key))


def unordered_rows(rows: list[tuple]) -> list[tuple]:
    return rows if rows and len(rows[0]) == 1 else [_unorder_row(r) for r in rows]


def results_match(gold: list[tuple], pred: list[tuple], order_matters: bool, *,
                  unorder: Callable[[list[tuple]], list[tuple]] | None = None) -> bool:
    """Spider's official execution match on two results (test-suite-sql-eval `result_eq`).

    Both empty: match. Otherwise equal row counts and column counts, some permutation of the
    predicted columns under which the rows are equal as a multiset (or as a list when order
    matters). The official code samples rows at random to prune column permutations; pruning with
    every row instead gives the same verdict deterministically.
    """
    if not gold and not pred:
        return True
    if gold is pred:
        return True  # one result object (the same query on the same database): identical values and types
    if len(gold) != len(pred):
        return False
    ncols = len(gold[0])
    if len(pred[0]) != ncols:
        return False
    unorder = unorder or unordered_rows  # a caller comparing one result many times can pass a memo
    gold_unordered, pred_unordered = unorder(gold), unorder(pred)
    if order_matters:
        if gold_unordered != pred_unordered:
            return False
    elif set(gold_unordered) != set(pred_unordered):
        return False
    if ncols == 1:
        candidates: Iterable[tuple] = [(0,)]
    else:
        gold_columns = [{row[i] for row in gold} for i in range(ncols)]
        allowed = [[j for j in range(ncols) if all(row[j] in gold_columns[i] for row in pred)] for i in range(ncols)]
        candidates = itertools.product(*allowed)
    for perm in candidates:
        if len(set(perm)) != ncols:
            continue
        permuted = pred if ncols == 1 else [tuple(row[j] for j in perm) for row in pred]
        if order_matters:
            if permuted == gold:
                return True
        elif set(permuted) == set(gold) and collections.Counter(permuted) == collections.Counter(gold):
            return True
    return False


_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.I)


@functools.lru_cache(maxsize=65536)
def remove_distinct(sql: str) -> str:
    """The official `remove_distinct`: keep the first statement only, minus every DISTINCT token.

    Same tokens as `sqlparse.parse(sql)[0].flatten()` (grouping never changes the leaf tokens),
    without the grouping pass, which costs 100x more.
    """
    if ";" not in sql and "GO" not in sql and "distinct" not in sql.lower():
        # One statement (sqlparse also splits at the keyword GO), nothing to remove: its tokens join
        # back to the exact input.
        return sql
    from sqlparse.engine import FilterStack

    first = next(iter(FilterStack().run(sql)), None)
    if first is None:
        return sql
    return "".join(tok.value for tok in first.flatten() if tok.value.lower() != "distinct")


@functools.lru_cache(maxsize=65536)
def official_normalize(sql: str, *, is_prediction: bool, keep_distinct: bool = False) -> str:
    """The rewriting the official evaluator does before executing a query (default flags).

    keep_distinct=True is its --keep_distinct: remove_distinct is skipped altogether, so DISTINCT
    stays and the text is not cut to its first statement either (the official code does the same).
    """
    if is_prediction:
        sql = sql.replace("value", "1")  # evaluation.py, on every prediction, case-sensitive
    sql = sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")
    if not keep_distinct:
        sql = remove_distinct(sql)
    return _CUR_YEAR.sub("2020", sql)


def order_matters(gold_sql: str) -> bool:
    """Row order counts only when the gold query says 'order by' (anywhere, after normalisation)."""
    return "order by" in official_normalize(gold_sql, is_prediction=False).lower()


# ======================================================================
# match rules: what "same result" means, per benchmark (the metric, voting's groups and GRPO's +5 alike)


def rows_key(rows: list[tuple]) -> tuple:
    """The multiset of a result's rows, hashable: row order ignored, column order kept, and each
    value as SQLite returned it (repr tells 1 from 1.0 and from '1')."""
    return tuple(sorted(map(repr, rows)))


def spider_prepare(sql: str, is_prediction: bool, keep_distinct: bool = False) -> str:
    return official_normalize(sql, is_prediction=is_prediction, keep_distinct=keep_distinct)


def spider_rows_match(gold: list[tuple], pred: list[tuple], order_matters: bool, unorder: Any = None) -> bool:
    return results_match(gold, pred, order_matters, unorder=unorder)


def bird_prepare(sql: str, is_prediction: bool, keep_distinct: bool = False) -> str:
    """BIRD executes both queries as written: no DISTINCT removal, no `value` rewrite."""
    return sql


def bird_rows_match(gold: list[tuple], pred: list[tuple], order_matters: bool = False, unorder: Any = None) -> bool:
    """BIRD's verdict (mini_dev evaluation_ex.py `calculate_ex`): `set(pred) == set(gold)`.

    Rows are compared as Python tuples, so row order and duplicates are ignored and Python equality
    decides values (1 == 1.0, '1' != 1); columns are compared in their order, never permuted.
    `order_matters` and `unorder` are Spider's and are ignored here.
    """
    return set(pred) == set(gold)


def bird_group_key(rows: list[tuple]) -> frozenset:
    """Voting's key under BIRD's rule: the set of rows. Two keys are equal exactly when
    bird_rows_match says the results match, since Python hashes equal numbers alike (1, 1.0 and
    True hash the same) and frozenset equality is set equality."""
    return frozenset(rows)


@dataclass(frozen=True)
class MatchRule:
    """How one benchmark decides that a prediction's result equals the gold's. Its parts are plain
    module functions, so a rule pickles and travels to the worker processes as it is.

    prepare(sql, is_prediction, keep_distinct=False): the text actually executed (Spider's evaluator
    rewrites it first; keep_distinct is its --keep_distinct).
    rows_match(gold_rows, pred_rows, order_matters, unorder): the verdict on two executed results.
    group_key(rows): a hashable key, equal for two results exactly when voting counts them as the
    same answer (vote_predictions).
    strict_utf8: a result holding text that is not valid UTF-8 is an error (sqlite3's default text
    decoding raises on it), instead of being read with the invalid bytes dropped.
    """

    name: str
    prepare: Callable[..., str]
    rows_match: Callable[..., bool]
    group_key: Callable[[list[tuple]], Hashable]
    strict_utf8: bool = False

    def result_error(self, result: ExecResult) -> str | None:
        """Why an executed (ok) result counts as an error under this rule, or None."""
        if self.strict_utf8 and result.ok and result.lossy_text:
            return "error: Could not decode to UTF-8 (the result holds text that is not UTF-8)"
        return None


MATCH_RULES: dict[str, MatchRule] = {
    "spider": MatchRule("spider", spider_prepare, spider_rows_match, rows_key),
    "bird": MatchRule("bird", bird_prepare, bird_rows_match, bird_group_key, strict_utf8=True),
}


def match_rule(rule: str | MatchRule = "spider") -> MatchRule:
    """The benchmark's result comparison, by name ("spider" | "bird") or as it is."""
    if isinstance(rule, MatchRule):
        return rule
    if rule not in MATCH_RULES:
        raise UserError(f"unknown match rule {rule!r}: use {' or '.join(MATCH_RULES)}")
    return MATCH_RULES[rule]


# ======================================================================
# the official evaluators' files: pred.txt / gold.txt (Spider), predict_dev.json / dev_gold.sql (BIRD)

BIRD_SEPARATOR = "\t----- bird -----\t"  # predict_dev.json: "SQL<sep>db_id"


def _read_lines(path: str | os.PathLike, errors: str = "strict") -> list[str]:
    """Lines as the official evaluator's readlines() gives them: split at newlines only (str.splitlines
    would also split at form feeds and other separators inside a query)."""
    with open(path, encoding="utf-8", errors=errors) as fh:
        return [line.rstrip("\n") for line in fh]


def read_gold_file(path: str | os.PathLike) -> list[tuple[str, str]]:
    """gold.txt: one `SQL<TAB>db_id` a line. Returns (sql, db_id) pairs."""
    try:
        lines = _read_lines(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read gold file {path}: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    pairs = []
    for n, line in enumerate(lines, 1):
        parts = line.strip().split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise UserError(f"{path} line {n}: expected 'SQL<TAB>db_id', got {line[:80]!r}")
        pairs.append((parts[0].strip(), parts[1].strip()))
    return pairs


def read_pred_file(path: str | os.PathLike, expected: int | None = None) -> list[str]:
    """pred.txt: one SQL a line (text after a tab ignored, as the official evaluator does)."""
    try:
        lines = _read_lines(path, errors="replace")
    except OSError as exc:
        raise UserError(f"cannot read prediction file {path}: {exc}") from None
    if expected is not None:
        while len(lines) > expected and not lines[-1].strip():
            lines.pop()
        if len(lines) != expected:
            raise UserError(f"{path} has {len(lines)} lines but the gold file has {expected}: they must pair line by line")
    return [line.strip().split("\t")[0] for line in lines]


_LINE_BREAKERS = {"\n": "char(10)", "\r": "char(13)", "\t": "char(9)"}  # what would split a pred.txt line or field


def _literal_on_one_line(literal: str) -> str:
    """'a<newline>b' as ('a' || char(10) || 'b'): the same value, written on one line."""
    if not any(ch in literal for ch in _LINE_BREAKERS):
        return literal
    parts = re.split(r"([\n\r\t])", literal[1:-1])
    pieces = [_LINE_BREAKERS[p] if p in _LINE_BREAKERS else f"'{p}'" for p in parts if p]
    return "(" + " || ".join(pieces) + ")"


def flatten_sql(sql: str) -> str:
    """One line for pred.txt/gold.txt, with the same meaning; empty becomes a placeholder.

    Tokenized with sqlparse, so that `--` and `/* */` comments are dropped (joining lines would
    otherwise comment out the rest of the query) while string literals stay as they are: runs of
    whitespace between tokens become one space, a line break or tab inside a string literal becomes
    a char() concatenation.
    """
    from sqlparse import lexer, tokens

    parts: list[str] = []
    for ttype, value in lexer.Lexer.get_default_instance().get_tokens(sql):
        if ttype in tokens.Whitespace or (ttype in tokens.Comment and value.startswith(("--", "/*"))):
            if parts and parts[-1] != " ":
                parts.append(" ")  # SQLite reads a comment as whitespace
        elif ttype in tokens.String.Single:
            parts.append(_literal_on_one_line(value))
        else:  # a quoted identifier or a stray character with a line break in it: no way to keep it
            parts.append(" ".join(value.split()) if any(ch in value for ch in _LINE_BREAKERS) else value)
    return "".join(parts).strip() or EMPTY_PREDICTION


def write_gold_lines(path: Path, examples: list[dict]) -> None:
    """Spider's gold.txt and BIRD's dev_gold.sql share the format: `SQL<TAB>db_id` a line."""
    path.write_text("".join(f"{flatten_sql(ex['query'])}\t{ex['db_id']}\n" for ex in examples), encoding="utf-8")


def write_bird_predictions(path: Path, preds: list[str], db_ids: list[str]) -> None:
    """predict_dev.json: {"0": "SQL\\t----- bird -----\\tdb_id", ...} in question order (BIRD pairs by order)."""
    entries = {str(i): f"{flatten_sql(sql)}{BIRD_SEPARATOR}{db}" for i, (sql, db) in enumerate(zip(preds, db_ids))}
    path.write_text(json.dumps(entries, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")


def write_bird_files(out: Path, examples: list[dict], preds: list[str]) -> tuple[Path, Path]:
    """predict_dev.json, dev_gold.sql and dev_difficulty.jsonl (what BIRD's evaluator reads with
    --diff_json_path: one {"difficulty": ...} a line), all in question order."""
    pred_path, gold_path = out / "predict_dev.json", out / "dev_gold.sql"
    write_bird_predictions(pred_path, preds, [ex["db_id"] for ex in examples])
    write_gold_lines(gold_path, examples)
    (out / "dev_difficulty.jsonl").write_text("".join(json.dumps({"difficulty": ex["difficulty"]}) + "\n" for ex in examples))
    return pred_path, gold_path


def read_bird_predictions(path: str | os.PathLike, expected: int | None = None) -> list[str]:
    """Predictions from BIRD's JSON (read as BIRD does: entries in file order, SQL before the separator;
    a non-string entry is an empty prediction), or from a text file with one SQL a line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise UserError(f"cannot read prediction file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        preds = []
        for value in data.values():
            if not isinstance(value, str):
                preds.append(" ")  # as BIRD: a space, which never runs as a query
            else:  # as BIRD's package_sqls: exactly one separator, else the whole string is the SQL
                parts = value.split(BIRD_SEPARATOR)
                preds.append(parts[0] if len(parts) == 2 else value.strip())
        if expected is not None and len(preds) != expected:
            raise UserError(f"{path} has {len(preds)} predictions but the gold has {expected}: they pair in order")
        return preds
    return read_pred_file(path, expected)


def read_bird_gold(path: str | os.PathLike) -> tuple[list[tuple[str, str]], list[str]]:
    """(SQL, db_id) pairs and difficulties from BIRD's question file (dev.json, mini_dev_sqlite.json),
    or from a gold file with one `SQL<TAB>db_id` a line (difficulty then 'unknown')."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read gold file {path}: {exc}") from None
    if text.lstrip()[:1] != "[":
        golds = read_gold_file(path)
        return golds, ["unknown"] * len(golds)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    golds, difficulties = [], []
    for j, ex in enumerate(data if isinstance(data, list) else []):
        if not (isinstance(ex, dict) and isinstance(ex.get("SQL"), str) and isinstance(ex.get("db_id"), str)):
            raise UserError(f"{path} question {j} lacks a string SQL and db_id")
        golds.append((flatten_sql(ex["SQL"]), ex["db_id"]))
        difficulties.append(ex["difficulty"] if isinstance(ex.get("difficulty"), str) else "unknown")
    if not golds:
        raise UserError(f"{path} holds no BIRD questions (a JSON list with SQL and db_id)")
    return golds, difficulties


# ======================================================================
# scoring and voting, in worker processes


def db_files(db_dir: str | os.PathLike, db_id: str) -> list[str]:
    """The database files of `db_id`, as the official evaluator finds them: every file with '.sqlite'
    in its name in <db_dir>/<db_id>/ (one in Spider's layout, several in the test-suite layout); without
    that folder, <db_dir>/<db_id>.sqlite (a --data_dir folder's other layout)."""
    folder = os.path.join(os.fspath(db_dir), db_id)
    if not os.path.isdir(folder):
        flat = folder + ".sqlite"
        return [flat] if os.path.isfile(flat) else []
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if ".sqlite" in name)


def check_db_dir(db_dir: str | os.PathLike, db_ids: Iterable[str]) -> None:
    """One line naming the db_ids with no database file under db_dir."""
    db_dir = os.fspath(db_dir)
    missing = sorted({db for db in db_ids if not db_files(db_dir, db)})
    if missing:
        raise UserError(f"no database for {', '.join(missing[:5])} under {db_dir} (expected {db_dir}/<db_id>/<db_id>.sqlite)")


def _execute_cached(cache: dict, db_file: str, sql: str, limit: float) -> ExecResult:
    """execute_sql through a cache shared by gold and predicted queries, which run under different
    limits: a result is reused only when it is what a run under `limit` would give."""
    hit = cache.get((db_file, sql))
    if hit is not None:
        if hit.kind == "timeout" and hit.limit >= limit:
            return hit  # it timed out with at least as much time
        if hit.kind not in ("ok", "timeout") or (hit.ok and hit.seconds <= limit):
            return hit  # errors are deterministic; rows that came within the limit would come again
    result = execute_sql(db_file, sql, limit)
    cache[(db_file, sql)] = result
    return result


class _Judge:
    """One worker's scorer: the official verdict on a prediction, with results cached per (database
    file, executed SQL) for gold and predictions alike, and database files per db_id."""

    def __init__(self, db_dir: str, timeout_s: float, keep_distinct: bool, rule: MatchRule) -> None:
        self.db_dir, self.timeout_s, self.keep_distinct, self.rule = db_dir, timeout_s, keep_distinct, rule
        self.results: dict[tuple[str, str], ExecResult] = {}
        self.files: dict[str, list[str]] = {}
        self.memo: dict[int, list[tuple]] = {}  # unordered rows per result list (kept alive by self.results)

    def unorder(self, rows: list[tuple]) -> list[tuple]:
        if id(rows) not in self.memo:
            self.memo[id(rows)] = unordered_rows(rows)
        return self.memo[id(rows)]

    def db_files(self, db_id: str) -> list[str]:
        if db_id not in self.files:
            self.files[db_id] = db_files(self.db_dir, db_id)
        return self.files[db_id]

    def verdict(self, pred: str, gold_sql: str, db_id: str) -> tuple[str, str | None]:
        """(outcome, error) of one prediction on every database file of its folder, as the official
        evaluator of the benchmark judges it: the first file where the gold and the prediction differ
        decides (no later file runs)."""
        if not pred.strip() or pred.strip() == EMPTY_PREDICTION:
            return "empty", "empty prediction"
        rule = self.rule
        gold_sql = rule.prepare(gold_sql, False, self.keep_distinct)
        ordered = "order by" in gold_sql.lower()
        pred = rule.prepare(pred, True, self.keep_distinct)
        for db_file in self.db_files(db_id):
            gold = _execute_cached(self.results, db_file, gold_sql, max(self.timeout_s, GOLD_TIMEOUT_S))
            if not gold.ok:
                return "gold_error", f"gold query fails on {os.path.basename(db_file)}: {gold.error}"
            if rule.result_error(gold):  # BIRD's evaluator scores such a question 0, whatever is predicted
                return "wrong", f"gold result: {rule.result_error(gold)}"
            result = _execute_cached(self.results, db_file, pred, self.timeout_s)
            if not result.ok:
                return "invalid", f"{result.kind}: {result.error}"[:200]
            if rule.result_error(result):
                return "invalid", rule.result_error(result)[:200]
            if not rule.rows_match(gold.rows, result.rows, ordered, unorder=self.unorder):
                return "wrong", None
        return "match", None

    def vote_key(self, pred: str, db_id: str) -> Hashable | None:
        """The group a candidate votes for: its result's key under the rule, on the question's own
        database (the test suite's original); None when it does not run."""
        files = self.db_files(db_id)
        original = os.path.join(self.db_dir, db_id, f"{db_id}.sqlite")
        result = _execute_cached(self.results, original if original in files else files[0],
                                 self.rule.prepare(pred, True, self.keep_distinct), self.timeout_s)
        if not result.ok or self.rule.result_error(result):
            return None
        return self.rule.group_key(result.rows)


def _score_chunk(items: list[tuple], args: tuple, emit: Callable[[dict], Any]) -> None:
    """Score (index, pred, gold_sql, db_id) items, a record per item; runs in a WorkerPool process.
    args = (db_dir, timeout_s, keep_distinct, MatchRule)."""
    judge = _Judge(*args)
    for index, pred, gold_sql, db_id in items:
        outcome, error = judge.verdict(pred, gold_sql, db_id)
        emit({"index": index, "db_id": db_id, "exec_match": outcome == "match", "hardness": spider_hardness(gold_sql),
              "outcome": outcome, "error": error})


def _candidate_chunk(items: list[tuple], args: tuple, emit: Callable[[dict], Any]) -> None:
    """Run (index, candidate, gold_sql, db_id) items for voting: each candidate's group key and its own
    verdict; a WorkerPool process. args as _score_chunk's."""
    judge = _Judge(*args)
    for index, pred, gold_sql, db_id in items:
        outcome, error = judge.verdict(pred, gold_sql, db_id)
        emit({"index": index, "sql": pred, "key": judge.vote_key(pred, db_id) if outcome != "gold_error" else None,
              "outcome": outcome, "error": error})


def _failed_record(item: tuple, error: str) -> dict:
    """The record of an item whose worker was stopped at the hard limit (or died): invalid, with why."""
    return {"index": item[0], "sql": item[1], "db_id": item[3], "exec_match": False,
            "hardness": spider_hardness(item[2]), "outcome": "invalid", "error": error[:200], "key": None}


def _run_items(worker: Callable, items: list[tuple], db_dir: str, timeout_s: float, workers: int,
               keep_distinct: bool, rule: MatchRule, keep_gold_errors: bool = False) -> list[dict]:
    """Run items (index, sql, gold_sql, db_id) through `worker` in a WorkerPool, grouped by database;
    records in input order.

    Always in worker processes, even one: a prediction stalled inside one SQLite call is stopped only
    by killing its process. An item's hard limit covers its gold (first run) and twice its own limit
    on every database file of its folder.
    """
    # Group by database so each worker reuses its connections and cached gold results.
    order = sorted(range(len(items)), key=lambda n: (items[n][3], items[n][0]))
    workers = max(1, min(workers, len(items) // 200 + 1, len(items)))  # a process is worth it for a few hundred queries
    size = max(1, -(-len(items) // workers))
    chunks = [[items[n] for n in order[k:k + size]] for k in range(0, len(order), size)]  # a database stays together
    n_files = {db: len(db_files(db_dir, db)) for db in {item[3] for item in items}}

    def limit(item: tuple) -> float:
        return n_files[item[3]] * (max(timeout_s, GOLD_TIMEOUT_S) + 2 * timeout_s) + 2.0

    import multiprocessing

    # fork is fast and safe when no threaded library (torch) is loaded; otherwise spawn
    method = "fork" if "torch" not in sys.modules and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = WorkerPool(worker, workers, method)
    try:
        done = [r for chunk in pool.run(chunks, (db_dir, timeout_s, keep_distinct, rule), limit, _failed_record)
                for r in chunk]
    finally:
        pool.close()
    records: list[dict] = [{} for _ in items]
    for n, record in zip(order, done):  # the chunks hold the items in `order`, a result per item
        records[n] = record
    failed_gold = [r for r in records if r["outcome"] == "gold_error"]
    if failed_gold and not keep_gold_errors:
        first = failed_gold[0]
        raise UserError(f"{len({r['index'] for r in failed_gold})} gold queries fail to execute; first: line "
                        f"{first['index'] + 1} ({first['db_id']}): {first['error']}")
    return records


def score_predictions(preds: list[str], golds: list[tuple[str, str]], db_dir: str | os.PathLike,
                      timeout_s: float = 2.0, workers: int = 2, keep_distinct: bool = False,
                      rule: str = "spider", keep_gold_errors: bool = False) -> list[dict]:
    """Execution match of each prediction against its gold, with the official evaluator's verdicts
    (`rule`: the benchmark's match rule, "spider" or "bird"; see MATCH_RULES).

    Returns one record per pair, in input order: index, db_id, exec_match, hardness, outcome, error.
    Every `.sqlite` file of `<db_dir>/<db_id>/` is used (a test suite when there are several: right
    only when right on all of them). keep_distinct: the official --keep_distinct. The one intended
    difference from the official evaluator: a prediction over `timeout_s` is wrong (the official one hangs).
    Workers are processes, so the limit is hard: a prediction stalled inside one SQLite call is stopped
    by killing its worker (see sandbox.WorkerPool). A gold query that fails is a UserError, unless
    `keep_gold_errors`: then its record says outcome "gold_error" (a question file's check of its golds).
    """
    if len(preds) != len(golds):
        raise UserError(f"{len(preds)} predictions but {len(golds)} gold queries: they must pair one to one")
    db_dir = os.fspath(db_dir)
    check_db_dir(db_dir, (db for _, db in golds))
    items = [(i, p, g, db) for i, (p, (g, db)) in enumerate(zip(preds, golds))]
    records = _run_items(_score_chunk, items, db_dir, timeout_s, workers, keep_distinct, match_rule(rule),
                         keep_gold_errors)
    for record in records:
        record.pop("sql", None), record.pop("key", None)  # a failed item's record carries them
    return records


def vote_predictions(candidates: list[list[str]], golds: list[tuple[str, str]], db_dir: str | os.PathLike,
                     timeout_s: float = 2.0, workers: int = 2, keep_distinct: bool = False,
                     rule: str = "spider") -> list[dict]:
    """Self-consistency: for each question, vote among its candidates and score the chosen one like any
    prediction, both under the benchmark's match `rule`.

    The voting rule (docs/evaluation.md, "Self-consistency"): each candidate runs as the scorer runs a
    prediction (same rewrites, sandbox and hard time limit) on <db_dir>/<db_id>/<db_id>.sqlite; empty,
    failing or stalled candidates do not vote; candidates with equal results form a group (equal under
    the rule's group_key: Spider, equal row multisets with values as SQLite returned them; BIRD, equal
    row sets under Python equality, so 1 and 1.0 agree); the largest group wins, a tie goes to the
    group holding the earliest candidate; the chosen prediction is that group's earliest candidate, or
    candidate 0 when none ran. Identical SQL texts of a question run once, each as its own item of the
    worker pool, so one that stalls costs only itself.

    candidates[i] lists question i's candidates in order (c0 first). One record per question: the keys
    of score_predictions (exec_match and outcome are the chosen candidate's) plus chosen (index of the
    chosen candidate), votes (size of the winning group), executed (candidates that ran), any_match
    (some candidate matches: pass@k), candidate_matches and candidate_outcomes (each candidate's own
    verdict) and groups (per candidate, the index of the earliest candidate with the same result, or
    None when it did not run).
    """
    if len(candidates) != len(golds):
        raise UserError(f"{len(candidates)} candidate lists but {len(golds)} gold queries: they must pair one to one")
    if any(not c for c in candidates):
        raise UserError("every question needs at least one candidate")
    db_dir = os.fspath(db_dir)
    check_db_dir(db_dir, (db for _, db in golds))
    items = [(i, sql, *golds[i]) for i, cands in enumerate(candidates)
             for sql in dict.fromkeys(cands) if sql.strip() and sql.strip() != EMPTY_PREDICTION]
    ran = {(r["index"], r["sql"]): r for r in _run_items(_candidate_chunk, items, db_dir, timeout_s, workers,
                                                         keep_distinct, match_rule(rule))}
    records = []
    for i, (cands, (gold_sql, db_id)) in enumerate(zip(candidates, golds)):
        verdicts = [ran.get((i, c), {"outcome": "empty", "error": "empty prediction", "key": None}) for c in cands]
        groups: dict[Hashable, list[int]] = {}  # dicts keep insertion order: groups come by their earliest candidate
        group_of: list[int | None] = []
        for k, verdict in enumerate(verdicts):
            if verdict["key"] is None:
                group_of.append(None)
                continue
            members = groups.setdefault(verdict["key"], [])
            members.append(k)
            group_of.append(members[0])
        winner = max(groups.values(), key=len, default=[0])  # max() keeps the first of equals
        chosen = verdicts[winner[0]]
        matches = [v["outcome"] == "match" for v in verdicts]
        records.append({"index": i, "db_id": db_id, "exec_match": chosen["outcome"] == "match",
                        "hardness": spider_hardness(gold_sql), "outcome": chosen["outcome"], "error": chosen["error"],
                        "chosen": winner[0], "votes": len(winner) if groups else 0,
                        "executed": sum(g is not None for g in group_of), "any_match": any(matches),
                        "candidate_matches": matches, "candidate_outcomes": [v["outcome"] for v in verdicts],
                        "groups": group_of})
    return records


# ======================================================================
# score tables


def summarize_by(records: list[dict], key: str, levels: tuple[str, ...], value: str = "exec_match") -> dict:
    """Accuracy overall ('all') and per level of records[key] (hardness, difficulty), with counts, of the
    boolean records[value] (exec_match, or any_match for pass@k, ...)."""
    summary = {}
    for level in levels + ("all",):
        rows = [r for r in records if level == "all" or r.get(key) == level]
        hits = sum(bool(r[value]) for r in rows)
        summary[level] = {"count": len(rows), "exec_match": hits, "ex": hits / len(rows) if rows else 0.0}
    return summary


def format_table(summary: dict, levels: tuple[str, ...], extra_rows: Iterable[tuple[str, dict]] = (), *,
                 names: tuple[str, ...] | None = None, title: str = "execution", percent: bool = False,
                 width: int = 12) -> str:
    """An official evaluator's table: a column per level plus all, a count row, an accuracy row, and
    extra_rows (label, summary) below it (pass@k, greedy, each candidate file, test suites...).
    Spider's shape: fractions, 12 wide. BIRD's (mini_dev `print_data`): percent, 20 wide, 'total'."""
    columns = levels + ("all",)
    names = names or columns

    def row(label: str, values: Iterable[Any], spec: str = "") -> str:
        return f"{label[:19]:<20}" + "".join(f"{v:<{width}{spec}}" for v in values)

    def accuracy(label: str, rows: dict) -> str:
        return row(label, (100 * rows[c]["ex"] if percent else rows[c]["ex"] for c in columns), ".2f" if percent else ".3f")

    lines = [row("", names), row("count", (summary[c]["count"] for c in columns)), accuracy(title, summary)]
    lines += [accuracy(label, rows) for label, rows in extra_rows]
    return "\n".join(lines)
