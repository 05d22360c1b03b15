"""What differs between the benchmarks sql-rlvr trains and evaluates on, in one place.

A `Benchmark` describes one benchmark: how its release folder is opened (file layout, field names,
evaluation splits), the match rule that decides "same result" (for the metric, voting's groups and
GRPO's +5 alike), where the difficulty labels come from (and the strata of seeded samples), the file
formats of its official evaluator, and the options only that evaluator has (Spider's --ts_db_dir and
--keep_distinct, refused with BIRD). The scripts reach it through `utils.open_benchmark(cfg)` /
`utils.benchmark_spec(cfg)`; utils' reward, scorer and voting take the rule by name
(`rule="spider" | "bird"`) and look it up here.

    spider   Spider's release (utils.Spider); test-suite-sql-eval's execution match (DISTINCT
             removed, `value` rewritten, column permutations, order when the gold says ORDER BY);
             hardness computed from the gold SQL; pred.txt / gold.txt; eval splits dev, test; voting
             groups equal row multisets (1 and 1.0 apart); test suites and --keep_distinct.
    bird     BIRD's release (train/, dev/, mini_dev_sqlite.json); BIRD's rule, exactly as
             bird-bench/mini_dev evaluation/evaluation_ex.py: set(pred) == set(gold) on the raw
             rows, with sqlite3's strict UTF-8 text; difficulty from the data; predict_dev.json
             and dev_gold.sql; eval splits dev, mini_dev; voting groups equal row sets (1 == 1.0).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import utils
from config import Config

# ======================================================================
# match rules


@dataclass(frozen=True)
class MatchRule:
    """How one benchmark decides that a prediction's result equals the gold's.

    prepare(sql, is_prediction, keep_distinct=False): the text actually executed (Spider's evaluator
    rewrites it first; keep_distinct is its --keep_distinct).
    rows_match(gold_rows, pred_rows, order_matters, unorder): the verdict on two executed results.
    group_key(rows): a hashable key, equal for two results exactly when voting counts them as the
    same answer (utils.vote_predictions).
    strict_utf8: a result holding text that is not valid UTF-8 is an error (sqlite3's default text
    decoding raises on it), instead of being read with the invalid bytes dropped.
    """

    name: str
    prepare: Callable[[str, bool], str]
    rows_match: Callable[..., bool]
    group_key: Callable[[list[tuple]], Any]
    strict_utf8: bool = False

    def result_error(self, result: "utils.ExecResult") -> str | None:
        """Why an executed (ok) result counts as an error under this rule, or None."""
        if self.strict_utf8 and result.ok and result.lossy_text:
            return "error: Could not decode to UTF-8 (the result holds text that is not UTF-8)"
        return None


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


def _spider_rows_match(gold: list[tuple], pred: list[tuple], order_matters: bool, unorder: Any = None) -> bool:
    return utils.results_match(gold, pred, order_matters, unorder=unorder)


MATCH_RULES: dict[str, MatchRule] = {
    "spider": MatchRule("spider", lambda sql, is_prediction, keep_distinct=False: utils.official_normalize(
                            sql, is_prediction=is_prediction, keep_distinct=keep_distinct),
                        _spider_rows_match, utils._rows_key),
    # BIRD executes both queries as written: no DISTINCT removal, no `value` rewrite.
    "bird": MatchRule("bird", lambda sql, is_prediction, keep_distinct=False: sql, bird_rows_match, bird_group_key,
                      strict_utf8=True),
}


# ======================================================================
# BIRD's release layout


class BirdDataError(utils.UserError):
    pass


BIRD_HOWTO = (
    "get BIRD from https://bird-bench.github.io (train.zip and dev.zip; mini-dev from github.com/bird-bench/mini_dev), "
    "unzip them and point --bird_dir (or BIRD_DIR in .env) at the folder holding train/ and dev/"
)
BIRD_DIFFICULTIES = ("simple", "moderate", "challenging")
# Where each split's files lie under --bird_dir: (questions, tables file, database folder).
BIRD_SPLITS = {
    "train": ("train/train.json", "train/train_tables.json", "train/train_databases"),
    "dev": ("dev/dev.json", "dev/dev_tables.json", "dev/dev_databases"),
    "mini_dev": ("mini_dev_sqlite.json", "dev/dev_tables.json", "dev/dev_databases"),
}
# mini-dev's question file is found at the top of --bird_dir or beside dev.json.
MINI_DEV_PLACES = ("mini_dev_sqlite.json", "dev/mini_dev_sqlite.json")
BIRD_SEPARATOR = "\t----- bird -----\t"  # predict_dev.json: "SQL<sep>db_id"


def _read_bird_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as fh:  # a byte-order mark is tolerated
            return json.load(fh)
    except FileNotFoundError:
        raise BirdDataError(f"missing {path}: {BIRD_HOWTO}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BirdDataError(f"{path} is not valid JSON ({exc})") from None


def decode_csv_bytes(raw: bytes) -> str:
    """BIRD's description CSVs come in several encodings: UTF-8 (with or without a BOM), and Windows-1252
    or Latin-1 for many. Try them in that order; Latin-1 decodes any byte string."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def read_column_descriptions(db_folder: Path) -> dict[tuple[str, str], str]:
    """{(table, column) lowercased: "description (values)"} from `database_description/<table>.csv`.

    Columns: original_column_name, column_name, column_description, data_format, value_description.
    A missing folder, an unreadable file or a row without a column name is skipped: descriptions
    are an aid to the prompt, never a reason to stop.
    """
    notes: dict[tuple[str, str], str] = {}
    folder = db_folder / "database_description"
    if not folder.is_dir():
        return notes
    for path in sorted(folder.glob("*.csv")):
        try:
            text = decode_csv_bytes(path.read_bytes())
        except OSError:
            continue
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
        except csv.Error:
            continue
        for row in rows:
            row = {(k or "").strip().lower(): " ".join((v or "").split()) for k, v in row.items() if isinstance(v, str)}
            column = row.get("original_column_name", "")
            if not column:
                continue
            description = row.get("column_description", "")
            values = row.get("value_description", "")
            parts = [p for p in (description, f"values: {values}" if values else "") if p]
            if parts:
                notes[(path.stem.strip().lower(), column.lower())] = "; ".join(parts)
    return notes


@dataclass
class Bird:
    """A BIRD release folder, read through the same interface as utils.Spider (examples, schema, db_path).

    Examples keep BIRD's fields and get `query` (= `SQL`, the key the scripts read), `evidence`
    (default "") and `difficulty` (from the data; "unknown" when absent, as in train.json).
    """

    root: Path
    column_descriptions: bool = False
    tables: dict[str, dict] = field(default_factory=dict)
    _db_dirs: dict[str, Path] = field(default_factory=dict, repr=False)
    _schema_cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike, column_descriptions: bool = False) -> "Bird":
        path = Path(root).expanduser()
        if not path.is_dir():
            raise BirdDataError(f"BIRD folder {path} does not exist: {BIRD_HOWTO}")
        return cls(root=path, column_descriptions=column_descriptions)

    def split_files(self, split: str) -> tuple[Path, Path, Path]:
        if split not in BIRD_SPLITS:
            raise BirdDataError(f"unknown BIRD split {split!r}: use {', '.join(BIRD_SPLITS)}")
        questions, tables, databases = (self.root / p for p in BIRD_SPLITS[split])
        if split == "mini_dev":
            found = [self.root / p for p in MINI_DEV_PLACES if (self.root / p).exists()]
            if not found:
                raise BirdDataError(f"missing mini_dev_sqlite.json in {self.root} or {self.root / 'dev'}: get it from "
                                    "github.com/bird-bench/mini_dev (minidev.zip, MINIDEV/) and put it there")
            questions = found[0]
        return questions, tables, databases

    def _load_tables(self, tables_path: Path, databases: Path) -> None:
        entries = _read_bird_json(tables_path)
        if not isinstance(entries, list) or not all(isinstance(t, dict) and "db_id" in t for t in entries):
            raise BirdDataError(f"{tables_path} is not a list of schemas with db_id")
        utils.ensure_databases_built(databases)  # the shipped mini-BIRD keeps its databases as .sql text
        for entry in entries:
            self.tables[entry["db_id"]] = entry
            self._db_dirs[entry["db_id"]] = databases

    def examples(self, split: str, use_train_others: bool = True) -> list[dict]:
        """Questions of `split` (train, dev or mini_dev). `use_train_others` is Spider's and is ignored."""
        questions, tables_path, databases = self.split_files(split)
        self._load_tables(tables_path, databases)
        data = _read_bird_json(questions)
        if not isinstance(data, list):
            raise BirdDataError(f"{questions} should hold a list of questions")
        examples = []
        for j, ex in enumerate(data):
            if not (isinstance(ex, dict) and all(isinstance(ex.get(k), str) for k in ("db_id", "question", "SQL"))):
                raise BirdDataError(f"{questions} question {j} lacks a string db_id, question or SQL")
            evidence = ex.get("evidence")
            examples.append({**ex, "query": ex["SQL"], "evidence": evidence if isinstance(evidence, str) else "",
                             "difficulty": ex.get("difficulty") if isinstance(ex.get("difficulty"), str) else "unknown"})
        missing = sorted({ex["db_id"] for ex in examples} - set(self.tables))
        if missing:
            raise BirdDataError(f"{split} questions use databases absent from {tables_path}: {', '.join(missing[:5])}")
        return examples

    def db_dir(self, split: str) -> Path:
        return self.split_files(split)[2]

    def db_path(self, db_id: str) -> Path:
        if db_id not in self._db_dirs:
            raise BirdDataError(f"database {db_id!r} is not in a loaded BIRD split under {self.root}")
        return self._db_dirs[db_id] / db_id / f"{db_id}.sqlite"

    def schema(self, db_id: str, sample_values: int = 0) -> str:
        """CREATE TABLE text from the database (keys also from the tables file), with each column's
        description from database_description/*.csv when `column_descriptions` is on."""
        key = (db_id, sample_values)
        if key not in self._schema_cache:
            path = self.db_path(db_id)
            if not path.exists():
                raise BirdDataError(f"missing {path}: {BIRD_HOWTO}")
            notes = read_column_descriptions(path.parent) if self.column_descriptions else None
            self._schema_cache[key] = utils.schema_from_sqlite(path, sample_values, self.tables.get(db_id),
                                                               column_comments=notes)
        return self._schema_cache[key]


# ======================================================================
# BIRD's files: predict_dev.json, dev_gold.sql, the question file


def write_bird_predictions(path: Path, preds: list[str], db_ids: list[str]) -> None:
    """predict_dev.json: {"0": "SQL\\t----- bird -----\\tdb_id", ...} in question order (BIRD pairs by order)."""
    entries = {str(i): f"{utils.flatten_sql(sql)}{BIRD_SEPARATOR}{db}" for i, (sql, db) in enumerate(zip(preds, db_ids))}
    path.write_text(json.dumps(entries, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")


def read_bird_predictions(path: str | os.PathLike, expected: int | None = None) -> list[str]:
    """Predictions from BIRD's JSON (read as BIRD does: entries in file order, SQL before the separator;
    a non-string entry is an empty prediction), or from a text file with one SQL a line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise utils.UserError(f"cannot read prediction file {path}: {exc}") from None
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
            raise utils.UserError(f"{path} has {len(preds)} predictions but the gold has {expected}: they pair in order")
        return preds
    return utils.read_pred_file(path, expected)


def read_bird_gold(path: str | os.PathLike) -> tuple[list[tuple[str, str]], list[str]]:
    """(SQL, db_id) pairs and difficulties from BIRD's question file (dev.json, mini_dev_sqlite.json),
    or from a gold file with one `SQL<TAB>db_id` a line (difficulty then 'unknown')."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise utils.UserError(f"cannot read gold file {path}: {exc}") from None
    if text.lstrip()[:1] != "[":
        golds = utils.read_gold_file(path)
        return golds, ["unknown"] * len(golds)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise utils.UserError(f"{path} is not valid JSON ({exc})") from None
    golds, difficulties = [], []
    for j, ex in enumerate(data if isinstance(data, list) else []):
        if not (isinstance(ex, dict) and isinstance(ex.get("SQL"), str) and isinstance(ex.get("db_id"), str)):
            raise utils.UserError(f"{path} question {j} lacks a string SQL and db_id")
        golds.append((utils.flatten_sql(ex["SQL"]), ex["db_id"]))
        difficulties.append(ex["difficulty"] if isinstance(ex.get("difficulty"), str) else "unknown")
    if not golds:
        raise utils.UserError(f"{path} holds no BIRD questions (a JSON list with SQL and db_id)")
    return golds, difficulties


# ======================================================================
# the benchmark descriptions


def summarize_by(records: list[dict], key: str, levels: tuple[str, ...], value: str = "exec_match") -> dict:
    """Accuracy overall ('all') and per level of records[key], with counts, of the boolean
    records[value] (exec_match, or any_match for pass@k, ...)."""
    summary = {}
    for level in levels + ("all",):
        rows = [r for r in records if level == "all" or r.get(key) == level]
        hits = sum(bool(r[value]) for r in rows)
        summary[level] = {"count": len(rows), "exec_match": hits, "ex": hits / len(rows) if rows else 0.0}
    return summary


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's differences, read by the scripts (see the module docstring)."""

    name: str
    title: str  # as the benchmark spells itself in messages
    # (cfg, split) -> a dataset with root, examples(split), schema(db_id, k), db_path(db_id); `split` is
    # the evaluation split it is opened for (training reads "train" from any).
    open: Callable[[Config, str], Any]
    eval_splits: tuple[str, ...]  # what --eval_split may name
    rule: str  # key of MATCH_RULES: the metric's, voting's and GRPO's +5 verdict
    label_key: str  # the record field holding the difficulty level; metrics.json has by_<label_key>
    levels: tuple[str, ...]
    eval_strata: tuple[str, ...]  # utils.stratified_subset keys of --max_eval_examples / --eval_subset_size samples
    difficulty_from_data: bool  # BIRD's questions carry it; Spider's hardness is computed from the gold SQL
    read_predictions: Callable[..., list[str]]  # (path, expected count) -> SQL strings
    read_gold: Callable[[str | os.PathLike], tuple[list[tuple[str, str]], list[str] | None]]  # -> (SQL, db_id), levels
    summarize: Callable[..., dict]  # (records, key="exec_match") -> accuracy per level and "all"
    format_table: Callable[..., str]  # (summary, extra_rows=()) -> the official evaluator's table shape
    db_dir: Callable[[Any, str], Path]  # (dataset, split) -> the folder of <db_id>/<db_id>.sqlite
    comparator: Callable[[Config], str]  # what "execution match" means in metrics.json
    # The official evaluator's files: None = evaluate.py's pred.txt / gold.txt and its Spider command.
    write_eval_files: Callable[[Path, list[dict], list[str]], tuple[Path, Path]] | None = None  # (out, examples, preds)
    official_command: Callable[..., str] | None = None  # (pred, gold, db_dir, out) -> a shell command
    # Options of this benchmark's official evaluator alone (config field -> what it is); with any other
    # benchmark, setting one is refused (check_options) rather than silently ignored.
    own_options: tuple[tuple[str, str], ...] = ()

    @property
    def metrics_key(self) -> str:
        """metrics.json's table of EX per level: by_hardness (Spider) or by_difficulty (BIRD)."""
        return f"by_{self.label_key}"

    def check_eval_split(self, split: str) -> None:
        """One line when --eval_split names no split of this benchmark (and which benchmark has it)."""
        if split in self.eval_splits:
            return
        owner = next((b for b in BENCHMARKS.values() if split in b.eval_splits), None)
        hint = f" ({split} is {owner.title}'s: add --benchmark {owner.name})" if owner else ""
        raise utils.UserError(f"--eval_split {split!r} is not a {self.title} split: use one of "
                              f"{', '.join(self.eval_splits)}{hint}")

    def check_options(self, cfg: Config) -> None:
        """One line when cfg sets an option that only another benchmark's evaluator has."""
        defaults = Config()
        for other in BENCHMARKS.values():
            for option, what in other.own_options:
                if other is not self and getattr(cfg, option) != getattr(defaults, option):
                    raise utils.UserError(f"--{option} is {other.title}'s ({what}): {self.title} has no such thing; "
                                          f"drop it, or use --benchmark {other.name}")

    def label(self, records: list[dict], labels: list[str] | None) -> None:
        """Give each record its difficulty: from the data (BIRD) or as the scorer computed it (Spider)."""
        if labels is None:
            return
        for record, level in zip(records, labels):
            record.pop("hardness", None)
            record[self.label_key] = level

    def label_from(self, records: list[dict], examples: list[dict]) -> None:
        """Difficulty from the questions themselves, where the benchmark has it."""
        if self.difficulty_from_data:
            self.label(records, [ex.get(self.label_key, "unknown") for ex in examples])


def format_bird_table(summary: dict, extra_rows: Any = ()) -> str:
    """BIRD's own table shape (mini_dev `print_data`): simple / moderate / challenging / total, EX in percent.
    extra_rows: (label, summary) rows printed below EX (greedy, pass@k, each candidate file...)."""
    levels = BIRD_DIFFICULTIES + ("all",)
    names = BIRD_DIFFICULTIES + ("total",)
    lines = [f"{'':<20}" + "".join(f"{n:<20}" for n in names),
             f"{'count':<20}" + "".join(f"{summary[lv]['count']:<20}" for lv in levels),
             f"{'EX':<20}" + "".join(f"{100 * summary[lv]['ex']:<20.2f}" for lv in levels)]
    for label, rows in extra_rows:
        lines.append(f"{label[:19]:<20}" + "".join(f"{100 * rows[lv]['ex']:<20.2f}" for lv in levels))
    return "\n".join(lines)


def _gold_lines(path: Path, examples: list[dict]) -> None:
    # Spider's gold.txt and BIRD's dev_gold.sql share the format: `SQL<TAB>db_id` a line.
    path.write_text("".join(f"{utils.flatten_sql(ex['query'])}\t{ex['db_id']}\n" for ex in examples), encoding="utf-8")


def _write_bird_files(out: Path, examples: list[dict], preds: list[str]) -> tuple[Path, Path]:
    """predict_dev.json, dev_gold.sql and dev_difficulty.jsonl (what BIRD's evaluator reads with
    --diff_json_path: one {"difficulty": ...} a line), all in question order."""
    pred_path, gold_path = out / "predict_dev.json", out / "dev_gold.sql"
    write_bird_predictions(pred_path, preds, [ex["db_id"] for ex in examples])
    _gold_lines(gold_path, examples)
    (out / "dev_difficulty.jsonl").write_text("".join(json.dumps({"difficulty": ex["difficulty"]}) + "\n" for ex in examples))
    return pred_path, gold_path


def _spider_gold(path: str | os.PathLike) -> tuple[list[tuple[str, str]], None]:
    return utils.read_gold_file(path), None


def _bird_command(pred: Path, gold: Path, db_dir: Path, out: Path) -> str:
    # BIRD's evaluator joins paths by string concatenation (db_root_path + db_id): the folder needs its slash.
    return (f"python3 -u evaluation_ex.py --db_root_path {db_dir}/ --predicted_sql_path {pred} "
            f"--ground_truth_path {gold} --diff_json_path {out / 'dev_difficulty.jsonl'} --num_cpus 4 "
            f"--meta_time_out 30.0 --sql_dialect SQLite --output_log_path {out / 'bird_official.txt'}"
            "   # in evaluation/ of a checkout of github.com/bird-bench/mini_dev (it imports func_timeout, psycopg2, pymysql)")


BENCHMARKS: dict[str, Benchmark] = {
    "spider": Benchmark(
        name="spider", title="Spider", open=lambda cfg, split="dev": utils.Spider.open(cfg.spider_dir, split),
        eval_splits=tuple(utils.SPIDER_EVAL_SPLITS), rule="spider", label_key="hardness",
        levels=utils.HARDNESS_LEVELS, eval_strata=("db_id", utils.SUBSET_HARDNESS), difficulty_from_data=False,
        read_predictions=utils.read_pred_file, read_gold=_spider_gold, summarize=utils.summarize_scores,
        format_table=utils.format_score_table, db_dir=lambda dataset, split: dataset.database_dir,
        comparator=lambda cfg: "sql-rlvr execution match = test-suite-sql-eval exec rules, "
                               + ("--keep_distinct" if cfg.keep_distinct else "default flags"),
        own_options=(("ts_db_dir", "test-suite-sql-eval's distilled test-suite databases"),
                     ("keep_distinct", "test-suite-sql-eval's flag; BIRD's rule never removes DISTINCT"))),
    "bird": Benchmark(
        name="bird", title="BIRD",
        open=lambda cfg, split="dev": Bird.open(cfg.bird_dir, cfg.bird_column_descriptions),
        eval_splits=("dev", "mini_dev"), rule="bird",
        label_key="difficulty", levels=BIRD_DIFFICULTIES, eval_strata=("db_id", "difficulty"), difficulty_from_data=True,
        read_predictions=read_bird_predictions, read_gold=read_bird_gold,
        summarize=lambda records, key="exec_match": summarize_by(records, "difficulty", BIRD_DIFFICULTIES, key),
        format_table=format_bird_table, db_dir=lambda dataset, split: dataset.db_dir(split),
        comparator=lambda cfg: "sql-rlvr execution match = BIRD's evaluation_ex.py rule: set(pred) == set(gold), "
                               "strict UTF-8",
        write_eval_files=_write_bird_files, official_command=_bird_command),
}


def get(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise utils.UserError(f"unknown benchmark {name!r}: use {' or '.join(BENCHMARKS)}")
    return BENCHMARKS[name]

