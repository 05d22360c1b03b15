"""Running untrusted SQL safely: a read-only, time-limited, bounded SQLite sandbox (execute_sql) and
the worker processes that make its time limit hard (WorkerPool).

What the reward, the scorer and voting all execute through. Imports only the standard library and
errors.py: no scoring rule, no model code, nothing heavy (workers must start fast).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from sql_rlvr.errors import UserError

def decode_text(raw: bytes) -> str:
    """How every database text value is read: invalid UTF-8 bytes are dropped, as the official evaluator does."""
    return raw.decode("utf-8", errors="ignore")


def read_only_uri(db_path: str | os.PathLike, immutable: bool = True) -> str:
    """The SQLite URI that opens a file read-only. The absolute path is percent-quoted: raw, a '#' or '?' in
    a folder's name would end the path (another file opened, read-write) and '%20' would name another file."""
    uri = "file:" + urllib.parse.quote(os.fsencode(os.path.abspath(db_path)))
    # immutable=1: no locks, journals or -shm files are ever created (for a file nothing writes while open).
    return uri + ("?mode=ro&immutable=1" if immutable else "?mode=ro")


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
    columns: list[str] | None = None  # the result's column names (what the agentic mode's tool shows the model)
    row_count: int | None = None  # with keep_rows: the rows the query returned, counted up to max_rows + 1

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
        conn = sqlite3.connect(read_only_uri(db_path), uri=True, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA temp_store = MEMORY")  # sorts never spill into temporary files
        conn.execute(f"PRAGMA hard_heap_limit = {SQLITE_HEAP_LIMIT}")
        for name, value in _SQLITE_LIMITS.items():
            conn.setlimit(getattr(sqlite3, name), value)
        conn.set_authorizer(_authorizer)
        deadline = _Deadline()
        conn.set_progress_handler(deadline, 10000)  # every 10k VM steps: well under a millisecond
        cache[db_path] = (conn, deadline)
    return cache[db_path]


def close_connections() -> None:
    """Close this thread's cached connections (a benchmark measuring cold starts; a process that ends
    closes them anyway)."""
    for conn, _ in getattr(_local, "conns", {}).values():
        conn.close()
    _local.__dict__.clear()


def execute_sql(db_path: str | os.PathLike, sql: str, timeout_s: float = 2.0,
                max_rows: int = MAX_RESULT_ROWS, keep_rows: int | None = None) -> ExecResult:
    """Run one untrusted query read-only, within `timeout_s`, with bounded memory. Never raises for bad SQL.

    `keep_rows` (the agentic mode's tool, which shows a few rows and their count): hold only the first
    `keep_rows` rows and count the rest without holding them, up to `max_rows`; `row_count` is the
    count, max_rows + 1 when it stopped there. A result larger than max_rows is then no error.

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
        result = _run_query(conn, deadline, sql, timeout_s, max_rows, keep_rows)
        if result.kind == "error" and "Could not decode to UTF-8" in (result.error or ""):
            conn.text_factory = decode_text
            result = _run_query(conn, deadline, sql, timeout_s, max_rows, keep_rows)
            result.lossy_text = result.ok
        result.seconds, result.limit = time.monotonic() - start, timeout_s
        return result
    finally:
        conn.text_factory = str


def _run_query(conn: sqlite3.Connection, deadline: _Deadline, sql: str, timeout_s: float, max_rows: int,
               keep_rows: int | None = None) -> ExecResult:
    deadline.at = time.monotonic() + timeout_s
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        if keep_rows is not None:
            return _first_rows_and_count(cursor, keep_rows, max_rows)
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
        return ExecResult(rows, columns=[d[0] for d in cursor.description or ()])
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


def _first_rows_and_count(cursor: sqlite3.Cursor, keep_rows: int, max_rows: int) -> ExecResult:
    """The first `keep_rows` rows, and the count of all up to max_rows + 1: the rest pass through 100 at a
    time and are dropped, so memory holds the kept rows and 100 more, however many the result has."""
    rows = cursor.fetchmany(keep_rows) if keep_rows > 0 else []
    count = len(rows)
    while len(rows) == keep_rows and count <= max_rows:
        chunk = len(cursor.fetchmany(100))
        if not chunk:
            break
        count += chunk
    return ExecResult(rows, columns=[d[0] for d in cursor.description or ()], row_count=min(count, max_rows + 1))


@dataclass
class _Busy:
    """A worker at work on one batch: the items it has not answered yet, in order."""

    worker: tuple[Any, Any]  # (process, connection)
    batch: int  # which batch of run(): its results go to results[batch]
    waiting: deque  # items sent and not yet answered; the first is the one running now
    since: float  # when the running item started (the previous result, or the worker saying it is ready)

    def deadline(self, limit: Callable[[Any], float]) -> float:
        return self.since + (limit(self.waiting[0]) if self.waiting else 10.0)  # all answered: "done" on its way


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
        self.starting: set[Any] = set()  # connections of started workers that have not said "ready" yet
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

    def start(self) -> None:
        """Start the workers now rather than at the first run: their imports overlap the caller's own work
        (GRPO loads its model meanwhile)."""
        while len(self.idle) < self.workers:
            self.idle.append(self._start())
            self.starting.add(self.idle[-1][1])

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

    def run(self, batches: list[list], args: Any, limit: Callable[[Any], float],
            on_fail: Callable[[Any, str], Any]) -> list[list]:
        """The results of each batch, in order (a result per item)."""
        from multiprocessing.connection import wait

        results: list[list] = [[] for _ in batches]
        pending: deque = deque((b, list(batch)) for b, batch in enumerate(batches) if batch)  # (batch, items to send)
        busy: dict[Any, _Busy] = {}  # connection -> its worker's state

        def give_up_on_current(job: _Busy, error: str, timeout: bool) -> None:
            """The running item failed: its worker is gone; the rest of the batch goes to a new one, first."""
            del busy[job.worker[1]]
            self._stop(job.worker)
            self.starting.discard(job.worker[1])
            item = job.waiting.popleft()
            results[job.batch].append(self._failed(item, error, on_fail, timeout))
            if job.waiting:
                pending.appendleft((job.batch, list(job.waiting)))

        try:
            while pending or busy:
                while pending and len(busy) < self.workers:
                    b, items = pending.popleft()
                    fresh = not self.idle or self.idle[-1][1] in self.starting  # started by start(), not ready yet
                    worker = self.idle.pop() if self.idle else self._start()
                    # A new worker's clock starts when it says it is ready (imports take a second or two).
                    job = _Busy(worker, b, deque(items), time.monotonic() + (self.START_S if fresh else 0.0))
                    busy[worker[1]] = job
                    try:
                        worker[1].send((items, args))
                    except (OSError, ValueError) as exc:  # a dead idle worker
                        give_up_on_current(job, f"worker failed: {exc}", False)
                now = time.monotonic()
                next_deadline = min((job.deadline(limit) for job in busy.values()), default=now)
                for conn in wait(list(busy), timeout=max(0.0, next_deadline - now)):
                    job = busy[conn]
                    try:
                        kind, payload = conn.recv()
                    except (EOFError, OSError) as exc:  # the worker died (killed, out of memory, crashed)
                        kind, payload = "error", f"worker died ({type(exc).__name__}, exit code {job.worker[0].exitcode})"
                    if kind == "ready":
                        job.since = time.monotonic()
                        self.starting.discard(conn)
                    elif kind == "result":
                        results[job.batch].append(payload)
                        job.waiting.popleft()
                        job.since = time.monotonic()
                        self.failures_in_a_row = 0
                    elif kind == "done":
                        del busy[conn]
                        self.idle.append(job.worker)
                    elif kind == "user_error":
                        raise UserError(payload)
                    else:  # the running item failed: replace the worker, go on with the rest of the batch
                        give_up_on_current(job, f"worker failed: {payload}", False)
                now = time.monotonic()
                for job in [job for job in busy.values() if now > job.deadline(limit)]:
                    if job.waiting:  # stalled inside one SQLite call: only a kill stops it
                        error = f"timeout: over the hard limit of {limit(job.waiting[0]):g} s (worker stopped)"
                        give_up_on_current(job, error, True)
                    else:  # every result came but not "done": a stuck worker, nothing of the batch lost
                        del busy[job.worker[1]]
                        self._stop(job.worker)
        except BaseException:
            for job in busy.values():  # interrupted (Ctrl-C) or a UserError: stop what is running, quietly
                self._stop(job.worker)
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
        self.starting.clear()


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

