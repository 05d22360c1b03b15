"""Spider-format question files (evaluate.py --eval_file): Spider's robustness sets (Spider-Syn,
Spider-DK, Spider-Realistic) and any other file in Spider's format, evaluated on Spider's databases,
with a set's own schemas and databases merged over Spider's (--eval_tables, --eval_db_dir).

A file is a JSON list of records with `query`, `db_id` and a question: `SpiderSynQuestion` when the
record has one (Spider-Syn: the question with schema words replaced by synonyms; `SpiderQuestion` is
the original), else `question`. A question's database is <--eval_db_dir>/<db_id>/<db_id>.sqlite when
there, else Spider's database/<db_id>/<db_id>.sqlite; its schema the --eval_tables entry of its db_id,
else Spider's tables.json. Every check (a missing file, a record without a question, query or db_id,
an unknown db_id, two files that would share a folder) is one line naming the file and the record,
before any model is loaded. A gold query that fails on its database (one of Spider-DK's 535) is left
out before generation, with a count and the first few listed, so the files written stay readable by
the official evaluator, which stops at such a gold query.

Imports config, benchmarks, errors and scoring.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import Config
from sql_rlvr import benchmarks, scoring
from sql_rlvr.errors import DataError, UserError


class QuestionFileError(DataError):
    pass


@dataclass
class QuestionFile(benchmarks.Spider):
    """One question file, read through the Spider interface that evaluation uses (examples, schema,
    db_path, db_dir, tables_path): Spider's release (opened for dev) with the file's questions, the
    set's tables merged over Spider's by db_id, and its own databases looked up first."""

    path: Path = field(default_factory=Path)
    extra_db_dir: Path | None = None  # --eval_db_dir
    questions: list[dict] = field(default_factory=list)  # examples: the file's records, each with file_index
    size: int = 0  # records in the file (some may be left out: gold_failures)
    gold_failures: list[dict] = field(default_factory=list)
    own_tables: frozenset = frozenset()  # the db_ids whose schema comes from --eval_tables
    # Written by prepare(): the merged database folder (links) and the file's schemas, for our scorer and the
    # official evaluator's --db and --table.
    linked_dir: Path | None = None
    tables_file: Path | None = None

    @property
    def name(self) -> str:
        """The folder name under eval/<adapter>/: the file's name without .json."""
        return self.path.stem

    def examples(self, split: str = "dev", use_train_others: bool = True) -> list[dict]:
        """The file's questions, whatever the split (one file is one set)."""
        return self.questions

    def own_db_path(self, db_id: str) -> Path | None:
        if self.extra_db_dir is None:
            return None
        path = self.extra_db_dir / db_id / f"{db_id}.sqlite"
        return path if path.exists() else None

    def db_path(self, db_id: str) -> Path:
        return self.own_db_path(db_id) or self.database_dir / db_id / f"{db_id}.sqlite"

    def own_databases(self) -> list[str]:
        """The file's db_ids served from --eval_db_dir (not Spider's databases: no test suite covers them)."""
        return sorted({q["db_id"] for q in self.questions if self.own_db_path(q["db_id"])})

    def db_dir(self, split: str = "dev") -> Path:
        return self.linked_dir or self.database_dir

    @property
    def tables_path(self) -> Path:
        return self.tables_file or self.root / benchmarks.SPIDER_EVAL_SPLITS["dev"][1]

    def prepare(self, out: Path) -> None:
        """Write into `out` what one --db and one --table need where the file uses the set's own: when a
        database comes from --eval_db_dir, database/<db_id> linking each database of the file to its folder
        (the set's, else Spider's); when a schema comes from --eval_tables, tables.json holding the file's
        schemas. A file on Spider's databases and schemas alone is scored on Spider's folder itself."""
        out.mkdir(parents=True, exist_ok=True)
        db_ids = sorted({q["db_id"] for q in self.questions})
        if self.own_databases():
            linked = out / "database"
            linked.mkdir(exist_ok=True)
            for old in linked.iterdir():  # an earlier run's links (--overwrite); never a real folder
                if old.is_symlink():
                    old.unlink()
            for db_id in db_ids:
                link = linked / db_id
                if link.exists():
                    raise UserError(f"{link} is in the way of the link to {db_id}'s database: move it")
                try:
                    link.symlink_to(self.db_path(db_id).parent.resolve(), target_is_directory=True)
                except OSError as exc:
                    raise UserError(f"cannot link {link} to {self.db_path(db_id).parent}: {exc.strerror or exc}") from None
            self.linked_dir = linked
        if self.own_tables & set(db_ids):
            self.tables_file = out / "tables.json"
            self.tables_file.write_text(json.dumps([self.tables[db] for db in db_ids], indent=1), encoding="utf-8")


def _read_json(path: Path, flag: str) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise QuestionFileError(f"{flag} {path}: no such file") from None
    except IsADirectoryError:
        raise QuestionFileError(f"{flag} {path} is a folder: name the JSON file") from None
    except OSError as exc:
        raise QuestionFileError(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise QuestionFileError(f"{flag} {path} is not valid JSON ({exc})") from None


def read_tables(path: Path) -> dict[str, dict]:
    """--eval_tables: Spider's tables.json format, by db_id."""
    entries = _read_json(path, "--eval_tables")
    if not isinstance(entries, list) or not all(isinstance(t, dict) and isinstance(t.get("db_id"), str)
                                                for t in entries):
        raise QuestionFileError(f"--eval_tables {path} is not a list of Spider schemas with db_id (tables.json's format)")
    return {t["db_id"]: t for t in entries}


def read_questions(path: Path, tables: dict[str, dict], db_path: Any) -> list[dict]:
    """The records of one file as examples: {**record, question: the one asked, file_index}. `db_path`:
    db_id -> its database file (checked to exist)."""
    data = _read_json(path, "--eval_file")
    if not isinstance(data, list) or not data:
        raise QuestionFileError(f"--eval_file {path} should hold a non-empty JSON list of questions in Spider's "
                                "format (question, query, db_id)")
    examples = []
    for j, record in enumerate(data):
        where = f"--eval_file {path} record {j}"
        if not isinstance(record, dict):
            raise QuestionFileError(f"{where}: not a JSON object")
        asked = record.get("SpiderSynQuestion", record.get("question"))
        if not isinstance(asked, str) or not asked.strip():
            raise QuestionFileError(f"{where}: no question (a string `question`, or Spider-Syn's `SpiderSynQuestion`)")
        for key in ("query", "db_id"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise QuestionFileError(f"{where}: no {key} (a non-empty string)")
        db_id = record["db_id"]
        if db_id not in tables:
            raise QuestionFileError(f"{where}: unknown db_id {db_id!r} (in neither Spider's tables.json nor "
                                    "--eval_tables)")
        if not db_path(db_id).exists():
            raise QuestionFileError(f"{where}: no database for db_id {db_id!r} (expected {db_path(db_id)}; a set's "
                                    "own databases go in --eval_db_dir)")
        examples.append({**record, "question": asked, "file_index": j})
    return examples


def open_question_files(cfg: Config) -> list[QuestionFile]:
    """--eval_file PATH[,PATH...] with --eval_tables and --eval_db_dir, every file read and checked."""
    if not cfg.eval_file:
        raise UserError("--eval_tables and --eval_db_dir go with --eval_file (a set's own schemas and databases)")
    if cfg.benchmark != "spider":
        raise UserError(f"--eval_file reads question files in Spider's format, on Spider's databases: drop "
                        f"--benchmark {cfg.benchmark}")
    if cfg.eval_split != "dev":
        raise UserError("--eval_file evaluates its files instead of a split: drop --eval_split")
    spider = benchmarks.Spider.open(cfg.spider_dir)  # dev's tables.json and database/
    tables = dict(spider.tables)
    own_tables = read_tables(Path(cfg.eval_tables).expanduser()) if cfg.eval_tables else {}
    tables.update(own_tables)
    extra = None
    if cfg.eval_db_dir:
        extra = Path(cfg.eval_db_dir).expanduser()
        if not extra.is_dir():
            raise UserError(f"--eval_db_dir {extra} is not a folder (expected <dir>/<db_id>/<db_id>.sqlite)")
        benchmarks.ensure_databases_built(extra)  # a shipped set keeps its databases as SQL text (the tests')
    files: list[QuestionFile] = []
    for raw in cfg.eval_file:
        path = Path(raw).expanduser()
        twin = next((f.path for f in files if f.name == path.stem), None)
        if twin is not None:
            raise UserError(f"--eval_file {twin} and {path} would both write eval/<adapter>/{path.stem}/ (a folder per "
                            "file, named after it): rename one")
        qf = QuestionFile(root=spider.root, tables=tables, split="dev", path=path, extra_db_dir=extra,
                          own_tables=frozenset(own_tables))
        qf.questions = read_questions(path, tables, qf.db_path)
        qf.size = len(qf.questions)
        files.append(qf)
    return files


def leave_out_failing_golds(qf: QuestionFile, cfg: Config) -> list[dict]:
    """Run every gold query of the file on its database, as the scorer runs it; those that fail (or time
    out) are left out of qf.questions and returned (their records: file_index, db_id, error). Call after
    prepare(): the scorer reads one database folder."""
    golds = [(scoring.flatten_sql(q["query"]), q["db_id"]) for q in qf.questions]
    records = scoring.score_predictions([sql for sql, _ in golds], golds, os.fspath(qf.db_dir()), cfg.sql_timeout_s,
                                        cfg.reward_workers, keep_distinct=cfg.keep_distinct, keep_gold_errors=True)
    failed = {r["index"] for r in records if r["outcome"] == "gold_error"}
    qf.gold_failures = [{"file_index": qf.questions[r["index"]]["file_index"], "db_id": r["db_id"], "error": r["error"]}
                        for r in records if r["index"] in failed]
    qf.questions = [q for i, q in enumerate(qf.questions) if i not in failed]
    if not qf.questions:
        raise UserError(f"--eval_file {qf.path}: every gold query fails on its database; first: record "
                        f"{qf.gold_failures[0]['file_index']} ({qf.gold_failures[0]['db_id']}): "
                        f"{qf.gold_failures[0]['error']}")
    return qf.gold_failures
