"""Question-matched database values for the schema prompt (--value_hints): a per-database index of the
text values (an SQLite FTS5 trigram table, cached under .cache/value_index/, rebuilt when the database
file changes, never written into the database) and the lookup that ranks its candidates with rapidfuzz.
One process builds a database's index while the others (DDP ranks) wait for it: a lock file beside it.

Imports errors and sandbox only: the prompt path (benchmarks.py) calls it; it never imports utils,
benchmarks or schema, so it stays below them.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import re
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from sql_rlvr.errors import UserError
from sql_rlvr.sandbox import decode_text, read_only_uri

CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "value_index"  # the repository's .cache
INDEX_VERSION = "3"  # bump when what the index holds changes: older cache files are rebuilt
# A longer stored text is a description or a comment, not a value a question names; it would also cost
# many prompt tokens. The longest string literal of a Spider dev gold query is 28 characters.
MAX_VALUE_CHARS = 80
# A column's most frequent distinct values indexed, at most (ties by value): one column of 5 M distinct URLs
# took 194 s and a 1,269 MiB index uncapped, 11 s and 30 MiB capped (bench/value_hints.py --build_sizes).
# Spider's largest column has 16k; a capped column loses only its rarest values.
MAX_VALUES_PER_COLUMN = 100_000
# A build or a wait for one that runs longer than this says so on stderr, every PROGRESS_EVERY_S at most:
# a large database is visibly being indexed, not hung; Spider's and the mini databases build in under 1 s.
PROGRESS_AFTER_S = 3.0
PROGRESS_EVERY_S = 10.0
# rapidfuzz partial_ratio (0-100) of a value against its best-aligned stretch of the question: 85 keeps
# plurals and case ("cats" ~ 'cat', "asian" ~ 'Asia') and drops values that only share a word
# (measured on Spider dev by bench/value_hints.py: 80 and 90 show the same gold values, 80 more noise).
MIN_SCORE = 85
# FTS5 rows read per search term, shortest values first. Not bm25's order: ranking every match of a common
# term cost 87 ms a question on a 250k-value database, reading the first rows in rowid order 5 ms.
CANDIDATES_PER_TERM = 50
# Question words that name no value: searching them costs time on large databases and finds noise.
STOPWORDS = frozenset("""
a about above after all also among an and any are as at average be been before below between both but by
can count did do does each every find for from give had has have how in into is it its less list many
more most much name names not number of on or order other per please return same show than that the
their them then there these they this those to total under was were what when where which who whom
whose with without
""".split())

_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script; apostrophes split ("Kyle's")
# Declared types with INTEGER, REAL or NUMERIC affinity (SQLite's rules; DATE and BOOLEAN are NUMERIC):
# such columns hold numbers, not names.
_TEXT_TYPE = re.compile(r"CHAR|CLOB|TEXT", re.I)
_NUMERIC_TYPE = re.compile(r"INT|REAL|FLOA|DOUB|NUM|DEC|BOOL|DATE|TIME", re.I)
# Id columns (id, Customer_ID, StuID, countryId): their values are keys, never what a question names.
_ID_NAME = re.compile(r"(?i:^id$|[_ ]id$)|[a-z]I[Dd]$")


def indexed_column(name: str, declared_type: str) -> bool:
    """Whether a column's values are indexed: text columns that are not ids."""
    numeric = bool(_NUMERIC_TYPE.search(declared_type or "")) and not _TEXT_TYPE.search(declared_type or "")
    return not numeric and not _ID_NAME.search(name)


def indexed_value(value: str) -> bool:
    """Whether a stored text is offered: at most MAX_VALUE_CHARS, one line, with a letter (not a number or date)."""
    return (len(value) <= MAX_VALUE_CHARS and not any(ch in value for ch in "\n\r\t")
            and any(ch.isalpha() for ch in value))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _db_stamp(db_path: Path) -> dict[str, str]:
    st = db_path.stat()
    return {"version": INDEX_VERSION, "db_path": str(db_path), "size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns),
            "max_values_per_column": str(MAX_VALUES_PER_COLUMN)}


class _Progress:
    """Lines on stderr about something slow (`what`), from PROGRESS_AFTER_S on; silent when it is quick.
    Also SQLite's progress handler, so that a long statement reports too."""

    def __init__(self, what: str):
        self.what, self.step, self.start, self.said = what, "", time.monotonic(), None

    def __call__(self, step: str = "") -> int:
        self.step = step or self.step
        now = time.monotonic()
        if now - self.start >= PROGRESS_AFTER_S and (self.said is None or now - self.said >= PROGRESS_EVERY_S):
            self.said = now
            print(f"--value_hints: {self.what} ({now - self.start:.0f} s)" + (f": {self.step}" if self.step else ""),
                  file=sys.stderr, flush=True)
        return 0  # to SQLite: go on

    def done(self, result: str) -> None:
        if (took := time.monotonic() - self.start) >= PROGRESS_AFTER_S:
            print(f"--value_hints: {self.what}: {result} in {took:.0f} s", file=sys.stderr, flush=True)


def _column_values(src: sqlite3.Connection, table: str, column: str) -> list[str]:
    """The indexed values of a column: its MAX_VALUES_PER_COLUMN most frequent, ties by value."""
    q = _quote(column)
    rows = src.execute(f"SELECT {q} FROM {_quote(table)} WHERE typeof({q}) = 'text' AND length({q}) <= ? "
                       f"GROUP BY {q} ORDER BY count(*) DESC, {q}", (MAX_VALUE_CHARS,))
    kept = []
    for (raw,) in rows:
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:  # it cannot be typed into a query: left out
            continue
        if indexed_value(value):
            kept.append(value)
            if len(kept) == MAX_VALUES_PER_COLUMN:
                break
    return kept


def build_index(db_path: str | os.PathLike, index_path: str | os.PathLike) -> None:
    """Write the value index of database `db_path` to `index_path` (atomically: a temporary file renamed).

    The database is opened read-only and immutable; nothing is written to it or beside it. A build that
    fails removes its temporary file; value_index takes the lock that keeps other processes out.
    """
    db_path, index_path = Path(db_path).resolve(), Path(index_path)
    stamp = _db_stamp(db_path)
    if db_path.stat().st_size == 0:  # SQLite would read it as a database without tables: an index of nothing
        raise UserError(f"--value_hints: cannot index the values of {db_path}: empty file, not a database")
    try:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=index_path.name + ".", suffix=".tmp", dir=index_path.parent)
        os.close(fd)
    except OSError as exc:
        raise UserError(f"--value_hints: cannot write its index cache in {index_path.parent}: {exc}") from None
    progress = _Progress(f"building the value index of {db_path}")
    src = out = None
    try:
        src = sqlite3.connect(read_only_uri(db_path), uri=True)
        src.text_factory = bytes  # decoded per value: a text that is not valid UTF-8 is left out
        out = sqlite3.connect(tmp)
        for conn in (src, out):
            conn.set_progress_handler(progress, 1_000_000)
        out.execute("PRAGMA journal_mode = OFF")  # a temporary file: renamed when complete, else deleted
        try:
            out.execute("CREATE VIRTUAL TABLE vals USING fts5(value, col UNINDEXED, tokenize='trigram')")
        except sqlite3.OperationalError as exc:
            raise UserError(f"--value_hints needs SQLite's FTS5 with the trigram tokenizer (SQLite >= 3.34); this "
                            f"Python's SQLite {sqlite3.sqlite_version} says: {exc}") from None
        # `found` is a TEMP table: SQLite sorts it, spilling to its own temporary file (deleted when closed),
        # so the values of a large database never all sit in this process's memory.
        out.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE columns (id INTEGER PRIMARY KEY, tbl TEXT, col TEXT);
            CREATE TABLE short (value TEXT, col INTEGER);
            CREATE TEMP TABLE found (value TEXT, col INTEGER);
        """)
        tables = [decode_text(r[0]) for r in src.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
        n_values = 0
        for t, table in enumerate(tables, 1):
            for _cid, name, ctype, *_ in src.execute(f"PRAGMA table_info({_quote(table)})").fetchall():
                name, ctype = decode_text(name), decode_text(ctype or b"")
                if not indexed_column(name, ctype):
                    continue
                progress(f"table {t} of {len(tables)}, {table}.{name}, {n_values:,} values so far")
                kept = _column_values(src, table, name)
                if kept:
                    col = out.execute("INSERT INTO columns (tbl, col) VALUES (?, ?)", (table, name)).lastrowid
                    out.executemany("INSERT INTO temp.found VALUES (?, ?)", ((v, col) for v in kept))
                    n_values += len(kept)
        # Shortest values first: rowid order is then the order a term's matches come back in, so the first
        # CANDIDATES_PER_TERM are the values the term covers most of, read without ranking every match.
        # FTS5 trigrams need 3 characters: shorter values ('CA', 'F') are matched as whole words.
        progress(f"indexing {n_values:,} values")
        for table, which in (("vals", ">= 3"), ("short", "< 3")):
            out.execute(f"INSERT INTO {table} (value, col) SELECT value, col FROM temp.found "
                        f"WHERE length(value) {which} ORDER BY length(value), value, col")
        out.execute("CREATE INDEX short_value ON short (value)")
        progress("merging the index")
        out.execute("INSERT INTO vals (vals) VALUES ('optimize')")  # one b-tree segment: faster lookups
        out.executemany("INSERT INTO meta VALUES (?, ?)", sorted(stamp.items()))
        out.commit()
        out.close()
        os.replace(tmp, index_path)
        progress.done(f"{n_values:,} values, {index_path.stat().st_size / 2**20:.0f} MiB")
    except (sqlite3.Error, OSError) as exc:
        raise UserError(f"--value_hints: cannot index the values of {db_path}: {exc}") from None
    finally:
        for conn in (src, out):
            if conn is not None:
                conn.close()
        if os.path.exists(tmp):
            os.unlink(tmp)


def search_terms(text: str) -> list[str]:
    """The lowercased words of `text` searched in the index (3+ characters, not a stopword), each also
    shortened by up to 3 characters (to 3 or more) so that "republics" finds 'Republic' and "cats" 'cat'."""
    terms = set()
    for word in _WORD.findall(text.lower()):
        if len(word) < 3 or word in STOPWORDS:
            continue
        terms.update(word[:len(word) - cut] for cut in range(4) if len(word) - cut >= 3)
    return sorted(terms - STOPWORDS)


class ValueIndex:
    """One database's value index, open read-only. `lookup` is what the prompt uses."""

    def __init__(self, index_path: Path):
        self.path = index_path
        self._conn = sqlite3.connect(read_only_uri(index_path), uri=True, check_same_thread=False)
        self._columns = {cid: (tbl, col) for cid, tbl, col in self._conn.execute("SELECT id, tbl, col FROM columns")}
        self._lock = threading.Lock()

    def columns(self) -> list[tuple[str, str]]:
        """(table, column) of every indexed column, in the database's order."""
        return [self._columns[c] for c in sorted(self._columns)]

    def candidates(self, text: str) -> list[tuple[str, tuple[str, str], int]]:
        """(value, (table, column), rowid) of the values (3+ characters) that contain a search term of
        `text` (FTS5 trigram substring match, case-insensitive): the CANDIDATES_PER_TERM shortest per term.
        A smaller rowid is a shorter value."""
        found: dict[tuple[str, int], int] = {}
        with self._lock:
            for term in search_terms(text):
                rows = self._conn.execute("SELECT value, col, rowid FROM vals WHERE vals MATCH ? ORDER BY rowid LIMIT ?",
                                          ('"' + term + '"', CANDIDATES_PER_TERM)).fetchall()
                for value, col, rowid in rows:
                    found[(value, col)] = rowid
        return [(value, self._columns[col], rowid) for (value, col), rowid in sorted(found.items(), key=lambda f: f[1])]

    def word_matches(self, text: str) -> list[tuple[str, tuple[str, str]]]:
        """Values of 1-2 characters that are a whole word of `text`, case and all ('CA', 'F', not "a")."""
        words = sorted({w for w in _WORD.findall(text) if len(w) < 3 and w not in STOPWORDS})
        with self._lock:
            rows = [r for w in words for r in self._conn.execute(
                "SELECT value, col FROM short WHERE value = ? ORDER BY rowid", (w,)).fetchall()]
        return [(value, self._columns[col]) for value, col in rows]

    def all_values(self) -> dict[tuple[str, str], list[str]]:
        """Every indexed value by column (what a scan without the index would compare against)."""
        by_col: dict[tuple[str, str], list[str]] = {}
        with self._lock:
            for table in ("vals", "short"):
                for value, col in self._conn.execute(f"SELECT value, col FROM {table} ORDER BY rowid"):
                    by_col.setdefault(self._columns[col], []).append(value)
        return by_col

    def lookup(self, text: str, k: int) -> dict[tuple[str, str], list[str]]:
        """{(table, column) lowercased: up to `k` stored values} that match words or phrases of `text`.

        Candidates come from the index; each is scored by rapidfuzz's partial_ratio against its best-aligned
        stretch of `text` (case and punctuation folded) and kept at MIN_SCORE or more; a column's values are
        ordered by score, then longer first (more of the question matched), then by value. Columns without
        a match are absent. The same text always gives the same answer.
        """
        if k <= 0 or not text.strip():
            return {}
        try:
            from rapidfuzz import fuzz
            from rapidfuzz.utils import default_process
        except ImportError:
            raise UserError("--value_hints needs rapidfuzz: pip install -r requirements-cpu.txt "
                            "(or requirements.txt)") from None
        folded = default_process(text)
        scored: dict[tuple[str, str], list[tuple[float, str]]] = {}
        for value, column, _rowid in self.candidates(text):
            score = fuzz.partial_ratio(default_process(value), folded)
            if score >= MIN_SCORE:
                scored.setdefault(column, []).append((score, value))
        for value, column in self.word_matches(text):
            scored.setdefault(column, []).append((100.0, value))
        hints = {}
        for (table, col), found in scored.items():
            best = sorted(found, key=lambda sv: (-sv[0], -len(sv[1]), sv[1]))
            hints[(table.lower(), col.lower())] = list(dict.fromkeys(value for _score, value in best))[:k]
        return hints


_OPEN: dict[tuple[str, str], tuple[tuple[str, ...], ValueIndex]] = {}
_OPEN_LOCK = threading.Lock()


def index_path_for(db_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the index of `db_path` is cached: one file per database path (its stamp is inside)."""
    resolved = Path(db_path).resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    return Path(cache_dir or CACHE_DIR) / f"{resolved.stem}-{digest}.sqlite"


def _read_stamp(index_path: Path) -> dict[str, str]:
    try:
        conn = sqlite3.connect(read_only_uri(index_path, immutable=False), uri=True)
        try:
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:  # absent, half-written by an older version, or not an index: rebuilt
        return {}


def _build_once(db_path: Path, path: Path, stamp: dict[str, str]) -> None:
    """Build the index under `<index>.lock` (flock: released when its holder exits, even killed). The
    processes that waited find it built (the stamp read again) and build nothing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{path}.lock", "a")
    except OSError as exc:
        raise UserError(f"--value_hints: cannot write its index cache in {path.parent}: {exc}") from None
    with lock:
        waiting = _Progress(f"waiting for another process to build the value index of {db_path}")
        while True:  # polled, not blocking: a long wait can say so
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waiting()
                time.sleep(0.05)
        if _read_stamp(path) != stamp:  # else built by the process this one waited for
            for stale in path.parent.glob(glob.escape(path.name) + ".*.tmp"):  # a killed builder's: the lock is ours
                stale.unlink(missing_ok=True)
            build_index(db_path, path)


def value_index(db_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> ValueIndex:
    """The value index of a database: from the cache when its stamp (version, path, size, mtime, cap) still
    matches the file, else built now (by one process at a time) and cached. Kept open for the process."""
    db_path = Path(db_path).resolve()
    if not db_path.is_file():
        raise UserError(f"--value_hints: no database file {db_path}")
    path = index_path_for(db_path, cache_dir)
    stamp = _db_stamp(db_path)
    key = (str(db_path), str(path))
    with _OPEN_LOCK:
        opened = _OPEN.get(key)
        if opened and opened[0] == tuple(sorted(stamp.items())):
            return opened[1]
        if _read_stamp(path) != stamp:
            _build_once(db_path, path, stamp)
        index = ValueIndex(path)
        _OPEN[key] = (tuple(sorted(stamp.items())), index)
        return index
