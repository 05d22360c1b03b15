"""The benchmarks sql-rlvr trains and evaluates on, Spider, BIRD and your own data (a folder): how each
is read, and a `Benchmark` description of everything else that differs between them.

A `Benchmark` names its evaluation splits, its match rule (scoring.MATCH_RULES: for the metric,
voting's groups and GRPO's +5 alike), where the difficulty labels come from (and the strata of seeded
samples), the file formats of its official evaluator, and the options only that evaluator has
(Spider's --ts_db_dir and --keep_distinct, refused with BIRD). The scripts reach it through
`utils.open_dataset(cfg)` / `utils.benchmark_spec(cfg)`.

    spider   Spider's release (Spider); test-suite-sql-eval's execution match (DISTINCT removed,
             `value` rewritten, column permutations, order when the gold says ORDER BY); hardness
             computed from the gold SQL; pred.txt / gold.txt; eval splits dev, test; voting groups
             equal row multisets (1 and 1.0 apart); test suites and --keep_distinct.
    bird     BIRD's release (Bird: train/, dev/, mini_dev_sqlite.json); BIRD's rule, exactly as
             bird-bench/mini_dev evaluation/evaluation_ex.py: set(pred) == set(gold) on the raw rows,
             with sqlite3's strict UTF-8 text; difficulty from the data; predict_dev.json and
             dev_gold.sql; eval splits dev, mini_dev; voting groups equal row sets (1 == 1.0).
    folder   your own data (Folder: --data_dir with train.json, dev.json, <db_id>.sqlite or
             <db_id>/<db_id>.sqlite, tables.json optional); the schema read from each database;
             records whose gold query fails on its database left out; Spider's match rule, hardness,
             pred.txt / gold.txt and --keep_distinct; eval split dev.

Imports config, errors, schema, scoring, hardness, sandbox and value_index; never utils (which builds on
this module).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from config import Config
from sql_rlvr import scoring
from sql_rlvr.errors import DataError, UserError
from sql_rlvr.hardness import HARDNESS_LEVELS
from sql_rlvr.sandbox import execute_sql
from sql_rlvr.schema import SchemaTable, read_schema, render_schema, tables_from_json
from sql_rlvr.value_index import value_index

# ======================================================================
# Spider's release layout


class SpiderDataError(DataError):
    pass


SPIDER_HOWTO = (
    "get Spider from https://yale-lily.github.io/spider (spider_data.zip), unzip it and point "
    "--spider_dir (or SPIDER_DIR in .env) at the folder holding train_spider.json, dev.json, tables.json and database/"
)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise SpiderDataError(f"missing {path}: {SPIDER_HOWTO}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpiderDataError(f"{path} is not valid JSON ({exc})") from None


def build_sqlite_from_sql(sql_path: Path, sqlite_path: Path) -> None:
    """Build a database from a checked-in SQL script, atomically (a half-built file never appears)."""
    tmp = sqlite_path.with_name(f".{sqlite_path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        conn = sqlite3.connect(tmp)
        try:
            # A scratch file renamed into place when complete: no journal and no fsync per INSERT
            # (measured: 3.4 s -> milliseconds for the mini-Spider).
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.executescript(sql_path.read_text(encoding="utf-8"))
            conn.commit()
        finally:
            conn.close()
        os.replace(tmp, sqlite_path)
    except sqlite3.Error as exc:
        raise SpiderDataError(f"cannot build {sqlite_path.name} from {sql_path}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def ensure_databases_built(database_dir: Path) -> None:
    """Build `<db>/<db>.sqlite` from `<db>/<db>.sql` where the project ships SQL text instead of a binary.

    A sidecar file records the hash of the script each database was built from, so an edited script
    rebuilds it; a `.sqlite` without a sidecar (a real Spider download) is never touched.
    """
    if not database_dir.is_dir():
        return
    for sql_path in sorted(database_dir.glob("*/*.sql")):
        if sql_path.stem != sql_path.parent.name:
            continue  # Spider's own schema.sql files are documentation, not sources
        sqlite_path = sql_path.with_suffix(".sqlite")
        stamp = sql_path.with_suffix(".sql.sha256")  # no ".sqlite" in the name: the official evaluator opens every such file
        digest = hashlib.sha256(sql_path.read_bytes()).hexdigest()
        if sqlite_path.exists() and sqlite_path.stat().st_size > 0 and (not stamp.exists() or stamp.read_text().strip() == digest):
            continue  # (a zero-byte file is an interrupted copy: rebuilt)
        build_sqlite_from_sql(sql_path, sqlite_path)
        stamp.write_text(digest + "\n")


# Evaluation splits the Spider loader knows: (questions, schemas, database folder) in the release folder.
# train uses the dev split's schemas and databases (train_spider.json + train_others.json).
SPIDER_EVAL_SPLITS: dict[str, tuple[str, str, str]] = {
    "dev": ("dev.json", "tables.json", "database"),
    "test": ("test.json", "test_tables.json", "test_database"),  # the current release holds the test set
}


def check_eval_split(split: str) -> None:
    if split not in SPIDER_EVAL_SPLITS:
        raise UserError(f"--eval_split {split!r} is not a Spider split: use one of {', '.join(SPIDER_EVAL_SPLITS)}")


def ensure_test_suite_built(folder: Path, source_dir: Path) -> None:
    """Build a test-suite folder from shipped SQL (the mini-Spider's): for each `<folder>/<db_id>/`,
    `<db_id>.sqlite` from `<source_dir>/<db_id>/<db_id>.sql`, and `<name>.sqlite` for each
    `<name>.perturb.sql` beside it from that same script followed by the perturbation (rows deleted,
    duplicated, numbers shifted). Rebuilt when either script changes, atomically like the others."""
    if not folder.is_dir():
        return
    for db_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
        source = source_dir / db_folder.name / f"{db_folder.name}.sql"
        if not source.is_file():
            continue
        base = source.read_text(encoding="utf-8")
        targets = [(db_folder / f"{db_folder.name}.sqlite", "")]
        targets += [(db_folder / (p.name[: -len(".perturb.sql")] + ".sqlite"), p.read_text(encoding="utf-8"))
                    for p in sorted(db_folder.glob("*.perturb.sql"))]
        for sqlite_path, perturbation in targets:
            script = base + "\n" + perturbation
            stamp = sqlite_path.with_name(sqlite_path.stem + ".built.sha256")  # no ".sqlite" in the name
            digest = hashlib.sha256(script.encode()).hexdigest()
            if sqlite_path.exists() and stamp.exists() and stamp.read_text().strip() == digest:
                continue
            tmp_sql = sqlite_path.with_name(f".{sqlite_path.stem}.{os.getpid()}.script")
            try:
                # no journal or fsync per INSERT: the file is built aside and renamed into place
                tmp_sql.write_text("PRAGMA journal_mode = OFF;\nPRAGMA synchronous = OFF;\n" + script, encoding="utf-8")
                build_sqlite_from_sql(tmp_sql, sqlite_path)
            finally:
                tmp_sql.unlink(missing_ok=True)
            stamp.write_text(digest + "\n")


def hinted_schema(dataset: Any, example: dict, text: str, sample_values: int, value_hints: int) -> str:
    """`dataset`'s schema of `example`'s database with the stored values that match `text` (value_index.py):
    the plain schema when `value_hints` is 0, no value matches, or the database is not on disk."""
    db_id = example["db_id"]
    plain = dataset.schema(db_id, sample_values)
    if value_hints <= 0 or not dataset.db_path(db_id).exists():
        return plain
    hints = value_index(dataset.db_path(db_id)).lookup(text, value_hints)
    return render_schema(dataset.schema_tables(db_id, sample_values), hints) if hints else plain


@dataclass
class Spider:
    """A Spider release folder: examples per split, schemas from tables.json, database paths.

    Opened for an evaluation split (SPIDER_EVAL_SPLITS): 'dev' (the default, also used for
    training) reads tables.json and database/; 'test' reads test_tables.json and test_database/.
    """

    root: Path
    tables: dict[str, dict] = field(default_factory=dict)
    _schema_cache: dict = field(default_factory=dict, repr=False)
    split: str = "dev"

    @classmethod
    def open(cls, root: str | os.PathLike, split: str = "dev") -> "Spider":
        path = Path(root).expanduser()
        check_eval_split(split)
        if not path.is_dir():
            raise SpiderDataError(f"Spider folder {path} does not exist: {SPIDER_HOWTO}")
        questions, tables_file, db_folder = SPIDER_EVAL_SPLITS[split]
        if split != "dev":
            missing = [name for name in (questions, tables_file, db_folder + "/") if not (path / name).exists()]
            if missing:
                raise UserError(f"--eval_split {split} needs {', '.join(missing)} in {path} (not found): "
                                      "the current Spider release (spider_data.zip) holds the test set")
        tables = _read_json(path / tables_file)
        if not isinstance(tables, list) or not all(isinstance(t, dict) and "db_id" in t for t in tables):
            raise SpiderDataError(f"{path / tables_file} is not a list of Spider schemas with db_id")
        ensure_databases_built(path / db_folder)
        ensure_test_suite_built(path / "test_suite", path / "database")  # the mini-Spider's; absent in Spider
        return cls(root=path, tables={t["db_id"]: t for t in tables}, split=split)

    @property
    def database_dir(self) -> Path:
        return self.root / SPIDER_EVAL_SPLITS[self.split][2]

    @property
    def tables_path(self) -> Path:
        return self.root / SPIDER_EVAL_SPLITS[self.split][1]

    def db_path(self, db_id: str) -> Path:
        return self.database_dir / db_id / f"{db_id}.sqlite"

    def db_dir(self, split: str) -> Path:
        """The folder of <db_id>/<db_id>.sqlite of an evaluation split (the one this Spider was opened for)."""
        return self.database_dir

    def examples(self, split: str, use_train_others: bool = True) -> list[dict]:
        """Examples of `split` ('train', or an evaluation split: 'dev', 'test') as dicts with db_id,
        question, query (and the rest). An evaluation split other than dev needs the Spider opened for it."""
        if split == "train":
            files = ["train_spider.json"] + (["train_others.json"] if use_train_others else [])
        elif split in SPIDER_EVAL_SPLITS:
            if split != "dev" and split != self.split:
                raise ValueError(f"open the Spider folder with split={split!r} to read its examples")
            files = [SPIDER_EVAL_SPLITS[split][0]]
        else:
            raise ValueError(f"unknown split {split!r}")
        examples: list[dict] = []
        for i, name in enumerate(files):
            path = self.root / name
            if i > 0 and not path.exists():
                continue  # train_others.json is optional
            data = _read_json(path)
            if not isinstance(data, list):
                raise SpiderDataError(f"{path} should hold a list of examples")
            for j, ex in enumerate(data):
                if not (isinstance(ex, dict) and all(isinstance(ex.get(k), str) for k in ("db_id", "question", "query"))):
                    raise SpiderDataError(f"{path} example {j} lacks a string db_id, question or query")
                examples.append(ex)
        missing = sorted({ex["db_id"] for ex in examples} - set(self.tables))
        if missing:
            raise SpiderDataError(f"{split} examples use databases absent from {self.tables_path.name}: {', '.join(missing[:5])}")
        return examples

    def schema_tables(self, db_id: str, sample_values: int = 0) -> list[SchemaTable]:
        """The schema's tables: from the database when present, else from tables.json."""
        key = (db_id, sample_values)
        if key not in self._schema_cache:
            path = self.db_path(db_id)
            if path.exists():
                tables = read_schema(path, sample_values, self.tables.get(db_id))
            elif db_id in self.tables:
                tables = tables_from_json(self.tables[db_id])
            else:
                raise SpiderDataError(f"no database or tables.json entry for {db_id!r} under {self.root}")
            self._schema_cache[key] = (tables, render_schema(tables))
        return self._schema_cache[key][0]

    def schema(self, db_id: str, sample_values: int = 0) -> str:
        """CREATE TABLE text for the prompt: from the database when present, else from tables.json."""
        self.schema_tables(db_id, sample_values)
        return self._schema_cache[(db_id, sample_values)][1]

    def example_schema(self, example: dict, sample_values: int = 0, value_hints: int = 0) -> str:
        """The schema text of one example's prompt: schema(), plus up to `value_hints` stored values per
        column that match the question (--value_hints; value_index.py)."""
        return hinted_schema(self, example, example["question"], sample_values, value_hints)


# ======================================================================
# BIRD's release layout


class BirdDataError(DataError):
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
    """A BIRD release folder, read through the same interface as Spider (examples, schema, db_path).

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
        ensure_databases_built(databases)  # the shipped mini-BIRD keeps its databases as .sql text
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

    def schema_tables(self, db_id: str, sample_values: int = 0) -> list[SchemaTable]:
        """The schema's tables from the database (keys also from the tables file), with each column's
        description from database_description/*.csv when `column_descriptions` is on."""
        key = (db_id, sample_values)
        if key not in self._schema_cache:
            path = self.db_path(db_id)
            if not path.exists():
                raise BirdDataError(f"missing {path}: {BIRD_HOWTO}")
            notes = read_column_descriptions(path.parent) if self.column_descriptions else None
            tables = read_schema(path, sample_values, self.tables.get(db_id), column_comments=notes)
            self._schema_cache[key] = (tables, render_schema(tables))
        return self._schema_cache[key][0]

    def schema(self, db_id: str, sample_values: int = 0) -> str:
        """CREATE TABLE text from the database (keys also from the tables file), with each column's
        description from database_description/*.csv when `column_descriptions` is on."""
        self.schema_tables(db_id, sample_values)
        return self._schema_cache[(db_id, sample_values)][1]

    def example_schema(self, example: dict, sample_values: int = 0, value_hints: int = 0) -> str:
        """schema() plus up to `value_hints` stored values per column that match the question or its
        evidence (which often names the value: "Alameda County refers to County Name = 'Alameda'")."""
        text = "\n".join(t for t in (example["question"], example.get("evidence") or "") if t)
        return hinted_schema(self, example, text, sample_values, value_hints)


# ======================================================================
# your own data: a folder of train.json, dev.json and SQLite databases (--benchmark folder --data_dir DIR)


class FolderDataError(DataError):
    pass


FOLDER_HOWTO = (
    "--data_dir names a folder holding train.json and dev.json (lists of records with question, query (or SQL), "
    "db_id, optional evidence) and each database as <db_id>.sqlite or <db_id>/<db_id>.sqlite; tables.json is "
    "optional (docs/data.md, \"Your own data\")"
)
FOLDER_SPLITS = {"train": "train.json", "dev": "dev.json"}
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database file
GOLD_FAILURES_SHOWN = 3  # left-out records named in the line that counts them


def is_sqlite_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a file that starts as every SQLite 3 database does (an empty one does not)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def find_databases(root: Path) -> dict[str, Path]:
    """{db_id: file} for <root>/<db_id>.sqlite and <root>/<db_id>/<db_id>.sqlite; one line when a db_id has both."""
    flat = {p.stem: p for p in root.glob("*.sqlite") if p.is_file()}
    nested = {p.stem: p for p in root.glob("*/*.sqlite") if p.is_file() and p.stem == p.parent.name}
    both = sorted(set(flat) & set(nested))
    if both:
        raise FolderDataError(f"{root} holds both {flat[both[0]]} and {nested[both[0]]}: keep one database per db_id")
    return {**flat, **nested}


def gold_failure(db_path: Path, gold_sql: str, timeout_s: float) -> str | None:
    """Why a gold query gives no result to compare with on its database (an error, a refusal, a time-out
    or a result over the sandbox's bounds), as the reward and the scorer would run it; None when it runs."""
    result = execute_sql(db_path, scoring.match_rule("spider").prepare(gold_sql, False), timeout_s)
    return None if result.ok else f"{result.kind}: {result.error}"


@dataclass
class Folder:
    """Your own data (--benchmark folder): train.json and dev.json, each database as <db_id>.sqlite or
    <db_id>/<db_id>.sqlite, tables.json optional. Read through the same interface as Spider.

    Records get `query` (BIRD's `SQL` when it has no `query`), `evidence` ("" when absent) and keep the rest.
    The schema is read from each database (types, primary and foreign keys; keys also from tables.json when
    there is one): the same text in SFT, GRPO, evaluation and --ask. A record whose gold query fails or runs
    past `gold_timeout_s` on its database is left out, with a line that counts them and names the first few:
    nothing could be compared with it, so no answer could earn a reward or a match on it.
    """

    root: Path
    databases: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, dict] = field(default_factory=dict)
    gold_timeout_s: float = scoring.GOLD_TIMEOUT_S
    _examples: dict[str, list[dict]] = field(default_factory=dict, repr=False)
    _schema_cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike, gold_timeout_s: float = scoring.GOLD_TIMEOUT_S) -> "Folder":
        if not str(root).strip():
            raise FolderDataError(f"--benchmark folder needs --data_dir DIR: {FOLDER_HOWTO}")
        path = Path(root).expanduser()
        if not path.is_dir():
            raise FolderDataError(f"--data_dir {path} is not a folder: {FOLDER_HOWTO}")
        ensure_databases_built(path)  # the shipped example keeps its databases as <db_id>/<db_id>.sql text
        tables = {}
        if (path / "tables.json").exists():
            entries = _read_folder_json(path / "tables.json")
            if not isinstance(entries, list) or not all(isinstance(t, dict) and isinstance(t.get("db_id"), str)
                                                        for t in entries):
                raise FolderDataError(f"{path / 'tables.json'} is not a list of Spider schemas with db_id")
            tables = {t["db_id"]: t for t in entries}
        return cls(root=path, databases=find_databases(path), tables=tables, gold_timeout_s=gold_timeout_s)

    @classmethod
    def for_database(cls, db_path: str | os.PathLike) -> "Folder":
        """A folder of one database and no questions (--ask): its schema as the folder benchmark renders it."""
        path = Path(db_path).expanduser()
        if not path.is_file():
            raise FolderDataError(f"no database file {path}")
        if not is_sqlite_file(path):
            raise FolderDataError(f"{path} is not a SQLite database")
        return cls(root=path.parent, databases={path.stem: path})

    @property
    def tables_path(self) -> Path:
        return self.root / "tables.json"

    def db_path(self, db_id: str) -> Path:
        if db_id not in self.databases:
            raise FolderDataError(f"no database {db_id!r} in {self.root} (expected {db_id}.sqlite or "
                                  f"{db_id}/{db_id}.sqlite)")
        return self.databases[db_id]

    def db_dir(self, split: str) -> Path:
        """The folder of the databases (both layouts: scoring.db_files finds <db_id>.sqlite there too)."""
        return self.root

    def examples(self, split: str, use_train_others: bool = True) -> list[dict]:
        """The records of `split` (train or dev) whose gold query runs on its database (see the class).
        `use_train_others` is Spider's and is ignored."""
        if split not in FOLDER_SPLITS:
            raise FolderDataError(f"unknown split {split!r} of a --data_dir folder: use {', '.join(FOLDER_SPLITS)}")
        if split not in self._examples:
            self._examples[split] = self._checked(self.root / FOLDER_SPLITS[split])
        return self._examples[split]

    def _records(self, path: Path) -> list[tuple[int, dict]]:
        """(index in the file, example) of each record of one file, checked: one line naming the file and the
        record that is not one."""
        data = _read_folder_json(path)
        if not isinstance(data, list):
            raise FolderDataError(f"{path} should hold a list of records (question, query, db_id)")
        examples = []
        for j, ex in enumerate(data):
            where = f"{path} record {j}"
            if not isinstance(ex, dict):
                raise FolderDataError(f"{where} is not an object with question, query and db_id")
            query = ex.get("query") if ex.get("query") is not None else ex.get("SQL")
            for name, value in (("question", ex.get("question")), ("query (or SQL)", query), ("db_id", ex.get("db_id"))):
                if not isinstance(value, str) or not value.strip():
                    raise FolderDataError(f"{where} has no {name}")
            db_id = ex["db_id"]
            if db_id not in self.databases:
                raise FolderDataError(f"{where}: db_id {db_id!r} has no database in {self.root} (expected "
                                      f"{db_id}.sqlite or {db_id}/{db_id}.sqlite)")
            if not is_sqlite_file(self.databases[db_id]):
                raise FolderDataError(f"{where}: {self.databases[db_id]} is not a SQLite database")
            evidence = ex.get("evidence")
            examples.append((j, {**ex, "query": query, "evidence": evidence if isinstance(evidence, str) else ""}))
        return examples

    def _checked(self, path: Path) -> list[dict]:
        """_records(path) less those whose gold query gives no result on its database, with a line saying so."""
        records, kept, failed = self._records(path), [], []
        for j, ex in records:
            why = gold_failure(self.databases[ex["db_id"]], ex["query"], self.gold_timeout_s)
            if why:
                failed.append(f"record {j} ({ex['db_id']}): {' '.join(why.split())[:120]}")
            else:
                kept.append(ex)
        if failed:
            shown = "; ".join(failed[:GOLD_FAILURES_SHOWN]) + ("; ..." if len(failed) > GOLD_FAILURES_SHOWN else "")
            print(f"[data] {path}: {len(failed)} of {len(records)} records left out, their gold query gives no "
                  f"result on its database (limit {self.gold_timeout_s:g} s): {shown}")
        if not kept:
            raise FolderDataError(f"{path}: no record left whose gold query runs on its database")
        return kept

    def schema_tables(self, db_id: str, sample_values: int = 0) -> list[SchemaTable]:
        """The schema's tables, read from the database (keys also from tables.json when it has the db_id)."""
        key = (db_id, sample_values)
        if key not in self._schema_cache:
            tables = read_schema(self.db_path(db_id), sample_values, self.tables.get(db_id))
            self._schema_cache[key] = (tables, render_schema(tables))
        return self._schema_cache[key][0]

    def schema(self, db_id: str, sample_values: int = 0) -> str:
        """CREATE TABLE text for the prompt, read from the database."""
        self.schema_tables(db_id, sample_values)
        return self._schema_cache[(db_id, sample_values)][1]

    def example_schema(self, example: dict, sample_values: int = 0, value_hints: int = 0) -> str:
        """schema() plus up to `value_hints` stored values per column that match the question or its evidence."""
        text = "\n".join(t for t in (example["question"], example.get("evidence") or "") if t)
        return hinted_schema(self, example, text, sample_values, value_hints)


def _read_folder_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise FolderDataError(f"missing {path}: {FOLDER_HOWTO}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FolderDataError(f"{path} is not valid JSON ({exc})") from None


# ======================================================================
# the benchmark descriptions


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's differences, read by the scripts (see the module docstring)."""

    name: str
    title: str  # as the benchmark spells itself in messages
    # (cfg, split) -> a dataset with root, examples(split), schema(db_id, k), schema_tables(db_id, k),
    # example_schema(example, k, value_hints), db_path(db_id), db_dir(split);
    # `split` is the evaluation split it is opened for (training reads "train" from any).
    open: Callable[[Config, str], Any]
    eval_splits: tuple[str, ...]  # what --eval_split may name
    rule: str  # key of scoring.MATCH_RULES: the metric's, voting's and GRPO's +5 verdict
    label_key: str  # the record field holding the difficulty level; metrics.json has by_<label_key>
    levels: tuple[str, ...]
    eval_strata: tuple[str, ...]  # utils.stratified_subset keys of --max_eval_examples / --eval_subset_size samples
    difficulty_from_data: bool  # BIRD's questions carry it; Spider's hardness is computed from the gold SQL
    read_predictions: Callable[..., list[str]]  # (path, expected count) -> SQL strings
    read_gold: Callable[[str | os.PathLike], tuple[list[tuple[str, str]], list[str] | None]]  # -> (SQL, db_id), levels
    comparator: Callable[[Config], str]  # what "execution match" means in metrics.json
    # The official evaluator's score table: column names (levels + the total), the accuracy row's title,
    # percent or fractions, column width.
    table: dict = field(default_factory=dict)
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

    def summarize(self, records: list[dict], key: str = "exec_match") -> dict:
        """Accuracy overall ('all') and per level, with counts, of the boolean `key` of each record."""
        return scoring.summarize_by(records, self.label_key, self.levels, key)

    def format_table(self, summary: dict, extra_rows: Any = ()) -> str:
        """The official evaluator's table shape, with extra_rows (label, summary) below it."""
        return scoring.format_table(summary, self.levels, extra_rows, **self.table)

    def check_eval_split(self, split: str) -> None:
        """One line when --eval_split names no split of this benchmark (and which benchmark has it)."""
        if split in self.eval_splits:
            return
        owner = next((b for b in BENCHMARKS.values() if split in b.eval_splits), None)
        hint = f" ({split} is {owner.title}'s: add --benchmark {owner.name})" if owner else ""
        raise UserError(f"--eval_split {split!r} is not a {self.title} split: use one of "
                        f"{', '.join(self.eval_splits)}{hint}")

    def check_options(self, cfg: Config) -> None:
        """One line when cfg sets an option that only another benchmark's evaluator has."""
        defaults = Config()
        mine = {option for option, _ in self.own_options}
        for other in BENCHMARKS.values():
            for option, what in other.own_options:
                if option not in mine and getattr(cfg, option) != getattr(defaults, option):
                    raise UserError(f"--{option} is {other.title}'s ({what}): {self.title} has no such thing; "
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


def _spider_gold(path: str | os.PathLike) -> tuple[list[tuple[str, str]], None]:
    return scoring.read_gold_file(path), None


def _bird_command(pred: Path, gold: Path, db_dir: Path, out: Path) -> str:
    # BIRD's evaluator joins paths by string concatenation (db_root_path + db_id): the folder needs its slash.
    return (f"python3 -u evaluation_ex.py --db_root_path {db_dir}/ --predicted_sql_path {pred} "
            f"--ground_truth_path {gold} --diff_json_path {out / 'dev_difficulty.jsonl'} --num_cpus 4 "
            f"--meta_time_out 30.0 --sql_dialect SQLite --output_log_path {out / 'bird_official.txt'}"
            "   # in evaluation/ of a checkout of github.com/bird-bench/mini_dev (it imports func_timeout, psycopg2, pymysql)")


def _folder_command(pred: Path, gold: Path, db_dir: Path, out: Path) -> str:
    # test-suite-sql-eval reads <db>/<db_id>/<db_id>.sqlite and a tables.json, which your own folder may not have.
    tables = db_dir / "tables.json"
    if tables.exists() and not any(db_dir.glob("*.sqlite")):
        return (f"python evaluation.py --gold {gold} --pred {pred} --db {db_dir} --table {tables} --etype exec"
                "   # in a checkout of github.com/taoyds/test-suite-sql-eval")
    return ("none for your own data without a tables.json and <db_id>/<db_id>.sqlite databases: the execution "
            "match above is test-suite-sql-eval's (exec rules), as it would judge these files")


SUBSET_HARDNESS = "hardness"  # a stratum key that is not a field: Spider's hardness of the gold query

BENCHMARKS: dict[str, Benchmark] = {
    "spider": Benchmark(
        name="spider", title="Spider", open=lambda cfg, split="dev": Spider.open(cfg.spider_dir, split),
        eval_splits=tuple(SPIDER_EVAL_SPLITS), rule="spider", label_key="hardness",
        levels=HARDNESS_LEVELS, eval_strata=("db_id", SUBSET_HARDNESS), difficulty_from_data=False,
        read_predictions=scoring.read_pred_file, read_gold=_spider_gold,
        comparator=lambda cfg: "sql-rlvr execution match = test-suite-sql-eval exec rules, "
                               + ("--keep_distinct" if cfg.keep_distinct else "default flags"),
        own_options=(("ts_db_dir", "test-suite-sql-eval's distilled test-suite databases"),
                     ("keep_distinct", "test-suite-sql-eval's flag; BIRD's rule never removes DISTINCT"))),
    "bird": Benchmark(
        name="bird", title="BIRD",
        open=lambda cfg, split="dev": Bird.open(cfg.bird_dir, cfg.bird_column_descriptions),
        eval_splits=("dev", "mini_dev"), rule="bird",
        label_key="difficulty", levels=BIRD_DIFFICULTIES, eval_strata=("db_id", "difficulty"), difficulty_from_data=True,
        read_predictions=scoring.read_bird_predictions, read_gold=scoring.read_bird_gold,
        comparator=lambda cfg: "sql-rlvr execution match = BIRD's evaluation_ex.py rule: set(pred) == set(gold), "
                               "strict UTF-8",
        # BIRD's own table shape (mini_dev `print_data`): simple / moderate / challenging / total, EX in percent.
        table=dict(names=BIRD_DIFFICULTIES + ("total",), title="EX", percent=True, width=20),
        write_eval_files=scoring.write_bird_files, official_command=_bird_command),
    "folder": Benchmark(
        name="folder", title="--data_dir folder",
        open=lambda cfg, split="dev": Folder.open(cfg.data_dir, max(cfg.sql_timeout_s, scoring.GOLD_TIMEOUT_S)),
        eval_splits=("dev",), rule="spider", label_key="hardness", levels=HARDNESS_LEVELS,
        eval_strata=("db_id", SUBSET_HARDNESS), difficulty_from_data=False,
        read_predictions=scoring.read_pred_file, read_gold=_spider_gold,
        comparator=lambda cfg: "sql-rlvr execution match = Spider's (test-suite-sql-eval exec rules), "
                               + ("--keep_distinct" if cfg.keep_distinct else "default flags"),
        official_command=_folder_command,
        own_options=(("keep_distinct", "test-suite-sql-eval's flag"),)),
}


def get(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}: use {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]
