"""Shared pieces of sql-rlvr: Spider data and prompts, model loading, safe SQL execution, the
execution reward, and scoring that agrees with Spider's official evaluator.

Sections, top to bottom:
  1. errors            one-line user errors
  2. Spider data       loading the release layout, building shipped databases from .sql
  3. schema + prompts  CREATE TABLE text, chat messages, extract_sql
  4. tiny model        a hub-free Qwen3 for tests and --preset smoke
  5. model loading     unsloth (CUDA) or transformers + peft (anywhere)
  6. safe execution    execute_sql: read-only, time-limited, bounded
  7. reward            result comparison, F1 partial credit, the batched GRPO reward
  8. scoring           official-evaluator normalisation, hardness, score_predictions, vote_predictions

Heavy libraries (torch, transformers, peft, TRL, unsloth) are imported inside functions only:
unsloth must be imported before the others when it is used, and the reward workers and the
score-only evaluation must start fast.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import itertools
import json
import logging
import os
import re
import sqlite3
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, List, Optional, Sequence, Tuple

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from config import REPO_DIR, TINY_MODEL_NAME, Config

# ======================================================================
# 1. errors


OUTCOMES = ("match", "partial", "wrong", "invalid", "empty")  # what one model answer can come to


class UserError(Exception):
    """A problem the user can fix (missing file, bad data, wrong flag): printed as one line."""


class SpiderDataError(UserError):
    pass


SPIDER_HOWTO = (
    "get Spider from https://yale-lily.github.io/spider (spider_data.zip), unzip it and point "
    "--spider_dir (or SPIDER_DIR in .env) at the folder holding train_spider.json, dev.json, tables.json and database/"
)


class StageFinished(Exception):
    """`--resume` on a stage that is already finished: the message says so and the script exits 0."""


_ACTIVE_STAGE: dict[str, Any] = {}  # the stage folder being trained (prepare_output_dir), for the Ctrl-C message


def run_main(main) -> None:
    """Run an entry script's main(); user errors become one line on stderr and exit code 2."""
    from config import ConfigError

    try:
        main()
    except StageFinished as exc:  # exit 0: a chain `train_sft.py --resume && train_grpo.py --resume && ...` goes on
        if int(os.environ.get("RANK", "0")) == 0:
            print(exc)
    except (UserError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(interrupted_message(), file=sys.stderr)
        sys.exit(130)


def interrupted_message() -> str:
    """What is true after Ctrl-C: the checkpoint to --resume from, or that none was written yet."""
    stage = _ACTIVE_STAGE.get("path")
    if stage is None:
        return "interrupted before anything was saved; rerun the same command"
    checkpoints = complete_checkpoints(stage)
    if checkpoints:
        return (f"interrupted: {checkpoints[-1]} is kept; rerun the same command with --resume to continue from "
                f"step {checkpoints[-1].name.split('-')[-1]}")
    return (f"interrupted before the first checkpoint (one every --save_steps {_ACTIVE_STAGE['save_steps']} steps): "
            f"nothing to resume in {stage}; rerun without --resume to start again")


# ======================================================================
# 2. Spider data


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
                raise SpiderDataError(f"--eval_split {split} needs {', '.join(missing)} in {path} (not found): "
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

    def schema(self, db_id: str, sample_values: int = 0) -> str:
        """CREATE TABLE text for the prompt: from the database when present, else from tables.json."""
        key = (db_id, sample_values)
        if key not in self._schema_cache:
            path = self.db_path(db_id)
            if path.exists():
                text = schema_from_sqlite(path, sample_values, self.tables.get(db_id))
            elif db_id in self.tables:
                text = schema_from_tables_json(self.tables[db_id])
            else:
                raise SpiderDataError(f"no database or tables.json entry for {db_id!r} under {self.root}")
            self._schema_cache[key] = text
        return self._schema_cache[key]


def open_benchmark(cfg: Config, split: str = "dev"):
    """The dataset of --benchmark (Spider or BIRD; see benchmarks.py): examples(split), schema, db_path.
    `split`: the evaluation split it is opened for (Spider's test split has its own tables and databases)."""
    return benchmark_spec(cfg).open(cfg, split)


def benchmark_spec(cfg: Config):
    """The description of --benchmark: files, match rule, difficulty, output formats (benchmarks.Benchmark)."""
    import benchmarks  # it builds on this module, so it is imported when first needed

    return benchmarks.get(cfg.benchmark)


SUBSET_HARDNESS = "hardness"  # a stratum key that is not a field: Spider's hardness of the gold query


def _stratum_key(key: str | Callable[[dict], Any]) -> Callable[[dict], Any]:
    if callable(key):
        return key
    if key == SUBSET_HARDNESS:
        return lambda example: spider_hardness(example["query"])
    return lambda example: example[key]


def _allocate(sizes: dict[Any, int], n: int, rng) -> dict[Any, int]:
    """Split n draws over groups of the given sizes in proportion to size (largest remainder, exact
    integers, ties broken by `rng`); when n is at least the number of groups, every group gets one,
    taken from the most over-represented group."""
    groups = sorted(sizes, key=repr)
    n = min(n, sum(sizes.values()))
    total = sum(sizes.values())
    quota, remainders = {}, {}
    for g in groups:
        quota[g], remainders[g] = divmod(n * sizes[g], total)
    order = list(groups)
    rng.shuffle(order)
    order.sort(key=lambda g: -remainders[g])  # stable: equal remainders keep the shuffled order
    for g in order[: n - sum(quota.values())]:
        quota[g] += 1
    if n >= len(groups):
        for g in order:
            if quota[g] == 0:
                donor = max((d for d in order if quota[d] > 1), key=lambda d: quota[d] / sizes[d])
                quota[donor] -= 1
                quota[g] = 1
    return quota


def stratified_subset(examples: list[dict], n: int, seed: int,
                      keys: Sequence[str | Callable[[dict], Any]] = ("db_id",)) -> list[int]:
    """Indices of a seeded sample of `n` examples, stratified by `keys` in turn, in dataset order.

    The first key splits the draws over its groups in proportion to their sizes (every group gets
    at least one when n is at least the number of groups), each group's share is split the
    same way by the next key, and the last level draws at random. A key is a field name, "hardness"
    (Spider's level of the gold query), or a function of an example. n <= 0 or n >= len(examples):
    all of them. The first N examples of Spider dev cover a handful of databases; this covers all.
    """
    if n <= 0 or n >= len(examples):
        return list(range(len(examples)))
    import random

    rng = random.Random(seed)
    key_fns = [_stratum_key(k) for k in keys]

    def draw(indices: list[int], count: int, level: int) -> list[int]:
        if level == len(key_fns):
            return rng.sample(indices, count)
        groups: dict[Any, list[int]] = {}
        for i in indices:
            groups.setdefault(key_fns[level](examples[i]), []).append(i)
        quota = _allocate({g: len(members) for g, members in groups.items()}, count, rng)
        return [i for g in sorted(groups, key=repr) for i in draw(groups[g], quota[g], level + 1)]

    return sorted(draw(list(range(len(examples))), n, 0))


def subset_record(indices: list[int], total: int, n: int, seed: int, keys: Sequence[str]) -> dict:
    """What a stratified subset was, for metrics files: enough to draw the same one again and check it."""
    return {"requested": n, "size": len(indices), "of": total, "seed": seed, "strata": list(keys),
            "indices": indices, "indices_sha256": hashlib.sha256(json.dumps(indices).encode()).hexdigest()}


# ======================================================================
# 3. schema serialisation, prompts, extract_sql

_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {"ORDER", "GROUP", "SELECT", "FROM", "WHERE", "TABLE", "INDEX", "KEY", "PRIMARY", "FOREIGN",
             "REFERENCES", "JOIN", "ON", "AS", "BY", "LIMIT", "UNION", "EXCEPT", "INTERSECT", "CHECK",
             "DEFAULT", "TO", "IN", "IS", "NOT", "NULL", "AND", "OR", "CASE", "WHEN", "END", "VALUES", "SET"}


def quote_name(name: str) -> str:
    """Quote an identifier only when SQL needs it (spaces, odd characters, keywords), like Spider's SQL."""
    if _PLAIN_NAME.match(name) and name.upper() not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def decode_text(raw: bytes) -> str:
    """How every database text value is read: invalid UTF-8 bytes are dropped, as the official evaluator does."""
    return raw.decode("utf-8", errors="ignore")


def _render_table(name: str, columns: list[tuple[str, str, str]], pks: list[str],
                  fks: list[tuple[str, str, str]]) -> str:
    """columns: (name, type, trailing comment); fks: (column, ref_table, ref_column)."""
    lines = [f"  {quote_name(c)}{(' ' + t) if t else ''}" for c, t, _ in columns]
    if pks:
        lines.append(f"  PRIMARY KEY ({', '.join(quote_name(c) for c in pks)})")
    for col, ref_table, ref_col in fks:
        lines.append(f"  FOREIGN KEY ({quote_name(col)}) REFERENCES {quote_name(ref_table)}({quote_name(ref_col)})")
    body = []
    for i, line in enumerate(lines):
        sep = "," if i < len(lines) - 1 else ""
        comment = columns[i][2] if i < len(columns) else ""
        body.append(f"{line}{sep}{(' -- ' + comment) if comment else ''}")
    return f"CREATE TABLE {quote_name(name)} (\n" + "\n".join(body) + "\n);"


def _sample_values(conn: sqlite3.Connection, table: str, column: str, k: int) -> str:
    try:
        rows = conn.execute(
            f"SELECT DISTINCT {quote_name(column)} FROM {quote_name(table)} "
            f"WHERE {quote_name(column)} IS NOT NULL LIMIT {int(k)}"
        ).fetchall()
    except sqlite3.Error:
        return ""
    shown = []
    for (value,) in rows:
        text = value if isinstance(value, str) else repr(value) if isinstance(value, bytes) else str(value)
        text = text.replace("\n", " ")
        shown.append(repr(text[:40]) if isinstance(value, str) else text[:40])
    return ("e.g. " + ", ".join(shown)) if shown else ""


def keys_from_tables_json(entry: dict) -> tuple[dict[str, list[str]], dict[str, list[tuple[str, str, str]]]]:
    """Spider's key annotations per table (lowercased table name): primary key columns, foreign keys."""
    tables, columns = entry["table_names_original"], entry["column_names_original"]
    pks: dict[str, list[str]] = {}
    for pk in entry.get("primary_keys", []):
        for idx in (pk if isinstance(pk, list) else [pk]):
            t, name = columns[idx]
            pks.setdefault(tables[t].lower(), []).append(name)
    fks: dict[str, list[tuple[str, str, str]]] = {}
    for a, b in entry.get("foreign_keys", []):
        (ta, ca), (tb, cb) = columns[a], columns[b]
        fks.setdefault(tables[ta].lower(), []).append((ca, tables[tb], cb))
    return pks, fks


def schema_from_sqlite(db_path: str | os.PathLike, sample_values: int = 0, tables_entry: dict | None = None,
                       column_comments: dict[tuple[str, str], str] | None = None) -> str:
    """Every table as CREATE TABLE with declared types, primary and foreign keys, in creation order.

    Read from the database itself (tables.json has lost the declared types). Keys come from the
    database's declarations and, when `tables_entry` is given, from Spider's annotations too: many
    Spider databases declare no keys at all. With `sample_values` > 0, each column gets a comment
    with up to that many distinct values. `column_comments` ({(table, column) lowercased: text}, e.g.
    BIRD's column descriptions) are added to those comments.
    """
    json_pks, json_fks = keys_from_tables_json(tables_entry) if tables_entry else ({}, {})
    if os.path.getsize(db_path) == 0:  # SQLite would open it as a database without tables
        raise SpiderDataError(f"cannot read schema of {db_path}: empty file, not a database (an interrupted download or copy?)")
    conn = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro&immutable=1", uri=True)
    conn.text_factory = decode_text
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
        blocks = []
        for table in tables:
            info = conn.execute(f"PRAGMA table_info({quote_name(table)})").fetchall()
            columns = []
            for _cid, name, ctype, _notnull, _default, _pk in info:
                comment = _sample_values(conn, table, name, sample_values) if sample_values > 0 else ""
                if column_comments and column_comments.get((table.lower(), name.lower())):
                    comment = "; ".join(c for c in (column_comments[(table.lower(), name.lower())], comment) if c)
                columns.append((name, (ctype or "").upper(), comment))
            pks = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
            column_case = {row[1].lower(): row[1] for row in info}
            if not pks:
                pks = [column_case.get(c.lower(), c) for c in json_pks.get(table.lower(), [])]
            fks = []
            for row in conn.execute(f"PRAGMA foreign_key_list({quote_name(table)})").fetchall():
                _id, _seq, ref_table, from_col, to_col = row[:5]
                if to_col is None:  # REFERENCES t without a column means t's primary key
                    ref_pk = [r[1] for r in conn.execute(f"PRAGMA table_info({quote_name(ref_table)})") if r[5]]
                    to_col = ref_pk[0] if ref_pk else from_col
                fks.append((from_col, ref_table, to_col))
            seen = {tuple(x.lower() for x in fk) for fk in fks}
            for col, ref_table, ref_col in json_fks.get(table.lower(), []):
                if (col.lower(), ref_table.lower(), ref_col.lower()) not in seen:
                    seen.add((col.lower(), ref_table.lower(), ref_col.lower()))
                    fks.append((column_case.get(col.lower(), col), ref_table, ref_col))
            blocks.append(_render_table(table, columns, pks, fks))
        return "\n\n".join(blocks)
    except sqlite3.Error as exc:
        raise SpiderDataError(f"cannot read schema of {db_path}: {exc}") from None
    finally:
        conn.close()


def schema_from_tables_json(entry: dict) -> str:
    """The same CREATE TABLE text from a tables.json entry (for a database that is not on disk)."""
    tables = entry["table_names_original"]
    columns = entry["column_names_original"]
    types = entry.get("column_types", [])
    by_table: dict[int, list[int]] = {i: [] for i in range(len(tables))}
    for idx, (t, _name) in enumerate(columns):
        if t >= 0:
            by_table[t].append(idx)
    json_pks, json_fks = keys_from_tables_json(entry)
    blocks = []
    for t, table in enumerate(tables):
        cols = [(columns[i][1], (types[i] if i < len(types) else "").upper(), "") for i in by_table[t]]
        pks = json_pks.get(table.lower(), [])
        fks = json_fks.get(table.lower(), [])
        blocks.append(_render_table(table, cols, pks, fks))
    return "\n\n".join(blocks)


SYSTEM_PROMPT = (
    "You are an expert SQLite developer. Given a database schema and a question, "
    "answer with one SQLite query that answers the question, and nothing else."
)


def build_messages(schema: str, question: str, sql: str | None = None, evidence: str = "",
                   tokenizer=None) -> list[dict]:
    """The chat used everywhere (SFT, GRPO, evaluation): system, user = schema + question, [assistant = SQL].

    `evidence` (BIRD's external-knowledge hint) follows the question; it is left out when empty.
    With `tokenizer`, a template that has no system role (Gemma 1/2) gets the instructions at the top
    of the user turn instead, the way Gemma 3's own template folds them: the same text in every stage.
    """
    user = f"Database schema:\n{schema}\n\nQuestion: {question.strip()}"
    if evidence and evidence.strip():
        user += f"\nExternal knowledge: {evidence.strip()}"
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
    if sql is not None:
        messages.append({"role": "assistant", "content": sql.strip()})
    return fit_to_template(tokenizer, messages) if tokenizer is not None else messages


def render_prompt(tokenizer, messages: list[dict], template_kwargs: dict | None = None) -> str:
    """The prompt text the model sees before it answers (chat template + generation prompt).

    `messages` may end with the assistant answer (dropped here). `template_kwargs` default to
    chat_template_kwargs(tokenizer), the ones training passes to TRL.
    """
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    kwargs = chat_template_kwargs(tokenizer) if template_kwargs is None else template_kwargs
    return tokenizer.apply_chat_template(fit_to_template(tokenizer, messages), tokenize=False,
                                         add_generation_prompt=True, **kwargs)


def render_prompt_for(spider: "Spider", example: dict, cfg: Config, tokenizer=None) -> list[dict] | str:
    """The prompt chat of one Spider example, as training saw it (rendered to text with `tokenizer`)."""
    messages = build_messages(spider.schema(example["db_id"], cfg.schema_sample_values), example["question"],
                              evidence=example.get("evidence", ""))
    return render_prompt(tokenizer, messages) if tokenizer is not None else messages


# Chat templates of other base models (--model_name). Each must render the project's chat so that the
# generation prompt is a token prefix of the full chat, and what follows it is the answer plus only
# the template's end-of-turn tokens: that is what SFT learns (TRL's completion mask) and what
# evaluation and GRPO prompt with. check_chat_template verifies it on the model's own tokenizer.

_SYSTEM_ROLE: dict[str, bool] = {}  # chat template text -> whether it renders a system turn


def chat_template_kwargs(tokenizer) -> dict:
    """Keyword arguments every apply_chat_template of this model gets (SFT, GRPO, evaluation).

    - enable_thinking=False for hybrid-thinking templates (Qwen3): left on, the full chat holds an
      empty `<think>` block before the answer that the generation prompt lacks, so SFT would train it
      and inference never prompt it. Off, the prompt ends with that block and the answer is plain SQL.
    - date_string pinned for templates that write today's date into the system turn (Llama 3.2):
      training and evaluation on different days would otherwise see different prompts.
    """
    template = getattr(tokenizer, "chat_template", None) or ""
    kwargs: dict = {}
    if "enable_thinking" in template:
        kwargs["enable_thinking"] = False
    if "strftime_now" in template and "date_string" in template:
        kwargs["date_string"] = "26 Jul 2024"  # the date Llama 3.x templates fall back to
    return kwargs


def template_has_system_role(tokenizer) -> bool:
    """Whether the chat template renders a system message (Gemma 1/2 raise on one; some drop it)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if template not in _SYSTEM_ROLE:
        probe = "sql-rlvr system probe"
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "system", "content": probe}, {"role": "user", "content": "hello"}],
                tokenize=False, add_generation_prompt=True, **chat_template_kwargs(tokenizer))
            _SYSTEM_ROLE[template] = probe in text
        except Exception:  # the template's raise_exception("System role not supported") (a jinja2 TemplateError)
            _SYSTEM_ROLE[template] = False
    return _SYSTEM_ROLE[template]


def fit_to_template(tokenizer, messages: list[dict]) -> list[dict]:
    """`messages` as this tokenizer's template takes them: a leading system turn is folded into the
    first user turn ("instructions\n\nuser text") when the template has no system role."""
    if not messages or messages[0]["role"] != "system" or template_has_system_role(tokenizer):
        return messages
    system, rest = messages[0], [dict(m) for m in messages[1:]]
    if rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system['content']}\n\n{rest[0]['content']}"
    return rest


# Answers that start as Spider's do (SELECT, lower-case select, WITH): the boundary between the
# generation prompt and the answer is where tokens could merge.
_CHECK_SCHEMA = 'CREATE TABLE "singer" (\n  "singer_id" INTEGER PRIMARY KEY,\n  "name" TEXT,\n  "age" INTEGER\n)'
_CHECK_EXAMPLES = (
    ("How many singers are there?", "SELECT count(*) FROM singer"),
    ("What are the names of singers older than 30?", "select name from singer where age > 30"),
    ("List the names in alphabetical order.", "WITH s AS (SELECT name FROM singer) SELECT name FROM s ORDER BY name"),
)


def check_chat_template(tokenizer, model_name: str, stop_ids: list[int] | None = None,
                        template_kwargs: dict | None = None) -> dict:
    """Verify the model's own chat template on a few examples; return the template kwargs to use everywhere.

    For each example: the generation prompt (what evaluation and GRPO prompt with) must be a token
    prefix of the full chat (what SFT trains on), and the text between them must be exactly the SQL
    followed only by end-of-turn tokens, the first of which is one of `stop_ids` (the tokens
    generation stops at) when given. Anything else raises a one-line UserError naming the model and
    showing where the two renders differ. `template_kwargs` default to chat_template_kwargs(tokenizer).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"{model_name} has no chat template: use an instruct/chat model as --model_name")
    kwargs = chat_template_kwargs(tokenizer) if template_kwargs is None else dict(template_kwargs)
    where = f"chat template of {model_name}" + (f" (with {kwargs})" if kwargs else "")
    added = set(tokenizer.added_tokens_decoder)
    for question, sql in _CHECK_EXAMPLES:
        chat = build_messages(_CHECK_SCHEMA, question, sql, tokenizer=tokenizer)
        try:
            prompt = render_prompt(tokenizer, chat, kwargs)
            full = tokenizer.apply_chat_template(chat, tokenize=False, **kwargs)
        except Exception as exc:  # a template error: show it in one line, whatever its type
            raise UserError(f"the {where} fails on the project's chat: {type(exc).__name__}: {exc}") from None
        if SYSTEM_PROMPT not in prompt:
            raise UserError(f"the {where} drops the instructions (system turn) from the prompt")
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        if full_ids[:len(prompt_ids)] != prompt_ids or not full.startswith(prompt):
            n = len(os.path.commonprefix([prompt, full]))
            raise UserError(f"the {where} renders the generation prompt differently from the start of the full "
                            f"chat: after {prompt[max(0, n - 40):n]!r} the prompt has {prompt[n:n + 40]!r} "
                            f"but the training chat has {full[n:n + 40]!r} (see README, base models)")
        between = full[len(prompt):]
        if not between.startswith(sql):
            injected = between[:between.find(sql)] if sql in between else between[:60]
            raise UserError(f"the {where} puts {injected!r} into the assistant turn before the answer, which the "
                            f"generation prompt (ending {prompt[-30:]!r}) lacks: SFT would train it, inference "
                            "never prompt it (see README, base models)")
        end = between[len(sql):]
        end_tokens = [t for t in tokenizer(end, add_special_tokens=False)["input_ids"] if tokenizer.decode([t]).strip()]
        if not end_tokens or any(t not in added for t in end_tokens):
            raise UserError(f"the {where} follows the answer with {end!r}, not only end-of-turn tokens")
        if stop_ids is not None and end_tokens[0] not in stop_ids:
            raise UserError(f"the {where} ends the answer with {tokenizer.decode(end_tokens[:1])!r}, which is not "
                            f"one of the model's stop tokens {tokenizer.convert_ids_to_tokens(list(stop_ids))}: "
                            "generation would not stop where training ends")
    notes = [f"template kwargs {kwargs}"] if kwargs else []
    if not template_has_system_role(tokenizer):
        notes.append("no system role, the instructions open the user turn")
    if notes:
        print(f"[chat] {model_name}: " + "; ".join(notes) + " (in SFT, GRPO and evaluation alike)")
    return kwargs


_FENCE = re.compile(r"```[ \t]*(?:sqlite3|sqlite|sql)?[ \t]*\n?(.*?)(?:```|$)", re.S | re.I)
_INLINE = re.compile(r"`([^`\n]+)`")
_SQL_START_UPPER = re.compile(r"\b(SELECT|WITH)\b")
# Where a query may start: a line start or after a ';', or after a label such as "SQL:",
# "query:", "**Final answer:**" (then in any case: a label says what follows).
_SQL_START = re.compile(r"(?:^|\n|;)[ \t>*_-]*(?:(?:[A-Za-z][\w ]{0,30}?)?\b(?i:sql|query|answer)\b[ \t*_]*:[ \t*_]*\s*"
                        r"(?P<labelled>(?i:select|with))|(?P<plain>SELECT|select|WITH|with))\b")
# A base model goes on with the next few-shot example; a chat model may emit its end-of-turn token.
_STOP = re.compile(r"\n[ \t]*(?:question|q|schema|database|input|context|user|human)[ \t]*:|<\|im_end\|>|<\|endoftext\|>|<\|im_start\|>", re.I)
_CONTINUATION = re.compile(r"^(FROM|WHERE|GROUP|ORDER|HAVING|LIMIT|JOIN|LEFT|INNER|UNION|INTERSECT|EXCEPT|AND|OR|ON|SELECT|\))\b", re.I)
_SQL_WORDS = {"select", "from", "where", "group", "order", "having", "limit", "join", "left", "right", "inner", "outer",
              "cross", "natural", "union", "intersect", "except", "and", "or", "on", "as", "case", "when", "then", "else",
              "end", "not", "in", "like", "between", "is", "by", "asc", "desc", "offset", "using", "with", "distinct"}
_PROSE_LINE = re.compile(r"^(?:\*\*|#+ |[-*] |\d+\. |[A-Z][a-z']+(?:[ ,:]+[a-z][a-z']*){2,})")


def _looks_like_sql_continuation(text: str) -> bool:
    return bool(_CONTINUATION.match(text))


def _is_prose_line(line: str) -> bool:
    """An explanation after the query: "This returns ...", "Explanation: ...", a markdown bullet."""
    line = line.strip()
    if not _PROSE_LINE.match(line) or line.split()[0].strip("*:,").lower() in _SQL_WORDS:
        return False
    if re.match(r"(?:\*\*|#+ |[-*] |\d+\. )", line):
        return True
    # "Name as singer name" may still be SQL; a sentence ends like one or runs on without operators
    return line.endswith((".", ":", "!", "?")) or (len(line.split()) >= 5 and not re.search(r"[=<>()]", line))


def _cut_statement(sql: str) -> str:
    """Keep the first statement: stop at a ';' outside quotes, at a blank line (an explanation), or
    at a line of prose."""
    quote = None
    for i, ch in enumerate(sql):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == ";":
            return sql[:i]
        elif ch == "\n":
            if sql[i:i + 2] == "\n\n" and sql[i:].strip() and not _looks_like_sql_continuation(sql[i:].strip()):
                return sql[:i]
            line_end = sql.find("\n", i + 1)
            if _is_prose_line(sql[i + 1:line_end if line_end >= 0 else len(sql)]):
                return sql[:i]
    return sql


def _last_query(text: str) -> str:
    """The last query statement in `text` (the final step of a multi-step answer), or ""."""
    found, pos = "", 0
    while True:
        match = _SQL_START.search(text, pos)
        if not match:
            return found
        begin = match.start("labelled") if match.group("labelled") else match.start("plain")
        sql = _cut_statement(text[begin:]).strip()
        keyword = match.group("labelled") or match.group("plain")
        # lowercase `select` without a FROM is most likely prose ("select the rows ..."), unless short
        if keyword.isupper() or match.group("labelled") or re.search(r"\bfrom\b", sql, re.I) or len(sql.split()) <= 3:
            found = sql
        pos = begin + max(len(sql), 1)


def _clean(sql: str) -> str:
    return sql.strip().rstrip(";").strip().rstrip("`").strip()


def extract_sql(text: str | None) -> str:
    """The SQL in a model's answer: a ```sql block, plain SQL, SQL after a label or a short preamble.

    Reasoning is dropped first (`<think>...</think>`, everything before a lone `</think>`, an
    unterminated `<think>` to the end), and so is whatever follows a few-shot marker such as
    "Question:" (a base model's next example) or an end-of-turn token. Then the first of these that
    holds a query wins: the last ```sql block with a query (a schema recap block before it does
    not count), the last query that starts a line or follows a label ("SQL: ...", "query: ...")
    or a ';' (the final step of a multi-step answer), the last `inline` query, the first SELECT or
    WITH anywhere. The query ends at its ';', at a blank line or at a line of prose, and is
    returned without the semicolon. Returns "" when there is no SQL.
    """
    if not text:
        return ""
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]  # thinking that never ended: no answer after it
    for stop in _STOP.finditer(text):
        if re.search(r"(?i)\b(select|with)\b", text[:stop.start()]):
            text = text[:stop.start()]
            break
    blocks = [b for b in _FENCE.findall(text) if b.strip()]
    for block in reversed(blocks):
        sql = _last_query(block)
        if sql:
            return _clean(sql)
    if blocks:
        text = _FENCE.sub("\n", text)
    sql = _last_query(text)
    if sql:
        return _clean(sql)
    spans = [m for m in _INLINE.findall(text) if re.match(r"(?i)\s*(select|with)\b\s*\S", m)]
    if spans:
        return _clean(spans[-1])
    match = _SQL_START_UPPER.search(text)
    if not match:
        return ""
    return _clean(_last_query(text[match.start(1):]) or _cut_statement(text[match.start(1):]))


# ======================================================================
# 4. tiny model (tests and --preset smoke): a Qwen3 built locally, no hub

TINY_MODEL_DIR = REPO_DIR / ".cache" / "tiny-qwen3"
TINY_MODEL_VERSION = "2"  # bump when the recipe below changes, so caches rebuild

# Same shape as Qwen3's own template (system/user/assistant ChatML turns), and, like it, no
# {% generation %} markers: anything that works here must not depend on them.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _tiny_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the shipped mini-Spider's schemas, questions and SQL."""
    from config import MINI_SPIDER_DIR

    lines = [SYSTEM_PROMPT, "Database schema:", "Question:"]
    spider = Spider.open(MINI_SPIDER_DIR)
    for db_id in sorted(spider.tables):
        lines.append(spider.schema(db_id))
    for split in ("train", "dev"):
        for ex in spider.examples(split):
            lines += [ex["question"], ex["query"]]
    return lines


def ensure_tiny_model(path: str | os.PathLike = TINY_MODEL_DIR) -> str:
    """Build (once) and return the folder of a ~100k-parameter Qwen3 with a locally trained tokenizer.

    Loadable with `from_pretrained` like any checkpoint. Built in a temporary folder and renamed into
    place, so concurrent test processes never see half a model.
    """
    path = Path(path)
    corpus = _tiny_corpus()
    # The stamp names the recipe and the data: editing the mini-Spider rebuilds the tokenizer.
    version = f"{TINY_MODEL_VERSION}-{hashlib.sha256(chr(10).join(corpus).encode()).hexdigest()[:12]}"
    stamp = path / "sql-rlvr-tiny-version"
    if stamp.exists() and stamp.read_text().strip() == version:
        return str(path)
    import shutil
    import tempfile

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=1024, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHATML_TEMPLATE

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        # Tied embeddings at the usual 0.02 cap logits near +-1: the model could never learn to say
        # anything. A wider init lets LoRA SFT teach it to emit SQL in seconds.
        initializer_range=0.3,
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=path.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "sql-rlvr-tiny-version").write_text(version + "\n")
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    try:
        os.replace(tmp, path)
    except OSError:  # another process won the race; its model is the same
        shutil.rmtree(tmp, ignore_errors=True)
    return str(path)


def resolve_model_name(name: str) -> str:
    return ensure_tiny_model() if name == TINY_MODEL_NAME else name


# ======================================================================
# 5. model loading and generation


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pick_backend(cfg: Config) -> str:
    """'unsloth' or 'hf'. auto = unsloth when CUDA and unsloth are both there, else hf.

    --backend unsloth also runs without CUDA, on unsloth's CPU backend (CI tests it), when vLLM is
    off (--fast_inference false); vLLM needs a GPU.
    """
    import importlib.util

    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if cfg.backend == "hf":
        return "hf"
    if cfg.backend == "unsloth":
        if cfg.fast_inference and not cuda_available():
            raise UserError("--backend unsloth with --fast_inference true (vLLM) needs a CUDA GPU; on this machine add "
                            "--fast_inference false (unsloth's CPU backend) or use --backend hf")
        if not has_unsloth:
            raise UserError("--backend unsloth needs unsloth: pip install -r requirements.txt (the GPU set), or on a CPU "
                            "pip install --no-deps -r requirements-unsloth-cpu.txt; or use --backend hf")
    elif not (cuda_available() and has_unsloth):
        return "hf"
    if cfg.fast_inference and importlib.util.find_spec("vllm") is None:
        raise UserError("--fast_inference true needs vllm (pip install -r requirements.txt), or pass --fast_inference false")
    if os.environ.get("UNSLOTH_ALLOW_CPU", "0") not in ("", "0"):
        raise UserError("UNSLOTH_ALLOW_CPU is set: it makes unsloth pretend to have CUDA and breaks model loading; unset it "
                        "(without a GPU sql-rlvr sets UNSLOTH_FORCE_CPU=1 itself)")
    return "unsloth"


def import_unsloth(cpu_bf16: bool = False):
    """Import unsloth; callers do it before transformers, peft and TRL, which it patches on import.

    Without CUDA it takes its CPU backend (UNSLOTH_FORCE_CPU=1), pinned to no bf16
    (UNSLOTH_CPU_BF16=0) so a run computes the same on every CPU; `cpu_bf16` only chooses the dtype
    its 16-bit merge writes (bfloat16, else float16) for --export merged.
    """
    if "unsloth" not in sys.modules and not cuda_available():
        os.environ["UNSLOTH_FORCE_CPU"] = "1"
        os.environ["UNSLOTH_CPU_BF16"] = "1" if cpu_bf16 else "0"
    import unsloth

    return unsloth


def read_adapter_config(adapter_dir: str | os.PathLike) -> dict:
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.exists() or not (Path(adapter_dir) / "adapter_model.safetensors").exists():
        raise UserError(f"no LoRA adapter at {adapter_dir} (adapter_config.json + adapter_model.safetensors)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None


def count_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_model(cfg: Config, backend: str, adapter: str | os.PathLike | None = None, *,
               trainable: bool = True, fast_inference: bool = False, dtype: str | None = None):
    """(model, tokenizer) with LoRA: a new adapter (adapter=None, trainable), or the saved one.

    With `trainable`, the adapter's weights get gradients: a GRPO run on top of the SFT adapter that
    trained nothing (adapter loaded frozen) is the most reported silent failure, so this is checked.
    unsloth, when chosen, is imported here, before transformers, peft and TRL are. `dtype` (unsloth on
    CUDA): the weights' dtype, by default unsloth's choice; on CPU always float32.
    """
    if backend == "unsloth":
        import_unsloth()  # before transformers, peft and TRL, which it patches on import
    import transformers

    if cfg.torch_threads > 0:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    transformers.set_seed(cfg.seed)  # the LoRA initialisation is part of the run: same seed, same run
    name = resolve_model_name(cfg.model_name)
    lora = dict(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules))
    if adapter is not None:
        saved = read_adapter_config(adapter)
        lora = dict(r=saved["r"], lora_alpha=saved["lora_alpha"], lora_dropout=saved.get("lora_dropout", 0.0),
                    target_modules=sorted(saved["target_modules"]) if isinstance(saved["target_modules"], list)
                    else saved["target_modules"])
    if backend == "unsloth":
        model, tokenizer = _load_unsloth(cfg, name, lora, adapter, trainable, fast_inference, dtype)
    else:
        model, tokenizer = _load_hf(cfg, name, lora, adapter, trainable)
    if trainable and count_trainable(model) == 0:
        raise UserError("the LoRA adapter has no trainable parameters: training would change nothing")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _load_unsloth(cfg: Config, name: str, lora: dict, adapter, trainable: bool, fast_inference: bool,
                  dtype: str | None = None):
    import torch
    from unsloth import FastLanguageModel  # must come before transformers / peft / trl

    # CPU: float32, as the hf backend, whatever the CPU supports (unsloth would pick bf16 where it is native).
    weights_dtype = getattr(torch, dtype) if dtype else None
    if not torch.cuda.is_available():
        weights_dtype = torch.float32
    try:
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=name, max_seq_length=cfg.max_seq_length, load_in_4bit=cfg.load_in_4bit, dtype=weights_dtype,
            fast_inference=fast_inference, gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_lora_rank=lora["r"], random_state=cfg.seed,
        )
    except OSError as exc:
        raise UserError(f"cannot load model {name!r}: {exc}. Log in (HF_TOKEN in .env) or pass a local folder "
                        "with --model_name") from None
    if adapter is None and not trainable:
        FastLanguageModel.for_inference(model)
        return model, tokenizer  # the base model alone
    model = FastLanguageModel.get_peft_model(
        model, r=lora["r"], lora_alpha=lora["lora_alpha"], lora_dropout=lora["lora_dropout"],
        target_modules=lora["target_modules"], bias="none", random_state=cfg.seed,
        use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False,
    )
    if adapter is not None:
        # Same LoRA shape as the saved adapter (read from its config), then its weights: trainable by construction.
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        result = set_peft_model_state_dict(model, load_file(str(Path(adapter) / "adapter_model.safetensors")))
        if getattr(result, "unexpected_keys", None):
            raise UserError(f"adapter {adapter} does not fit {name}: unexpected weights {result.unexpected_keys[:3]}")
    if not trainable:
        FastLanguageModel.for_inference(model)
    return model, tokenizer


def _load_hf(cfg: Config, name: str, lora: dict, adapter, trainable: bool):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    on_cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except OSError as exc:
        raise UserError(f"cannot load model {name!r}: {str(exc).splitlines()[0]} "
                        "(no network? download it first, or pass a local folder with --model_name)") from None
    if on_cuda:
        model.to("cuda")
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    elif trainable:
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", bias="none", **lora))
    # else: the base model alone (evaluate.py --adapter none)
    if not trainable:
        model.eval()
    return model, tokenizer


def stop_token_ids(model, tokenizer) -> list[int]:
    """The tokens that end the model's turn: its generation config's eos_token_id (an int or a list:
    Llama 3's <|eot_id|>, Gemma's <end_of_turn>, Phi-3's <|end|>), plus the tokenizer's eos."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _answer_text(tokenizer, ids, stop: list[int]) -> str:
    """Decode generated ids up to the first stop token (which may be a non-special token, e.g. Phi-3's)."""
    ids = list(ids)
    cut = next((i for i, t in enumerate(ids) if t in stop), len(ids))
    return tokenizer.decode(ids[:cut], skip_special_tokens=True)


def generate(model, tokenizer, prompts: list[str], backend: str, *, adapter_dir: str | os.PathLike | None,
             max_new_tokens: int, temperature: float = 0.0, batch_size: int = 16,
             progress: bool = True, num_return_sequences: int = 1, top_p: float = 1.0,
             seed: int | None = None, fast_inference: bool = True) -> list[str]:
    """Answers for rendered prompts, always with the adapter when there is one.

    unsloth with fast_inference: vLLM batched generation with the adapter's lora_request (without it
    vLLM silently uses the base model). Otherwise the (PEFT) model itself, batched `generate` with
    left padding; on unsloth after `for_inference` (its generation mode: KV cache on).
    num_return_sequences=n > 1 (sampling, temperature > 0): n answers per prompt, prompt-major (the
    answers of prompt i are [i*n, (i+1)*n)); top_p and seed apply to sampling.
    """
    n = num_return_sequences
    if not prompts:  # every prompt over the length limit: nothing to generate (a tokenizer call on [] raises)
        return []
    if backend == "unsloth" and fast_inference:
        from vllm import SamplingParams

        lora_request = model.load_lora(str(adapter_dir)) if adapter_dir is not None else None
        if adapter_dir is not None and lora_request is None:
            raise UserError(f"vLLM could not load the adapter {adapter_dir}")
        stop = stop_token_ids(model, tokenizer)
        params = SamplingParams(temperature=temperature, max_tokens=max_new_tokens, n=n, top_p=top_p, seed=seed,
                                stop_token_ids=stop)
        # Token ids, as the hf path and TRL's vLLM rollouts pass them: vLLM tokenizes a text prompt with
        # add_special_tokens=True, which puts a second BOS before templates that open with one (Llama 3, Gemma).
        token_prompts = [{"prompt_token_ids": ids} for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        outputs = model.fast_generate(token_prompts, sampling_params=params, lora_request=lora_request)
        return [_answer_text(tokenizer, o.token_ids, stop) for out in outputs for o in out.outputs[:n]]

    import torch
    from tqdm.auto import tqdm

    if backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
    if adapter_dir is not None and not hasattr(model, "peft_config"):
        raise UserError("generation was asked for an adapter, but the model has none loaded")
    tokenizer.padding_side = "left"
    stop = stop_token_ids(model, tokenizer)  # the model's own end-of-turn tokens, not only tokenizer.eos
    device = next(model.parameters()).device
    answers: list[str] = []
    if seed is not None:
        torch.manual_seed(seed)
    batch_size = max(1, batch_size // n)  # n sequences per prompt: about the same rows per forward pass
    batches = range(0, len(prompts), batch_size)
    for start in tqdm(batches, desc="generating", unit="batch", disable=not progress):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(device)
        # Sampling from temperature and top_p alone, as vLLM does with its SamplingParams: never the top_k/top_p
        # of the model's generation config (Qwen3-4B-Instruct-2507 ships top_k 20, top_p 0.8).
        sampling = (dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0, num_return_sequences=n)
                    if temperature > 0 else dict(do_sample=False))
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=stop, **sampling)
        new_tokens = out[:, batch["input_ids"].shape[1]:]
        answers.extend(_answer_text(tokenizer, row, stop) for row in new_tokens.tolist())
    return answers


def world_size() -> int:
    """Processes in this run (accelerate/torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def bf16_supported() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def metrics_callback(path: Path, resume: bool = False):
    """A TrainerCallback writing each log line (loss, lr, rewards, outcome fractions) to metrics.jsonl."""
    from transformers import TrainerCallback

    class MetricsJsonl(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                path.parent.mkdir(parents=True, exist_ok=True)
                if not resume:
                    path.write_text("")
                else:  # the steps after the checkpoint are trained again: drop their old lines
                    kept = [r for r in read_metrics(path) if r.get("step", 0) <= state.global_step]
                    tmp = path.with_name(path.name + ".tmp")
                    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
                    os.replace(tmp, path)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                with open(path, "a") as fh:
                    fh.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    return MetricsJsonl()


def readable_progress(trainer, stage: str, keys: tuple[str, ...] = ()) -> None:
    """A progress bar and, every few log steps, one compact line of `keys`, instead of transformers
    printing each whole log dict (200 lines in the smoke SFT). metrics.jsonl still gets every log."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class CompactProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not keys or not state.is_world_process_zero or not logs or "train_runtime" in logs:
                return
            every = state.logging_steps * max(1, -(-state.max_steps // (state.logging_steps * 20)))  # ~20 lines a run
            step = state.global_step
            if step % every and step > state.logging_steps and step != state.max_steps:
                return
            shown = "  ".join(f"{k} {logs[k]:.4g}" for k in keys if isinstance(logs.get(k), (int, float)))
            line = f"[{stage}] step {step}/{state.max_steps}  {shown}"
            if self.training_bar is not None:
                self.training_bar.write(line)  # above the bar
            else:
                print(line)

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(CompactProgress())


SUMMARY_KEYS = {"sft": {"loss": "loss", "mean_token_accuracy": "token accuracy"}, "grpo": {"reward": "reward mean"}}


def training_summary(stage: str, path: Path, steps: int, seconds: float, extra: tuple[str, ...] = ()) -> str:
    """What shows a stage worked, from its metrics.jsonl: first -> last of its key numbers (SFT loss and
    token accuracy; GRPO reward mean and the outcome mix), and the files written."""
    rows = [r for r in read_metrics(path / "metrics.jsonl") if "train_runtime" not in r]
    parts = [f"{steps} steps in {seconds:.0f} s"]
    for key, label in SUMMARY_KEYS.get(stage, {}).items():
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if points:
            (s0, v0), (s1, v1) = points[0], points[-1]
            parts.append(f"{label} {v0:.4g} (step {s0}) -> {v1:.4g} (step {s1})")
    mix = {}
    for outcome in OUTCOMES:
        values = [v for r in rows for k, v in r.items() if k.endswith(f"outcome/{outcome}") and isinstance(v, (int, float))]
        if values:
            mix[outcome] = sum(values) / len(values)
    if mix:
        parts.append("answers over the run: " + ", ".join(f"{o} {f:.0%}" for o, f in mix.items()))
    parts.extend(extra)
    written = [p.name for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
    return f"[{stage}] done: " + "; ".join(parts) + f"\n[{stage}] wrote {path}: {', '.join(written)}"


def read_metrics(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


PLOTS = {
    "sft": [("loss", ["loss"]), ("learning rate", ["learning_rate"])],
    "grpo": [("reward", ["reward", "reward_std"]),
             ("outcomes", [f"outcome/{o}" for o in OUTCOMES] + ["outcome/parse_fail", "outcome/timeout"]),
             ("completion length", ["completions/mean_length"]), ("KL", ["kl"]),
             ("dev EX (greedy, --eval_steps)", ["eval/ex"])],
}


def plot_metrics(metrics_path: Path, png_path: Path, stage: str) -> None:
    """Training curves as a PNG (headless matplotlib); panels without data are left out. Rank 0 only."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    rows = [r for r in read_metrics(metrics_path) if "train_runtime" not in r]
    panels = [(title, [k for k in keys if any(k in r for r in rows)]) for title, keys in PLOTS[stage]]
    panels = [(title, keys) for title, keys in panels if keys]
    if not panels:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), label=key.split("/")[-1], marker="." if len(points) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"{stage} {metrics_path.parent}")
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)


def export_merged(cfg: Config, backend: str, adapter: Path, out: Path, chats: list[list[dict]],
                  dtype: str = "bfloat16") -> dict:
    """Merge a LoRA adapter into its base and save a 16-bit checkpoint loadable without peft.

    The merge happens on an unquantized base (merging into a 4-bit base is the usual cause of a
    merged model worse than its adapter; --load_in_4bit is ignored here), then the weights are cast
    to `dtype`. The merged model, reloaded from disk, must give the adapter model's greedy answers on `chats`.
    unsloth: its `save_pretrained_merged`, which writes 16-bit weights only.
    """
    if backend == "unsloth":
        if dtype == "float32":
            raise UserError("--export_dtype float32 is not available on the unsloth backend (save_pretrained_merged "
                            "writes 16-bit weights): use bfloat16 or float16, or --backend hf for float32")
        import_unsloth(cpu_bf16=dtype == "bfloat16")  # before transformers and peft, below
    import dataclasses
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if backend == "unsloth":
        model, tokenizer = load_model(dataclasses.replace(cfg, load_in_4bit=False), backend, adapter=adapter,
                                      trainable=False, dtype=dtype)
        model.save_pretrained_merged(str(out), tokenizer, save_method="merged_16bit")
        del model
        saved = json.loads((out / "config.json").read_text())
        if str(saved.get("dtype") or saved.get("torch_dtype")) != dtype:
            # unsloth writes the model's own 16-bit dtype; the user asked for another one. Written beside, then
            # moved in: the loaded tensors may still be mapped from the files they would overwrite.
            cast_dir = out.with_name(out.name + ".cast")
            shutil.rmtree(cast_dir, ignore_errors=True)
            AutoModelForCausalLM.from_pretrained(str(out), dtype=getattr(torch, dtype)).save_pretrained(str(cast_dir))
            for stale in out.glob("model*.safetensors*"):
                stale.unlink()
            for path in cast_dir.iterdir():
                os.replace(path, out / path.name)
            cast_dir.rmdir()
    else:
        from peft import PeftModel

        name = resolve_model_name(cfg.model_name)
        tokenizer = AutoTokenizer.from_pretrained(str(adapter) if (Path(adapter) / "tokenizer.json").exists() else name)
        base = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
        merged.to(getattr(torch, dtype)).save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
    # Compare in the dtype the merged weights were saved in, on both sides.
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    prompts = [render_prompt(tokenizer, chat) for chat in chats]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reloaded = AutoModelForCausalLM.from_pretrained(str(out), dtype=getattr(torch, dtype)).to(device)
    merged_answers = generate(reloaded, tokenizer, prompts, "hf", adapter_dir=None, max_new_tokens=32, progress=False)
    del reloaded
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(resolve_model_name(cfg.model_name), dtype=getattr(torch, dtype)).to(device)
    with_adapter = PeftModel.from_pretrained(base, str(adapter))
    adapter_answers = generate(with_adapter, tokenizer, prompts, "hf", adapter_dir=adapter, max_new_tokens=32, progress=False)
    info = {"base_model": cfg.model_name, "adapter": str(adapter), "dtype": dtype, "checked_prompts": len(prompts),
            "agreeing_prompts": sum(a == b for a, b in zip(merged_answers, adapter_answers)),
            "merged_answers": merged_answers, "adapter_answers": adapter_answers}
    (out / "export_info.json").write_text(json.dumps(info, indent=2))
    return info


def memory_probe(trainer, index: int, batch_size: int, backend: str = "hf") -> None:
    """One forward and backward pass on a full batch of one (the longest) training example; gradients
    are cleared after, so training is unchanged. Raises a clear error when it does not fit.

    It runs in the mode `train()` will use: unsloth's SFTTrainer init ends in `for_inference`, which
    turns gradient checkpointing off; `for_training` turns it back on, as `train()` itself does."""
    import torch

    model = trainer.model
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_training(model)
    batch = trainer.data_collator([trainer.train_dataset[index]] * batch_size)
    device = next(model.parameters()).device
    # Only the model's own inputs: a collator may add bookkeeping keys the forward does not take.
    inputs = ("input_ids", "attention_mask", "position_ids", "labels")
    batch = {k: v.to(device) for k, v in batch.items() if k in inputs}
    try:
        model.train()
        loss = model(**batch).loss
        loss.backward()
    except torch.cuda.OutOfMemoryError:
        raise UserError(f"the longest training example does not fit in GPU memory at --sft_batch_size {batch_size}: "
                        "lower it (and raise --sft_grad_accum), or --max_seq_length, or use --load_in_4bit") from None
    finally:
        model.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def effective_trainer_args(trainer, names: Iterable[str]) -> dict:
    """The built trainer's own arguments (after unsloth and TRL have had their say), for run_info.json."""
    values = {}
    for name in names:
        value = getattr(trainer.args, name, None)
        values[name] = getattr(value, "value", value)  # enums (optim, lr_scheduler_type) as their names
    return values


def prompt_lengths(tokenizer, prompts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]


def length_report(lengths: list[int]) -> str:
    if not lengths:
        return "no prompts"
    ordered = sorted(lengths)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"{len(ordered)} prompts, tokens: median {ordered[len(ordered) // 2]}, p99 {p99}, max {ordered[-1]}"


def report_to(cfg: Config) -> list[str]:
    """wandb only when a key is set (in the environment or .env); otherwise no reporting at all."""
    if not os.environ.get("WANDB_API_KEY"):
        return []
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        print("warning: WANDB_API_KEY is set but wandb is not installed (pip install wandb); not logging to wandb",
              file=sys.stderr)
        return []
    os.environ.setdefault("WANDB_PROJECT", cfg.wandb_project)
    return ["wandb"]


RUN_FILE = "sql_rlvr_run.json"  # a run's id and run-defining config: in its stage folder and in each checkpoint
_STAGE_SCRIPTS = {"sft": "train_sft.py", "grpo": "train_grpo.py"}


def complete_checkpoints(path: Path) -> list[Path]:
    """checkpoint-N folders, oldest first, whose trainer_state.json (written after the weights and the
    optimizer state) exists: a run killed while saving leaves a partial one, which is skipped."""
    return sorted((p for p in Path(path).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
                   and (p / "trainer_state.json").exists()), key=lambda p: int(p.name.split("-")[-1]))


def _read_json_or_empty(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _config_changes(old: dict, new: dict) -> list[str]:
    """'field: old -> new' for each run-defining field that differs (JSON round trip: lists, floats)."""
    new = json.loads(json.dumps(new, default=str))
    return [f"{k}: {old.get(k, 'unset')} -> {new.get(k, 'unset')}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def _clear_stage(path: Path, finished_marker: str) -> list[str]:
    """Delete what an earlier run left in its stage folder, and nothing else: the finished marker first
    (a half-cleared folder never looks finished), the adapter, checkpoints, metrics, curves, run file,
    and GRPO's completion log (completions/, TRL's parquet files)."""
    removed = []
    for name in (finished_marker, f".{finished_marker}.tmp", "adapter_model.safetensors", "adapter_config.json",
                 "metrics.jsonl", "curves.png", RUN_FILE):
        if (path / name).is_file():
            (path / name).unlink()
            removed.append(name)
    import shutil

    for checkpoint in sorted(path.glob("checkpoint-*")):
        if checkpoint.is_dir() and checkpoint.name.split("-")[-1].isdigit():
            shutil.rmtree(checkpoint)
            removed.append(checkpoint.name)
    if (path / "completions").is_dir():
        shutil.rmtree(path / "completions")
        removed.append("completions/")
    return removed


def prepare_output_dir(path: Path, cfg: Config, finished_marker: str, inputs: dict | None = None) -> str | None:
    """How a training stage starts in `path`: returns the checkpoint to resume from, or None for a new run.

    - finished (marker present): --overwrite redoes it; --resume says it is done (StageFinished: exit 0);
      neither: error.
    - --overwrite: the earlier run's checkpoints, metrics.jsonl, marker and adapter are deleted first.
    - --resume: the newest complete checkpoint, refused (one line) unless it belongs to this folder's run
      and was trained under the same run-defining config (config.run_defining_config plus `inputs`,
      e.g. GRPO's SFT adapter hash). A run stopped before its first checkpoint: error, rerun without
      --resume; a stage never started: a new run.
    - checkpoints and neither flag: error (never silently restart at step 1).
    A new run gets a run id in <path>/sql_rlvr_run.json; run_identity_callback copies it into each checkpoint.
    """
    from config import run_defining_config

    stage = path.name
    identity = {**run_defining_config(cfg, _STAGE_SCRIPTS.get(stage, "")), **(inputs or {})}
    rank0 = int(os.environ.get("RANK", "0")) == 0
    checkpoints = complete_checkpoints(path)
    marker = path / finished_marker
    _ACTIVE_STAGE.update(path=path, save_steps=cfg.save_steps)
    if marker.exists() and not cfg.overwrite:
        if cfg.resume:
            info = _read_json_or_empty(marker)
            stale = [k for k, v in (inputs or {}).items() if k in info and info[k] != v]
            if stale:  # e.g. GRPO finished from an SFT adapter that has since been retrained
                raise UserError(f"{path} is finished but was trained from another SFT adapter ({stale[0]} "
                                f"{str(info[stale[0]])[:12]}, now {str(inputs[stale[0]])[:12]}): pass --overwrite "
                                "to train it again from the current one")
            changed = _config_changes({k: v for k, v in info.get("config", {}).items() if k in identity},
                                      {k: v for k, v in identity.items() if k in info.get("config", {})})
            note = f" (this command's settings differ: {'; '.join(changed)})" if changed else ""
            raise StageFinished(f"[{stage}] {path} is already finished: {info.get('global_step', '?')} steps "
                                f"({marker.name}); nothing to resume{note}. Pass --overwrite to train it again.")
        raise UserError(f"{path} already holds a finished adapter; pass --overwrite to replace it, "
                        "or choose another --output_dir")
    if cfg.resume and checkpoints:
        return _resumable(path, checkpoints[-1], identity, rank0)
    if cfg.resume and ((path / RUN_FILE).exists() or (path / "metrics.jsonl").exists()):
        raise UserError(f"--resume: the run in {path} stopped before its first checkpoint (every --save_steps "
                        f"{cfg.save_steps} steps), so there is nothing to resume; rerun without --resume to start again")
    if checkpoints and not cfg.overwrite:
        raise UserError(f"{path} has checkpoints of an unfinished run ({checkpoints[-1].name}); pass --resume to "
                        "continue it or --overwrite to start again")
    if rank0:  # one process writes; the others only read (accelerate launch)
        removed = _clear_stage(path, finished_marker) if path.is_dir() else []
        if removed and cfg.overwrite:
            print(f"[{stage}] --overwrite: removed the earlier run's {', '.join(removed)} from {path}")
        if cfg.resume:
            print(f"[{stage}] --resume: no run to resume in {path}; starting a new one")
        path.mkdir(parents=True, exist_ok=True)
        import uuid

        run = {"run_id": uuid.uuid4().hex, "stage": stage, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "config_hash": hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16],
               "config": identity}
        (path / RUN_FILE).write_text(json.dumps(run, indent=2, default=str))
    return None


def _resumable(path: Path, checkpoint: Path, identity: dict, rank0: bool) -> str:
    """`checkpoint` if it belongs to the run of `path` and to this config; else a one-line refusal."""
    run = _read_json_or_empty(path / RUN_FILE)
    mark = _read_json_or_empty(checkpoint / RUN_FILE)
    if not mark.get("run_id"):
        raise UserError(f"--resume: {checkpoint} does not say which run wrote it (no {RUN_FILE}; an older "
                        "sql-rlvr?): pass --overwrite to start again")
    if run.get("run_id") and mark["run_id"] != run["run_id"]:
        raise UserError(f"--resume: {checkpoint.name} belongs to another run (run id {mark['run_id'][:8]}, not "
                        f"{run['run_id'][:8]} of {path / RUN_FILE}): pass --overwrite to start again")
    # Only what defines a run in this version: a field retired from the identity since never blocks resuming.
    changed = _config_changes({k: v for k, v in mark.get("config", {}).items() if k in identity}, identity)
    if changed:
        raise UserError(f"--resume: {checkpoint.name} was trained with other settings ({'; '.join(changed)}): "
                        "rerun with the checkpoint's settings, or pass --overwrite to start again")
    state = _read_json_or_empty(checkpoint / "trainer_state.json")
    if rank0:
        if not run:  # keep the run file: the checkpoints saved from here on carry the same run id
            (path / RUN_FILE).write_text(json.dumps({k: v for k, v in mark.items() if k != "step"}, indent=2))
        print(f"[{path.name}] resuming from {checkpoint.name} (step {state.get('global_step', '?')} of "
              f"{state.get('max_steps', '?')})")
    return str(checkpoint)


def run_identity_callback(path: Path):
    """A TrainerCallback that writes the run file of stage folder `path` into each checkpoint-N.

    It writes when the trainer is about to save (on_step_end with should_save, after transformers'
    DefaultFlowCallback set it), before the checkpoint's own files: a complete checkpoint
    (trainer_state.json present) always carries its run's id.
    """
    from transformers import TrainerCallback

    class RunIdentity(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save and state.is_world_process_zero:
                run = _read_json_or_empty(path / RUN_FILE)
                checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                checkpoint.mkdir(parents=True, exist_ok=True)
                (checkpoint / RUN_FILE).write_text(json.dumps({**run, "step": state.global_step}, indent=2, default=str))

    return RunIdentity()


def save_adapter(trainer, path: Path, info: dict, check: Callable[[Path], None] | None = None) -> None:
    """Save adapter + tokenizer, then the `run_info.json` marker last: its presence means 'finished'.

    `check(path)` runs on the saved adapter before the marker is written (rank 0); raising there leaves
    the run unfinished (train_grpo.py refuses an adapter identical to the SFT one this way).
    """
    if trainer.is_world_process_zero():  # the adapter is about to change: an old marker would vouch for it
        (path / "run_info.json").unlink(missing_ok=True)
    trainer.save_model(str(path))  # collective under DeepSpeed/FSDP: every process calls it
    if not trainer.is_world_process_zero():
        return
    tokenizer = getattr(trainer, "processing_class", None)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
    if check is not None:
        check(path)
    tmp = path / ".run_info.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, default=str))
    os.replace(tmp, path / "run_info.json")


# ======================================================================
# 6. safe execution of untrusted SQL

MAX_RESULT_ROWS = 100_000  # more rows than any Spider gold result; a runaway SELECT stops here
MAX_RESULT_BYTES = 64 * 2**20  # text/blob bytes held for one result
# SQLite's own limit on one string or blob (SQLITE_LIMIT_LENGTH). It bounds the work of one function
# call, which no progress handler can interrupt: instr/replace/trim cost up to length x length.
# Under the former 1 MiB one trim(x, y) ran 222 s; the longest value in Spider's dev databases is 60 bytes.
MAX_VALUE_BYTES = 100_000
# Further SQLite limits (Connection.setlimit) that bound the work a query can ask for, far above what
# any Spider or BIRD query uses (LIKE patterns of a few words, a few arguments, a few UNIONs).
_SQLITE_LIMITS = {
    "SQLITE_LIMIT_LENGTH": MAX_VALUE_BYTES,
    "SQLITE_LIMIT_LIKE_PATTERN_LENGTH": 500,  # a LIKE/GLOB costs value length x pattern length
    "SQLITE_LIMIT_SQL_LENGTH": 20_000,
    "SQLITE_LIMIT_EXPR_DEPTH": 100,
    "SQLITE_LIMIT_COMPOUND_SELECT": 50,
    "SQLITE_LIMIT_FUNCTION_ARG": 32,
    "SQLITE_LIMIT_ATTACHED": 0,  # no ATTACH, and no VACUUM INTO (it attaches)
}
SQLITE_HEAP_LIMIT = 1 << 30  # PRAGMA hard_heap_limit: sorts and CTEs of a runaway query fail instead of eating RAM

# Authorizer action codes that only read (sqlite3 module constants). Everything else is denied:
# INSERT/UPDATE/DELETE, CREATE/DROP/ALTER, ATTACH/DETACH, PRAGMA, transactions, ANALYZE, ...
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
# Functions that only serve to stall: printf/format pad one character at a time inside a single VM
# step that no progress handler can interrupt (printf('%.*c', 2000000000, 'x') runs for seconds);
# randomblob/zeroblob make a value of any size from one number (the raw material of a slow instr or
# LIKE). No Spider dev gold query uses any of them (only count/avg/max/sum/min).
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "printf", "format",
                     "randomblob", "zeroblob"}
# Only queries: the authorizer denies writes, and this also turns away REINDEX, VACUUM and friends,
# which it never sees.
_QUERY_START = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*(?:SELECT|WITH|VALUES|\()", re.I | re.S)


def _authorizer(action: int, arg1, arg2, _db, _trigger) -> int:
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


@dataclass
class ExecResult:
    """Rows of a query, or why there are none. kind: ok | error | refused | timeout | too_large."""

    rows: list[tuple] | None
    kind: str = "ok"
    error: str | None = None
    seconds: float = 0.0  # how long it ran
    limit: float = 0.0  # the time limit it ran under
    lossy_text: bool = False  # some text was not UTF-8 and was read with those bytes dropped (BIRD counts it an error)

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


class _Deadline:
    """Progress handler: SQLite calls it every few thousand VM steps; non-zero aborts the query."""

    def __init__(self) -> None:
        self.at = 0.0

    def __call__(self) -> int:
        return 1 if time.monotonic() > self.at else 0


_local = threading.local()


def _connection(db_path: str) -> tuple[sqlite3.Connection, _Deadline]:
    """A read-only connection per (process, thread, database), reused: opening one costs more than most Spider queries."""
    cache = getattr(_local, "conns", None)
    if cache is None or getattr(_local, "pid", None) != os.getpid():
        cache = _local.conns = {}
        _local.pid = os.getpid()
    if db_path not in cache:
        if not os.path.isfile(db_path):
            raise FileNotFoundError(db_path)
        if os.path.getsize(db_path) == 0:  # SQLite would open it as a database without tables: "no such table"
            raise sqlite3.DatabaseError("empty file, not a database")
        # mode=ro: no writes; immutable=1: no locks, journals or -shm files are ever created.
        uri = "file:" + urllib.parse.quote(os.path.abspath(db_path)) + "?mode=ro&immutable=1"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA temp_store = MEMORY")  # sorts never spill into temporary files
        conn.execute(f"PRAGMA hard_heap_limit = {SQLITE_HEAP_LIMIT}")
        for name, value in _SQLITE_LIMITS.items():
            conn.setlimit(getattr(sqlite3, name), value)
        conn.set_authorizer(_authorizer)
        deadline = _Deadline()
        conn.set_progress_handler(deadline, 10000)  # every 10k VM steps: well under a millisecond
        cache[db_path] = (conn, deadline)
    return cache[db_path]


def execute_sql(db_path: str | os.PathLike, sql: str, timeout_s: float = 2.0,
                max_rows: int = MAX_RESULT_ROWS) -> ExecResult:
    """Run one untrusted query read-only, within `timeout_s`, with bounded memory. Never raises for bad SQL.

    The time limit is checked between SQLite VM steps; SQLite's limits (_SQLITE_LIMITS) keep a single
    step short but not instant. Only a process can be stopped at any moment: WorkerPool does that.

    The database file is never changed and no file is created: the connection is read-only and
    immutable, an authorizer allows reads only, ATTACH is limited to zero databases, temporary
    storage is in memory, and only one statement is accepted per call.
    """
    try:
        conn, deadline = _connection(os.fspath(db_path))
    except (FileNotFoundError, sqlite3.Error) as exc:
        return ExecResult(None, "error", f"cannot open database {db_path}: {exc}")
    if not _QUERY_START.match(sql):
        return ExecResult(None, "refused", "only SELECT queries are run")
    conn.text_factory = str  # C-speed decoding; invalid UTF-8 falls back to decode_text below
    start = time.monotonic()
    try:
        result = _run_query(conn, deadline, sql, timeout_s, max_rows)
        if result.kind == "error" and "Could not decode to UTF-8" in (result.error or ""):
            conn.text_factory = decode_text
            result = _run_query(conn, deadline, sql, timeout_s, max_rows)
            result.lossy_text = result.ok
        result.seconds, result.limit = time.monotonic() - start, timeout_s
        return result
    finally:
        conn.text_factory = str


def _run_query(conn: sqlite3.Connection, deadline: _Deadline, sql: str, timeout_s: float, max_rows: int) -> ExecResult:
    deadline.at = time.monotonic() + timeout_s
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        rows: list[tuple] = []
        size = 0
        while True:
            chunk = cursor.fetchmany(1000)
            if not chunk:
                break
            rows.extend(chunk)
            if len(rows) > max_rows:
                return ExecResult(None, "too_large", f"more than {max_rows} rows")
            for row in chunk:
                for value in row:
                    if isinstance(value, (str, bytes)):
                        size += len(value)
            if size > MAX_RESULT_BYTES:
                return ExecResult(None, "too_large", f"more than {MAX_RESULT_BYTES >> 20} MiB of values")
        return ExecResult(rows)
    except sqlite3.DatabaseError as exc:
        message = str(exc)
        if time.monotonic() > deadline.at or message == "interrupted":
            return ExecResult(None, "timeout", f"over the {timeout_s:g} s limit")
        if "authoriz" in message or "too many attached" in message or "readonly" in message:
            return ExecResult(None, "refused", message)
        return ExecResult(None, "error", message)
    except (sqlite3.Warning, sqlite3.ProgrammingError, ValueError, OverflowError, MemoryError) as exc:
        # "You can only execute one statement at a time", NUL characters, huge integers...
        return ExecResult(None, "error", str(exc) or type(exc).__name__)
    finally:
        cursor.close()


class WorkerPool:
    """Worker processes with a hard time limit per item, for the reward and the scorer.

    SQLite checks its time limit between VM steps, so one function call (instr, LIKE, trim on long
    strings) runs to its end whatever the limit; SQLite's length limits keep that short, and this
    pool makes it hard. Each worker runs `fn(items, args, emit)` on a batch and emits one result per
    item as it finishes; an item still running `limit(item)` seconds after the previous result gets
    its worker killed and replaced, `on_fail(item, "timeout: ...")` as its result, and the rest of
    its batch goes on in the new worker. A worker that dies or raises is a failure: the item gets
    `on_fail(item, "worker failed: ...")`, and `max_failures` failures in a row raise a UserError
    (a broken pool would otherwise score everything as invalid without a word).
    """

    START_S = 60.0  # time a new worker process may take to start

    def __init__(self, fn: Callable, workers: int, method: str = "spawn", max_failures: int = 5) -> None:
        import multiprocessing

        self.fn, self.workers, self.max_failures = fn, max(1, workers), max_failures
        self.context = multiprocessing.get_context(method)
        self.idle: list[tuple[Any, Any]] = []  # (process, connection) waiting for work
        self.timeouts = 0  # workers killed at the hard limit
        self.failures = 0  # workers that died or raised
        self.failures_in_a_row = 0

    def _start(self) -> tuple[Any, Any]:
        import signal

        parent, child = self.context.Pipe()
        process = self.context.Process(target=_pool_worker, args=(child, self.fn), daemon=True)
        # Ctrl-C goes to the whole process group: the workers ignore it (inherited through spawn's exec
        # too) and the parent shuts them down, with no "Process SpawnProcess-N:" traceback.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            process.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        child.close()
        return process, parent

    @staticmethod
    def _stop(worker: tuple[Any, Any]) -> None:
        process, conn = worker
        process.kill()
        process.join(5)
        conn.close()

    def _failed(self, item: Any, error: str, on_fail: Callable[[Any, str], Any], timeout: bool) -> Any:
        if timeout:
            self.timeouts += 1
        else:
            self.failures += 1
            self.failures_in_a_row += 1
            if self.failures_in_a_row >= self.max_failures:
                self.close()
                raise UserError(f"{self.failures_in_a_row} SQL worker processes failed in a row (last: {error}); "
                                "stopping rather than scoring every answer as invalid")
        return on_fail(item, error)

    @staticmethod
    def _deadline(state: list, limit: Callable[[Any], float]) -> float:
        items, done, since = state[2], state[3], state[4]
        return since + (limit(items[done]) if done < len(items) else 10.0)  # all results in, "done" on its way

    def run(self, batches: list[list], args: Any, limit: Callable[[Any], float],
            on_fail: Callable[[Any, str], Any]) -> list[list]:
        """The results of each batch, in order (a result per item)."""
        from multiprocessing.connection import wait

        results: list[list] = [[] for _ in batches]
        pending = [(b, batch) for b, batch in enumerate(batches) if batch]  # (batch index, items not yet sent)
        busy: dict[Any, list] = {}  # connection -> [worker, batch index, items, results so far, time of last result]
        try:
            while pending or busy:
                while pending and len(busy) < self.workers:
                    b, items = pending.pop(0)
                    fresh = not self.idle
                    worker = self.idle.pop() if self.idle else self._start()
                    try:
                        worker[1].send((items, args))
                    except (OSError, ValueError) as exc:  # a dead idle worker
                        self._stop(worker)
                        results[b].append(self._failed(items[0], f"worker failed: {exc}", on_fail, False))
                        if items[1:]:
                            pending.insert(0, (b, items[1:]))
                        continue
                    # A new worker's clock starts when it says it is ready (imports take a second or two).
                    busy[worker[1]] = [worker, b, items, 0, time.monotonic() + (self.START_S if fresh else 0.0)]
                now = time.monotonic()
                next_deadline = min(self._deadline(state, limit) for state in busy.values())
                for conn in wait(list(busy), timeout=max(0.0, next_deadline - now)):
                    state = busy[conn]
                    try:
                        kind, payload = conn.recv()
                    except (EOFError, OSError) as exc:  # the worker died (killed, out of memory, crashed)
                        kind, payload = "error", f"worker died ({type(exc).__name__}, exit code {state[0][0].exitcode})"
                    if kind == "ready":
                        state[4] = time.monotonic()
                    elif kind == "result":
                        results[state[1]].append(payload)
                        state[3] += 1
                        state[4] = time.monotonic()
                        self.failures_in_a_row = 0
                    elif kind == "done":
                        del busy[conn]
                        self.idle.append(state[0])
                    elif kind == "user_error":
                        raise UserError(payload)
                    else:  # the item in progress failed: replace the worker, go on with the rest of the batch
                        del busy[conn]
                        self._stop(state[0])
                        worker_, b, items, done, _ = state
                        results[b].append(self._failed(items[done], f"worker failed: {payload}", on_fail, False))
                        if items[done + 1:]:
                            pending.insert(0, (b, items[done + 1:]))
                now = time.monotonic()
                for conn, state in list(busy.items()):
                    worker_, b, items, done, _ = state
                    if now <= self._deadline(state, limit):
                        continue
                    del busy[conn]
                    self._stop(worker_)
                    if done < len(items):  # stalled inside one SQLite call: only a kill stops it
                        error = f"timeout: over the hard limit of {limit(items[done]):g} s (worker stopped)"
                        results[b].append(self._failed(items[done], error, on_fail, True))
                        if items[done + 1:]:
                            pending.insert(0, (b, items[done + 1:]))
        except BaseException:
            for state in busy.values():  # interrupted (Ctrl-C) or a UserError: stop what is running, quietly
                self._stop(state[0])
            raise
        return results

    def close(self) -> None:
        for worker in self.idle:
            try:
                worker[1].send(None)  # exit cleanly; killed below if it does not
                worker[0].join(1)
            except OSError:
                pass
            self._stop(worker)
        self.idle = []


def _pool_worker(conn: Any, fn: Callable) -> None:
    """A WorkerPool process: run fn(items, args, emit) on each batch the parent sends."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        items, args = message
        try:
            fn(items, args, lambda result: conn.send(("result", result)))
            conn.send(("done", None))
        except UserError as exc:
            conn.send(("user_error", str(exc)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


# ======================================================================
# 7. result comparison (the official evaluator's rules) and the reward


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


def result_f1(gold: list[tuple], pred: list[tuple]) -> float:
    """F1 of predicted vs gold rows as multisets, each row's values taken in any column order.

    precision = |pred ∩ gold| / |pred|, recall = |pred ∩ gold| / |gold| (multiset intersection);
    0 when either side is empty or nothing overlaps.
    """
    if not gold or not pred:
        return 0.0
    g = collections.Counter(_unorder_row(r) for r in gold)
    p = collections.Counter(_unorder_row(r) for r in pred)
    overlap = sum((g & p).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


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


def match_rule(name: str = "spider"):
    """The benchmark's result comparison by name ("spider" | "bird"): benchmarks.MatchRule."""
    import benchmarks

    return benchmarks.MATCH_RULES[name]


@dataclass
class RewardValues:
    exact: float = 5.0
    invalid: float = -1.0
    empty: float = -2.0
    partial_max: float = 2.5

    @classmethod
    def from_config(cls, cfg: Config) -> "RewardValues":
        return cls(cfg.reward_exact, cfg.reward_invalid, cfg.reward_empty, cfg.reward_partial_max)


def judge_prediction(pred_sql: str, gold_sql: str, gold: ExecResult, db_path: str | os.PathLike,
                     timeout_s: float, rule: str = "spider") -> tuple[str, float, str | None]:
    """Execute a prediction and compare it with an executed gold: (outcome, F1, error).

    outcome is match / partial / wrong / invalid (no SQL, error, refusal, timeout). The comparison
    is the official evaluator's of the benchmark (`rule`), so reward and metric can never disagree on a match.
    """
    if not pred_sql.strip():
        return "invalid", 0.0, "no SQL"
    comparison = match_rule(rule)
    result = execute_sql(db_path, comparison.prepare(pred_sql, True), timeout_s)
    if not result.ok:
        return "invalid", 0.0, f"{result.kind}: {result.error}"
    if comparison.result_error(result):
        return "invalid", 0.0, comparison.result_error(result)
    assert gold.rows is not None
    if not comparison.result_error(gold) and comparison.rows_match(gold.rows, result.rows, order_matters(gold_sql)):
        return "match", 1.0, None
    f1 = result_f1(gold.rows, result.rows)
    return ("partial" if f1 > 0 else "wrong"), f1, None


GOLD_TIMEOUT_S = 30.0  # time limit of a gold query (at least the predictions' own)


def execute_gold(db_path: str | os.PathLike, gold_sql: str, timeout_s: float, rule: str = "spider") -> ExecResult:
    # Gold gets a generous limit: a slow gold query is the dataset's cost, not the model's fault.
    return execute_sql(db_path, match_rule(rule).prepare(gold_sql, False), max(timeout_s, GOLD_TIMEOUT_S))


def score_completion(completion: str, gold_sql: str, db_path: str | os.PathLike, *,
                     gold: ExecResult | None = None, timeout_s: float = 2.0,
                     values: RewardValues = RewardValues(), rule: str = "spider") -> tuple[float, str, str | None]:
    """(reward, outcome, error) for one raw model answer under the benchmark's match rule. See sql_reward."""
    if not completion or not completion.strip():
        return values.empty, "empty", "empty answer"
    if gold is None:
        gold = execute_gold(db_path, gold_sql, timeout_s, rule)
    if not gold.ok:
        raise UserError(f"gold query fails on {db_path}: {gold.error}: {gold_sql[:200]}")
    sql = extract_sql(completion)
    outcome, f1, error = judge_prediction(sql, gold_sql, gold, db_path, timeout_s, rule)
    reward = {"match": values.exact, "invalid": values.invalid}.get(outcome, values.partial_max * f1)
    return reward, outcome, error


def sql_reward(completion: str, gold_sql: str, db_path: str | os.PathLike, *, timeout_s: float = 2.0,
               values: RewardValues = RewardValues(), rule: str = "spider") -> float:
    """Execution reward for one raw model answer.

    +5.0 (exact)   the predicted result equals the gold result under the official comparison of the
                   benchmark (`rule`: "spider" or "bird", benchmarks.MATCH_RULES)
    -2.0 (empty)   the answer is empty or whitespace
    -1.0 (invalid) no SQL in the answer, or it errors, is refused, or exceeds the time limit
    partial_max x F1 (2.5 x F1 by default) for a valid query with a different result, where F1 is
                   over result rows as multisets (result_f1): 0 when nothing overlaps, at most 2.5,
                   always strictly below the exact-match reward.
    """
    return score_completion(completion, gold_sql, db_path, timeout_s=timeout_s, values=values, rule=rule)[0]


def _completion_text(completion: Any) -> str:
    """TRL passes conversational completions as [{"role": "assistant", "content": ...}], plain ones as str."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return completion or ""


def _score_jobs(jobs: list[tuple], _args: Any = None, emit: Callable | None = None) -> list[tuple[float, str, str | None]]:
    """Score (completion, gold_sql, db_path, gold result, timeout_s, values, rule) jobs; runs in a worker,
    emitting each result as it comes (see WorkerPool)."""
    results = []
    for c, g, d, gold, t, v, r in jobs:
        results.append(score_completion(c, g, d, gold=gold, timeout_s=t, values=v, rule=r))
        if emit is not None:
            emit(results[-1])
    return results


class SQLExecutionReward:
    """The GRPO reward: TRL calls it as reward(prompts, completions, gold_sql=[...], db_path=[...], ...).

    Gold results are executed once and cached; predictions run in a WorkerPool, each query under
    its own time limit (`timeout_s`) and each completion under a hard one (`hard_limit_s`: past it,
    its worker is killed and replaced and the completion scored as a time-out), so one slow query
    never stalls the batch. Outcome counts (and worker failures) are accumulated for logging
    (pop_metrics) together with a few sample completions. workers=0 scores in this process, with
    no hard limit.
    """

    __name__ = "sql_execution"  # TRL logs rewards under the function's name

    def __init__(self, timeout_s: float = 2.0, workers: int = 2, values: RewardValues = RewardValues(),
                 num_samples: int = 2, rule: str = "spider") -> None:
        self.rule = rule  # the benchmark's match rule decides the +5 (benchmarks.MATCH_RULES)
        self.timeout_s = timeout_s
        # A query stops itself at timeout_s; the rest is margin for comparing results and for a busy machine.
        self.hard_limit_s = 2 * timeout_s + 2.0
        self.workers = workers
        self.values = values
        self.num_samples = num_samples
        self._gold: dict[tuple[str, str], ExecResult] = {}
        self._pool: WorkerPool | None = None
        self._counts: collections.Counter = collections.Counter()
        self.samples: list[dict] = []

    def _executor(self) -> WorkerPool | None:
        if self._pool is None and self.workers > 0:
            # spawn: never fork a process that holds CUDA state or tokenizer threads
            self._pool = WorkerPool(_score_jobs, self.workers, "spawn")
        return self._pool

    def gold_result(self, gold_sql: str, db_path: str) -> ExecResult:
        key = (str(db_path), gold_sql)
        if key not in self._gold:
            self._gold[key] = execute_gold(db_path, gold_sql, self.timeout_s, self.rule)
        return self._gold[key]

    def score(self, completions: list[str], gold_sqls: list[str], db_paths: list[str]) -> list[tuple[float, str, str | None]]:
        jobs = [(c, g, str(d), self.gold_result(g, str(d)), self.timeout_s, self.values, self.rule)
                for c, g, d in zip(completions, gold_sqls, db_paths)]
        pool = self._executor()
        if pool is None:
            return _score_jobs(jobs)
        # A few batches per worker: one message per completion costs more in pickling than these
        # sub-millisecond queries (a batch pickles a shared gold result once), and a slow query
        # still leaves the other workers busy.
        size = max(1, -(-len(jobs) // (pool.workers * 4)))
        batches = [jobs[i:i + size] for i in range(0, len(jobs), size)]
        failures = pool.failures

        def failed(_job: tuple, error: str) -> tuple[float, str, str | None]:
            return self.values.invalid, "invalid", error

        results = [r for batch in pool.run(batches, None, lambda _job: self.hard_limit_s, failed) for r in batch]
        self._counts["worker_failed"] += pool.failures - failures
        return results

    def __call__(self, prompts: list, completions: list, gold_sql: list[str], db_path: list[str], *,
                 log_metric: Callable[[str, float], None] | None = None,
                 log_extra: Callable[[str, list], None] | None = None, **_: Any) -> list[float]:
        """TRL passes `log_metric`/`log_extra` (TRL >= 1.15): the outcome fractions go through them, so TRL
        averages them over processes; each completion's outcome becomes a column of TRL's completion log."""
        texts = [_completion_text(c) for c in completions]
        scored = self.score(texts, gold_sql, db_path)
        for text, (reward, outcome, error) in zip(texts, scored):
            self._counts[outcome] += 1
            self._counts["total"] += 1
            if outcome == "invalid" and error == "no SQL":
                self._counts["parse_fail"] += 1
            if error and error.startswith("timeout"):
                self._counts["timeout"] += 1
        self.samples = [{"completion": t, "reward": r, "outcome": o} for t, (r, o, _) in zip(texts, scored)][: self.num_samples]
        if log_extra is not None:
            log_extra("outcome", [outcome for _, outcome, _ in scored])
        if log_metric is not None:
            for name, value in self.pop_metrics().items():
                log_metric(name, value)
        return [reward for reward, _, _ in scored]

    def pop_metrics(self) -> dict[str, float]:
        """Fraction of each outcome (and of parse failures, timeouts and worker failures) since the last call."""
        total = self._counts.get("total", 0)
        if not total:
            return {}
        metrics = {f"outcome/{name}": self._counts.get(name, 0) / total for name in OUTCOMES}
        metrics["outcome/parse_fail"] = self._counts.get("parse_fail", 0) / total
        metrics["outcome/timeout"] = self._counts.get("timeout", 0) / total
        # answers scored invalid because their worker process died or raised, not because of their SQL
        metrics["outcome/worker_failed"] = self._counts.get("worker_failed", 0) / total
        self._counts.clear()
        return metrics

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def checked_gold_rows(rows: list[dict], reward: SQLExecutionReward, skip_empty: bool) -> tuple[list[dict], int]:
    """Execute the gold query of every GRPO row now: one that fails is a UserError here, not at step
    1000. With `skip_empty`, rows whose gold result is empty are left out: the official rule counts
    two empty results as a match, so `SELECT 1 WHERE 0` would earn the full reward on them.
    Returns (kept rows, number left out)."""
    kept = []
    for row in rows:
        gold = reward.gold_result(row["gold_sql"], row["db_path"])
        if not gold.ok:
            raise UserError(f"gold query fails on {row['db_path']}: {gold.error}: {row['gold_sql'][:120]}")
        if not (skip_empty and not gold.rows):
            kept.append(row)
    return kept, len(rows) - len(kept)


# ======================================================================
# 8. scoring: pred.txt / gold.txt like Spider's official evaluator

HARDNESS_LEVELS = ("easy", "medium", "hard", "extra")
EMPTY_PREDICTION = "SELECT"  # placeholder written for an empty answer: keeps pred.txt paired, always wrong


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


def _db_files(db_dir: str, db_id: str) -> list[str]:
    # As the official evaluator: every file with '.sqlite' in its name in the database's folder
    # (one in Spider's layout, several in the test-suite layout).
    folder = os.path.join(db_dir, db_id)
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if ".sqlite" in name)


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


def _score_one(pred: str, gold_norm: str, ordered: bool, db_files: list[str], results: dict,
               unorder: Callable[[list[tuple]], list[tuple]], timeout_s: float,
               keep_distinct: bool = False, rule: str = "spider") -> tuple[str, str | None]:
    """(outcome, error) of one prediction on every database file of its folder, as the official
    evaluator of the benchmark (`rule`) judges it: the first file where the gold and the prediction
    differ decides (no later file runs). Gold and predicted results are cached per (database file,
    normalised SQL)."""
    if not pred.strip() or pred.strip() == EMPTY_PREDICTION:
        return "empty", "empty prediction"
    comparison = match_rule(rule)
    pred_norm = comparison.prepare(pred, True, keep_distinct)
    for db_file in db_files:
        gold = _execute_cached(results, db_file, gold_norm, max(timeout_s, GOLD_TIMEOUT_S))
        if not gold.ok:
            return "gold_error", f"gold query fails on {os.path.basename(db_file)}: {gold.error}"
        if comparison.result_error(gold):  # BIRD's evaluator scores such a question 0, whatever is predicted
            return "wrong", f"gold result: {comparison.result_error(gold)}"
        pred_result = _execute_cached(results, db_file, pred_norm, timeout_s)
        if not pred_result.ok:
            return "invalid", f"{pred_result.kind}: {pred_result.error}"[:200]
        if comparison.result_error(pred_result):
            return "invalid", comparison.result_error(pred_result)[:200]
        if not comparison.rows_match(gold.rows, pred_result.rows, ordered, unorder=unorder):
            return "wrong", None
    return "match", None


def _chunk_state() -> tuple[dict, dict, Callable[[list[tuple]], list[tuple]]]:
    """Per-worker caches: query results, database files per db_id, and unordered rows per result."""
    results: dict[tuple[str, str], ExecResult] = {}  # (db file, normalised SQL) -> result, for gold and pred alike
    memo: dict[int, list[tuple]] = {}  # normalised rows per result list (kept alive by `results`)

    def unorder(rows: list[tuple]) -> list[tuple]:
        if id(rows) not in memo:
            memo[id(rows)] = unordered_rows(rows)
        return memo[id(rows)]

    return results, {}, unorder


def _score_chunk(items: list[tuple], args: tuple, emit: Callable[[dict], Any]) -> None:
    """Score (index, pred, gold_sql, db_id) items, emitting a record per item; runs in a WorkerPool process.

    args = (db_dir, timeout_s, keep_distinct[, rule]): rule is the benchmark's match rule (default "spider").
    """
    db_dir, timeout_s, keep_distinct, *rest = args
    rule = rest[0] if rest else "spider"
    comparison = match_rule(rule)
    results, files, unorder = _chunk_state()
    for index, pred, gold_sql, db_id in items:
        if db_id not in files:
            files[db_id] = _db_files(db_dir, db_id)
        gold_norm = comparison.prepare(gold_sql, False, keep_distinct)
        outcome, error = _score_one(pred, gold_norm, "order by" in gold_norm.lower(), files[db_id], results,
                                    unorder, timeout_s, keep_distinct, rule)
        emit({"index": index, "db_id": db_id, "exec_match": outcome == "match",
              "hardness": spider_hardness(gold_sql), "outcome": outcome, "error": error})


def _rows_key(rows: list[tuple]) -> tuple:
    """The multiset of a result's rows, hashable: row order ignored, column order kept, and each
    value as SQLite returned it (repr tells 1 from 1.0 and from '1')."""
    return tuple(sorted(map(repr, rows)))


def _vote_chunk(items: list[tuple], args: tuple, emit: Callable[[dict], Any]) -> None:
    """Vote among (index, candidates, gold_sql, db_id) items and score every candidate; a WorkerPool process.

    The voting rule (README, "Self-consistency"): each candidate runs as the scorer runs a prediction
    (same rewrites, sandbox and time limit) on <db_dir>/<db_id>/<db_id>.sqlite; empty or failing
    candidates do not vote; candidates with equal results form a group (equal under the benchmark's
    `rule`, MatchRule.group_key: Spider, equal row multisets with values as SQLite returned them;
    BIRD, equal row sets under Python equality, so 1 and 1.0 agree); the largest group wins,
    a tie goes to the group holding the earliest candidate; the chosen prediction is that group's
    earliest candidate, or candidate 0 when none ran. Identical SQL texts run once.
    """
    db_dir, timeout_s, keep_distinct, *rest = args
    rule = rest[0] if rest else "spider"
    comparison = match_rule(rule)
    results, files, unorder = _chunk_state()
    for index, candidates, gold_sql, db_id in items:
        if db_id not in files:
            files[db_id] = _db_files(db_dir, db_id)
        original = os.path.join(db_dir, db_id, f"{db_id}.sqlite")
        vote_db = original if original in files[db_id] else files[db_id][0]
        gold_norm = comparison.prepare(gold_sql, False, keep_distinct)
        ordered = "order by" in gold_norm.lower()
        keys: dict[int, Hashable] = {}  # id(result rows) -> group key, computed once per distinct result
        groups: dict[Hashable, list[int]] = {}
        group_of: list[int | None] = []
        for k, cand in enumerate(candidates):
            if not cand.strip() or cand.strip() == EMPTY_PREDICTION:
                group_of.append(None)
                continue
            result = _execute_cached(results, vote_db, comparison.prepare(cand, True, keep_distinct), timeout_s)
            if not result.ok or comparison.result_error(result):
                group_of.append(None)
                continue
            if id(result.rows) not in keys:
                keys[id(result.rows)] = comparison.group_key(result.rows)
            members = groups.setdefault(keys[id(result.rows)], [])
            members.append(k)
            group_of.append(members[0])
        # dicts keep insertion order, so groups come by their earliest candidate: max() keeps the first of equals
        winner = max(groups.values(), key=len, default=[0])
        chosen = winner[0]
        verdicts: dict[str, tuple[str, str | None]] = {}
        for cand in candidates:
            if cand not in verdicts:
                verdicts[cand] = _score_one(cand, gold_norm, ordered, files[db_id], results, unorder, timeout_s,
                                            keep_distinct, rule)
        outcome, error = verdicts[candidates[chosen]]
        matches = [verdicts[c][0] == "match" for c in candidates]
        gold_failed = next((v for v in verdicts.values() if v[0] == "gold_error"), None)
        if gold_failed:
            outcome, error = gold_failed
        emit({"index": index, "db_id": db_id, "exec_match": outcome == "match",
              "hardness": spider_hardness(gold_sql), "outcome": outcome, "error": error,
              "chosen": chosen, "votes": len(winner) if groups else 0,
              "executed": sum(g is not None for g in group_of), "any_match": any(matches),
              "candidate_matches": matches, "candidate_outcomes": [verdicts[c][0] for c in candidates],
              "groups": group_of})


# How WorkerPool words the failure of an item whose worker it stopped (hard time limit) or lost.
_WORKER_STOPPED = ("timeout: over the hard limit", "worker failed")


def _failed_record(item: tuple, error: str) -> dict:
    """The record of an item whose worker was stopped at the hard limit (or died): wrong, with why.
    A voting item (its second field a tuple of candidates) keeps the voting keys: none of its
    candidates counts as run."""
    record = {"index": item[0], "db_id": item[3], "exec_match": False, "hardness": spider_hardness(item[2]),
              "outcome": "invalid", "error": error[:200]}
    if isinstance(item[1], tuple):
        k = len(item[1])
        record.update(chosen=0, votes=0, executed=0, any_match=False, candidate_matches=[False] * k,
                      candidate_outcomes=["invalid"] * k, groups=[None] * k)
    return record


def _run_chunks(worker: Callable, items: list[tuple], db_dir: str, timeout_s: float,
                workers: int, keep_distinct: bool, queries_per_item: int = 1, rule: str = "spider") -> list[dict]:
    """Run items (index, ..., db_id) through `worker` in a WorkerPool, grouped by database; records in input order.

    Always in worker processes, even one: a prediction stalled inside one SQLite call is stopped
    only by killing its process. An item's hard limit covers its gold (first run) and each of its
    `queries_per_item` queries on every database file of its folder. `rule`: the benchmark's match rule.
    """
    # Group by database so each worker reuses its connections and cached gold results.
    items = sorted(items, key=lambda item: (item[3], item[0]))
    # a process is worth starting only for a few hundred queries
    workers = max(1, min(workers, len(items) * queries_per_item // 200 + 1, len(items)))
    size = max(1, -(-len(items) // workers))
    chunks = [items[k:k + size] for k in range(0, len(items), size)]  # contiguous: a database stays in one worker
    n_files = {db: len(_db_files(db_dir, db)) for db in {item[3] for item in items}}

    def limit(item: tuple) -> float:
        return n_files[item[3]] * (max(timeout_s, GOLD_TIMEOUT_S) + 2 * timeout_s * queries_per_item) + 2.0

    import multiprocessing

    # fork is fast and safe when no threaded library (torch) is loaded; otherwise spawn
    method = "fork" if "torch" not in sys.modules and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = WorkerPool(worker, workers, method)
    try:
        records = [r for chunk in pool.run(chunks, (db_dir, timeout_s, keep_distinct, rule), limit, _failed_record)
                   for r in chunk]
    finally:
        pool.close()
    records.sort(key=lambda r: r["index"])
    failed_gold = [r for r in records if r["outcome"] == "gold_error"]
    if failed_gold:
        first = failed_gold[0]
        raise UserError(f"{len(failed_gold)} gold queries fail to execute; first: line {first['index'] + 1} "
                        f"({first['db_id']}): {first['error']}")
    return records


def check_db_dir(db_dir: str | os.PathLike, db_ids: Iterable[str]) -> None:
    """One line naming the db_ids with no database file under db_dir."""
    db_dir = os.fspath(db_dir)
    missing = sorted({db for db in db_ids if not (os.path.isdir(os.path.join(db_dir, db)) and _db_files(db_dir, db))})
    if missing:
        raise UserError(f"no database for {', '.join(missing[:5])} under {db_dir} (expected {db_dir}/<db_id>/<db_id>.sqlite)")


def score_predictions(preds: list[str], golds: list[tuple[str, str]], db_dir: str | os.PathLike,
                      timeout_s: float = 2.0, workers: int = 2, keep_distinct: bool = False,
                      rule: str = "spider") -> list[dict]:
    """Execution match of each prediction against its gold, with the official evaluator's verdicts
    (`rule`: the benchmark's match rule, "spider" or "bird"; see benchmarks.MATCH_RULES).

    Returns one record per pair, in input order: index, db_id, exec_match, hardness, outcome, error.
    Every `.sqlite` file of `<db_dir>/<db_id>/` is used (a test suite when there are several: right
    only when right on all of them). keep_distinct: the official --keep_distinct. The one intended
    difference from the official evaluator: a prediction over `timeout_s` is wrong (the official one hangs).
    Workers are processes, so the limit is hard: a prediction stalled inside one SQLite call is stopped
    by killing its worker (see WorkerPool).
    """
    if len(preds) != len(golds):
        raise UserError(f"{len(preds)} predictions but {len(golds)} gold queries: they must pair one to one")
    db_dir = os.fspath(db_dir)
    check_db_dir(db_dir, (db for _, db in golds))
    items = [(i, p, g, db) for i, (p, (g, db)) in enumerate(zip(preds, golds))]
    return _run_chunks(_score_chunk, items, db_dir, timeout_s, workers, keep_distinct, rule=rule)


def vote_predictions(candidates: list[list[str]], golds: list[tuple[str, str]], db_dir: str | os.PathLike,
                     timeout_s: float = 2.0, workers: int = 2, keep_distinct: bool = False,
                     rule: str = "spider") -> list[dict]:
    """Self-consistency: for each question, vote among its candidates (see _vote_chunk for the rule)
    and score the chosen one like any prediction, both under the benchmark's match `rule`.

    candidates[i] lists question i's candidates in order (c0 first). One record per question:
    the keys of score_predictions (exec_match and outcome are the chosen candidate's) plus chosen
    (index of the chosen candidate), votes (size of the winning group), executed (candidates that
    ran), any_match (some candidate matches: pass@k), candidate_matches and candidate_outcomes (each
    candidate's own verdict) and groups (per candidate, the index of the earliest candidate with the
    same result, or None when it did not run).
    """
    if len(candidates) != len(golds):
        raise UserError(f"{len(candidates)} candidate lists but {len(golds)} gold queries: they must pair one to one")
    if any(not c for c in candidates):
        raise UserError("every question needs at least one candidate")
    db_dir = os.fspath(db_dir)
    check_db_dir(db_dir, (db for _, db in golds))
    items = [(i, tuple(c), g, db) for i, (c, (g, db)) in enumerate(zip(candidates, golds))]
    k = max(len(c) for c in candidates)
    records = _run_chunks(_vote_chunk, items, db_dir, timeout_s, workers, keep_distinct, queries_per_item=k, rule=rule)
    # A candidate stalled inside one SQLite call has its worker killed at the question's hard limit,
    # which fails the whole question. Such a candidate ran out of time and must not vote (rule 1) while
    # the others still do: find it by running each candidate alone, then vote again without it.
    stopped = [r["index"] for r in records if len(set(candidates[r["index"]])) > 1
               and (r["error"] or "").startswith(_WORKER_STOPPED)]
    if not stopped:
        return records
    singles = sorted({(i, cand) for i in stopped for cand in candidates[i]})
    alone = _run_chunks(_vote_chunk, [(n, (cand,), golds[i][0], golds[i][1]) for n, (i, cand) in enumerate(singles)],
                        db_dir, timeout_s, workers, keep_distinct, rule=rule)
    failed = {single: r["error"] for single, r in zip(singles, alone) if (r["error"] or "").startswith(_WORKER_STOPPED)}
    again = [(i, tuple("" if (i, c) in failed else c for c in candidates[i]), *golds[i]) for i in stopped]
    for record in _run_chunks(_vote_chunk, again, db_dir, timeout_s, workers, keep_distinct, queries_per_item=k,
                              rule=rule):
        i = record["index"]
        for j, cand in enumerate(candidates[i]):
            if (i, cand) in failed:  # it ran (and ran out of time): invalid, not empty
                record["candidate_outcomes"][j] = "invalid"
        if (i, candidates[i][record["chosen"]]) in failed:
            record.update(outcome="invalid", error=failed[(i, candidates[i][record["chosen"]])], exec_match=False)
        records[i] = record
    return records


def summarize_scores(records: list[dict], key: str = "exec_match") -> dict:
    """Execution accuracy overall and by hardness, with counts (of the boolean `key` of each record:
    exec_match, or any_match for pass@k, ...)."""
    summary = {}
    for level in HARDNESS_LEVELS + ("all",):
        rows = [r for r in records if level == "all" or r["hardness"] == level]
        hits = sum(bool(r[key]) for r in rows)
        summary[level] = {"count": len(rows), "exec_match": hits, "ex": hits / len(rows) if rows else 0.0}
    return summary


def format_score_table(summary: dict, extra_rows: Iterable[tuple[str, dict]] = ()) -> str:
    """The official evaluator's table shape: a column per hardness level plus all. extra_rows:
    (label, summary) rows printed below `execution` (pass@k, each candidate file, test suites...)."""
    levels = HARDNESS_LEVELS + ("all",)
    lines = [f"{'':<20}" + "".join(f"{lvl:<12}" for lvl in levels),
             f"{'count':<20}" + "".join(f"{summary[lvl]['count']:<12}" for lvl in levels),
             f"{'execution':<20}" + "".join(f"{summary[lvl]['ex']:<12.3f}" for lvl in levels)]
    for label, rows in extra_rows:
        lines.append(f"{label[:19]:<20}" + "".join(f"{rows[lvl]['ex']:<12.3f}" for lvl in levels))
    return "\n".join(lines)


# ======================================================================
# 9. hardness: Spider's official difficulty levels, from a sqlglot parse (no schema needed)
#
# Schema-free re-implementation of Spider's official hardness levels.
#
# Reproduces ``Evaluator.eval_hardness`` of the official Spider evaluator
# (taoyds/test-suite-sql-eval, ``evaluation.py``) without needing the database
# schema: the query is parsed with sqlglot (dialect "sqlite") and the same
# components are counted on the AST.  Only the *top-level* query is inspected
# (for ``A UNION B`` that is ``A``); nested queries are counted, not descended.
#
# Official rules (``count_component1``, ``count_component2``, ``count_others``):
#
# component1 (c1) = [WHERE present] + [GROUP BY present] + [ORDER BY present]
#     + [LIMIT present] + (number of FROM table units - 1)
#     + number of ``OR`` connectors and number of ``LIKE`` conditions
#       (``NOT LIKE`` included) in the JOIN ... ON, WHERE and HAVING conditions.
# component2 (c2) = number of sub-queries used as a condition value in the
#     ON / WHERE / HAVING conditions (a BETWEEN may hold two)
#     + 1 if the query has an INTERSECT / UNION / EXCEPT.
#     (Sub-queries in FROM only count as a table unit; in SELECT not at all.)
# others (co) = [aggregations > 1] + [select items > 1] + [WHERE conditions > 1]
#     + [GROUP BY columns > 1], where "aggregations" reproduces the official
#     ``count_agg`` exactly, quirks included:
#       - SELECT: items whose outermost expression is MAX/MIN/COUNT/SUM/AVG;
#       - WHERE: conditions negated with NOT (``NOT IN``, ``NOT LIKE``, ...),
#         because ``has_agg`` reads the cond_unit's ``not_op`` slot;
#       - GROUP BY: aggregated columns;
#       - ORDER BY: aggregated operands of each item (``SUM(a) + SUM(b)`` is 2);
#       - HAVING: negated conditions plus every AND/OR connector (the official
#         code applies ``has_agg`` to the raw condition list, and a connector
#         string's first character is never 0); aggregates in HAVING itself
#         do not count.
#
# Levels:
#     easy   if c1 <= 1 and co == 0 and c2 == 0
#     medium if (co <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and co < 2 and c2 == 0)
#     hard   if (co > 2 and c1 <= 2 and c2 == 0) or (2 < c1 <= 3 and co <= 2 and c2 == 0)
#            or (c1 <= 1 and co == 0 and c2 <= 1)
#     extra  otherwise
#
# Official parser quirk also reproduced: a condition whose right-hand value is a
# bare column (e.g. ``T1.a = T2.b``) makes the official value scanner skip ahead
# to the next AND (or clause keyword), so any ``OR ...`` conditions right after
# it are dropped from the counts.  Not reproduced: the rarer case where such a
# skipped OR-chain holds a '(' , ',' or sub-query, after which the official
# parser silently drops the rest of the query.  SQL the official parser rejects
# (comma joins, INNER JOIN, IN (1, 2), IS NULL, ...) has no official label; it
# gets the label the same rules give on the sqlglot AST.
#
# Robustness: only the first statement is read; if the strict parse fails,
# sqlglot's error-tolerant mode is tried and whatever query it recovers is
# counted.  Input with no recoverable query (empty string, garbage, non-SELECT
# statements, non-str) is classified "easy" (nothing countable: the lowest
# level, rather than guessing high); the function never raises.





__all__ = ["spider_hardness", "spider_hardness_counts"]

# The official AGG_OPS: ('none', 'max', 'min', 'count', 'sum', 'avg').
_AGG_TYPES = (exp.Max, exp.Min, exp.Count, exp.Sum, exp.Avg)
# The official UNIT_OPS between two column units: '-', '+', '*', '/'.
_ARITH_TYPES = (exp.Sub, exp.Add, exp.Mul, exp.Div)
_SET_OPS = (exp.Union, exp.Intersect, exp.Except)


def _strip(node: Optional[exp.Expression]) -> Optional[exp.Expression]:
    """Drop aliases and redundant parentheses, which the official parser ignores."""
    while isinstance(node, (exp.Alias, exp.Paren)):
        node = node.this
    return node


def _is_agg(node: Optional[exp.Expression]) -> bool:
    return isinstance(_strip(node), _AGG_TYPES)


def _is_query(node: exp.Expression) -> bool:
    return isinstance(node, (exp.Subquery, exp.Select) + _SET_OPS)


def _top_select(tree: exp.Expression) -> Tuple[Optional[exp.Select], bool]:
    """Return the leftmost SELECT and whether a set operation hangs off it.

    The official parser reads ``A UNION B UNION C`` as ``A`` with ``union =
    (B UNION C)``; sqlglot builds ``(A UNION B) UNION C``.  Either way the
    hardness is computed on ``A`` plus one nested IUE query.
    """
    has_iue = False
    node: Optional[exp.Expression] = tree
    while node is not None:
        if isinstance(node, _SET_OPS):
            has_iue = True
            node = node.this
        elif isinstance(node, (exp.Subquery, exp.Paren)):
            node = node.this
        elif isinstance(node, exp.Select):
            return node, has_iue
        else:
            return None, has_iue
    return None, has_iue


def _flatten(cond: Optional[exp.Expression]) -> Tuple[List[exp.Expression], List[str]]:
    """Flatten an AND/OR tree into (condition units, connectors) like the official
    ``[cond_unit, 'and'/'or', cond_unit, ...]`` list (parentheses are ignored)."""
    units: List[exp.Expression] = []
    ops: List[str] = []

    def walk(node: exp.Expression) -> None:
        node = _strip(node)
        if isinstance(node, (exp.And, exp.Or)):
            walk(node.this)
            ops.append("and" if isinstance(node, exp.And) else "or")
            walk(node.expression)
        else:
            units.append(node)

    if cond is not None:
        walk(cond)
    # Official quirk: a bare-column value swallows following OR-conditions
    # (the value scanner only stops at ',', ')', AND, or a clause keyword).
    kept_units: List[exp.Expression] = []
    kept_ops: List[str] = []
    i = 0
    while i < len(units):
        kept_units.append(units[i])
        j = i
        if _value_is_column(units[i]):
            while j < len(ops) and ops[j] == "or":
                j += 1
        if j < len(ops):
            kept_ops.append(ops[j])
        i = j + 1
    return kept_units, kept_ops


def _value_is_column(unit: exp.Expression) -> bool:
    """True when the official ``parse_value`` would scan the value as a column."""
    inner = unit.this if isinstance(unit, exp.Not) else unit
    if isinstance(inner, exp.Between):
        value = inner.args.get("high")
    elif isinstance(inner, exp.Binary):
        value = inner.expression
    else:
        return False
    value = _strip(value)
    if value is None or isinstance(value, (exp.Literal, exp.Null, exp.Boolean)):
        return False
    if isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal):
        return False
    if _is_query(value):
        return False
    # Spider writes strings in double quotes, which sqlglot reads as quoted identifiers.
    if isinstance(value, exp.Column) and not value.table and value.this.args.get("quoted"):
        return False
    return True


def _is_negated(unit: exp.Expression) -> bool:
    """Official ``not_op``: NOT IN / NOT BETWEEN / NOT LIKE ... (sqlglot wraps most
    negations in Not, but marks NOT LIKE / NOT ILIKE with ``negate=True``)."""
    return isinstance(unit, exp.Not) or bool(unit.args.get("negate"))


def _is_like(unit: exp.Expression) -> bool:
    inner = unit.this if isinstance(unit, exp.Not) else unit
    return isinstance(inner, (exp.Like, exp.ILike))


def _nested_queries(node: exp.Expression) -> Iterator[exp.Expression]:
    """Sub-queries inside a condition unit, without descending into them."""
    for child in node.iter_expressions():
        if _is_query(child):
            yield child
        else:
            yield from _nested_queries(child)


def _order_aggs(ordered: exp.Expression) -> int:
    """Official order-by items are val_units: col_unit [op col_unit]."""
    node = _strip(ordered.this if isinstance(ordered, exp.Ordered) else ordered)
    if isinstance(node, _ARITH_TYPES):
        return int(_is_agg(node.this)) + int(_is_agg(node.expression))
    return int(_is_agg(node))


def _parse(sql: str) -> Optional[exp.Expression]:
    """First statement of ``sql`` as a sqlglot tree, or None.

    A strict parse is tried first; if it fails, sqlglot's error-tolerant mode
    is used so that a slightly broken query (e.g. ``... WHERE`` cut short) is
    still counted on whatever parsed, as long as it is a query.
    """
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its warnings on garbage input are noise here
    for level in (ErrorLevel.RAISE, ErrorLevel.IGNORE):
        try:
            trees = sqlglot.parse(sql, read="sqlite", error_level=level)
        except Exception:  # tokenizer/parser errors of any type: try the next mode
            continue
        # Like the official parser, only the first statement counts.
        tree = next((t for t in trees if t is not None), None)
        if tree is not None and _is_query(tree):
            return tree
    return None


def spider_hardness_counts(sql: str) -> Optional[Tuple[int, int, int]]:
    """Return (component1, component2, others) or None when unparseable."""
    tree = _parse(sql)
    if tree is None:
        return None
    select, has_iue = _top_select(tree)
    if select is None:
        return None

    from_ = select.args.get("from_") or select.args.get("from")
    joins = select.args.get("joins") or []
    where = select.args.get("where")
    group = select.args.get("group")
    having = select.args.get("having")
    order = select.args.get("order")
    limit = select.args.get("limit")

    # JOIN ... ON conditions are concatenated with 'and' by the official parser.
    on_units: List[exp.Expression] = []
    on_ops: List[str] = []
    for join in joins:
        units, ops = _flatten(join.args.get("on"))
        if units:
            if on_units:
                on_ops.append("and")
            on_units += units
            on_ops += ops
    where_units, where_ops = _flatten(where.this if where else None)
    having_units, having_ops = _flatten(having.this if having else None)
    cond_units = on_units + where_units + having_units
    cond_ops = on_ops + where_ops + having_ops

    group_cols = list(group.expressions) if group else []
    order_items = list(order.expressions) if order else []
    n_tables = (1 if from_ is not None else 0) + len(joins)

    c1 = int(bool(where_units)) + int(bool(group_cols)) + int(bool(order_items))
    c1 += int(limit is not None)
    c1 += max(n_tables - 1, 0)
    c1 += cond_ops.count("or")
    c1 += sum(1 for u in cond_units if _is_like(u))

    c2 = sum(len(list(_nested_queries(u))) for u in cond_units) + int(has_iue)

    # A SELECT item counts only when the aggregate is its outermost token
    # (official agg_id slot); "(COUNT(*))" or "a + COUNT(*)" count 0 there.
    aggs = sum(1 for e in select.expressions
               if isinstance(e.this if isinstance(e, exp.Alias) else e, _AGG_TYPES))
    aggs += sum(1 for u in where_units if _is_negated(u))
    aggs += sum(1 for g in group_cols if _is_agg(g))
    aggs += sum(_order_aggs(o) for o in order_items)
    aggs += sum(1 for u in having_units if _is_negated(u)) + len(having_ops)
    co = int(aggs > 1) + int(len(select.expressions) > 1)
    co += int(len(where_units) > 1) + int(len(group_cols) > 1)
    return c1, c2, co


@functools.lru_cache(maxsize=65536)
def spider_hardness(sql: str) -> str:
    """Spider difficulty ("easy"/"medium"/"hard"/"extra") of a SQL query."""
    try:
        counts = spider_hardness_counts(sql) if isinstance(sql, str) else None
    except Exception:  # never raise on odd input (incl. RecursionError on deep nesting)
        counts = None
    if counts is None:
        return "easy"
    c1, c2, co = counts
    if c1 <= 1 and co == 0 and c2 == 0:
        return "easy"
    if (co <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and co < 2 and c2 == 0):
        return "medium"
    if ((co > 2 and c1 <= 2 and c2 == 0) or (2 < c1 <= 3 and co <= 2 and c2 == 0)
            or (c1 <= 1 and co == 0 and c2 <= 1)):
        return "hard"
    return "extra"
