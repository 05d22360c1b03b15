"""The database schema as the model reads it: CREATE TABLE text with declared types, primary and
foreign keys (from the database, completed by tables.json), optional sample values and column notes,
and the stored values that match a question when value_index.py found some (render_schema's value_hints).

Reads databases directly, read-only (never through the SQL sandbox: these are our own queries).
Imports errors and sandbox.decode_text only; nothing of the benchmarks, prompts or models.
"""

from __future__ import annotations

import os
import re
import sqlite3
from typing import NamedTuple

from sql_rlvr.errors import DataError
from sql_rlvr.sandbox import decode_text, read_only_uri

_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {"ORDER", "GROUP", "SELECT", "FROM", "WHERE", "TABLE", "INDEX", "KEY", "PRIMARY", "FOREIGN",
             "REFERENCES", "JOIN", "ON", "AS", "BY", "LIMIT", "UNION", "EXCEPT", "INTERSECT", "CHECK",
             "DEFAULT", "TO", "IN", "IS", "NOT", "NULL", "AND", "OR", "CASE", "WHEN", "END", "VALUES", "SET"}


def quote_name(name: str) -> str:
    """Quote an identifier only when SQL needs it (spaces, odd characters, keywords), like Spider's SQL."""
    if _PLAIN_NAME.match(name) and name.upper() not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


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


VALUE_HINTS_LABEL = "values matching the question: "  # how a column's comment introduces its --value_hints


class SchemaTable(NamedTuple):
    """One table of the schema text: columns as (name, declared type, comment), key columns, foreign keys
    as (column, referenced table, referenced column)."""

    name: str
    columns: list[tuple[str, str, str]]
    pks: list[str]
    fks: list[tuple[str, str, str]]


def render_schema(tables: list[SchemaTable], value_hints: dict[tuple[str, str], list[str]] | None = None) -> str:
    """The CREATE TABLE text of `tables`. `value_hints` ({(table, column) lowercased: values}, from
    value_index.ValueIndex.lookup) end the comment of their column, after VALUE_HINTS_LABEL."""
    blocks = []
    for table in tables:
        columns = table.columns
        if value_hints:
            columns = []
            for name, ctype, comment in table.columns:
                shown = value_hints.get((table.name.lower(), name.lower()))
                if shown:
                    hint = VALUE_HINTS_LABEL + ", ".join(repr(v) for v in shown)
                    comment = "; ".join(c for c in (comment, hint) if c)
                columns.append((name, ctype, comment))
        blocks.append(_render_table(table.name, columns, table.pks, table.fks))
    return "\n\n".join(blocks)


def read_schema(db_path: str | os.PathLike, sample_values: int = 0, tables_entry: dict | None = None,
                column_comments: dict[tuple[str, str], str] | None = None) -> list[SchemaTable]:
    """Every table with declared types, primary and foreign keys, in creation order (see schema_from_sqlite)."""
    json_pks, json_fks = keys_from_tables_json(tables_entry) if tables_entry else ({}, {})
    if os.path.getsize(db_path) == 0:  # SQLite would open it as a database without tables
        raise DataError(f"cannot read schema of {db_path}: empty file, not a database (an interrupted download or copy?)")
    conn = sqlite3.connect(read_only_uri(db_path), uri=True)
    conn.text_factory = decode_text
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
        found = []
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
            found.append(SchemaTable(table, columns, pks, fks))
        return found
    except sqlite3.Error as exc:
        raise DataError(f"cannot read schema of {db_path}: {exc}") from None
    finally:
        conn.close()


def schema_from_sqlite(db_path: str | os.PathLike, sample_values: int = 0, tables_entry: dict | None = None,
                       column_comments: dict[tuple[str, str], str] | None = None) -> str:
    """Every table as CREATE TABLE with declared types, primary and foreign keys, in creation order.

    Read from the database itself (tables.json has lost the declared types). Keys come from the
    database's declarations and, when `tables_entry` is given, from Spider's annotations too: many
    Spider databases declare no keys at all. With `sample_values` > 0, each column gets a comment
    with up to that many distinct values. `column_comments` ({(table, column) lowercased: text}, e.g.
    BIRD's column descriptions) are added to those comments.
    """
    return render_schema(read_schema(db_path, sample_values, tables_entry, column_comments))


def tables_from_json(entry: dict) -> list[SchemaTable]:
    """The tables of a tables.json entry (for a database that is not on disk): no declared types from
    the database, keys from Spider's annotations."""
    tables = entry["table_names_original"]
    columns = entry["column_names_original"]
    types = entry.get("column_types", [])
    by_table: dict[int, list[int]] = {i: [] for i in range(len(tables))}
    for idx, (t, _name) in enumerate(columns):
        if t >= 0:
            by_table[t].append(idx)
    json_pks, json_fks = keys_from_tables_json(entry)
    found = []
    for t, table in enumerate(tables):
        cols = [(columns[i][1], (types[i] if i < len(types) else "").upper(), "") for i in by_table[t]]
        found.append(SchemaTable(table, cols, json_pks.get(table.lower(), []), json_fks.get(table.lower(), [])))
    return found


def schema_from_tables_json(entry: dict) -> str:
    """The same CREATE TABLE text from a tables.json entry (for a database that is not on disk)."""
    return render_schema(tables_from_json(entry))
