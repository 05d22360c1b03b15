"""execute_sql on real SQLite files: hostile SQL never changes the database or creates a file."""

import hashlib
import os
import threading
import time

import pytest

from sql_rlvr import benchmarks
from sql_rlvr import errors
from sql_rlvr import execution_reward
from sql_rlvr import sandbox
from sql_rlvr import schema

SCRIPT = ("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT);"
          "INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, CAST(X'4361666583' AS TEXT));")


def snapshot(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(os.listdir(folder))}


def test_select_returns_rows(make_db):
    db = make_db(SCRIPT)
    result = sandbox.execute_sql(db, "SELECT a FROM t WHERE a < 3 ORDER BY a")
    assert result.ok and result.rows == [(1,), (2,)]


@pytest.mark.parametrize("sql", [
    "DROP TABLE t",
    "DELETE FROM t",
    "UPDATE t SET b = 'z'",
    "INSERT INTO t VALUES (9, 'z')",
    "CREATE TABLE u (x)",
    "CREATE TEMP TABLE u (x)",
    "ALTER TABLE t ADD COLUMN c",
    "ATTACH DATABASE '{dir}/other.db' AS other",
    "VACUUM",
    "VACUUM INTO '{dir}/copy.db'",
    "PRAGMA journal_mode = WAL",
    "PRAGMA user_version = 7",
    "REINDEX",
    "ANALYZE",
    "BEGIN",
    "SELECT load_extension('/tmp/evil')",
    "SELECT a FROM t; DROP TABLE t",
    "WITH d AS (SELECT 1) DELETE FROM t",
])
def test_refused_statements_leave_database_byte_identical_and_create_no_file(make_db, tmp_path, sql):
    db = make_db(SCRIPT)
    before = snapshot(tmp_path)
    result = sandbox.execute_sql(db, sql.format(dir=tmp_path))
    assert not result.ok and result.kind in ("refused", "error")
    assert snapshot(tmp_path) == before  # same files, same bytes
    assert sandbox.execute_sql(db, "SELECT count(*) FROM t").rows == [(3,)]


@pytest.mark.parametrize("sql", [
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c ORDER BY x DESC LIMIT 1",
    "SELECT count(*) FROM t a, t b, t c, t d, t e, t f, t g, t h, t i, t j, t k, t l, t m, t n, t o, t p, t q, t r",
])
def test_runaway_queries_return_within_the_limit(make_db, sql):
    db = make_db(SCRIPT)
    start = time.monotonic()
    result = sandbox.execute_sql(db, sql, timeout_s=0.5)
    assert time.monotonic() - start < 1.5
    assert result.kind in ("timeout", "too_large")


def test_printf_padding_cannot_stall_a_single_step(make_db):
    db = make_db(SCRIPT)
    start = time.monotonic()
    result = sandbox.execute_sql(db, "SELECT printf('%.*c', 2000000000, 'x')", timeout_s=0.5)
    assert time.monotonic() - start < 1.0 and result.kind == "refused"


def _doubled(n: int, char: str, name: str) -> str:
    """A CTE `name(s)` whose largest row is `char` repeated 2**k <= n times, built without zeroblob."""
    return f"{name}(s) AS (SELECT '{char}' UNION ALL SELECT s || s FROM {name} WHERE length(s) * 2 <= {n})"


def _stalling(n: int, body: str) -> str:
    return (f"WITH RECURSIVE {_doubled(n, 'a', 'd')}, h(s) AS (SELECT max(s) FROM d), "
            f"{_doubled(n // 16, 'b', 'e')}, g(t) AS (SELECT max(s) FROM e) {body}")


# One SQLite function call is one VM step: the progress handler never sees it. Under the former
# limits (1 MiB values, 50k-character patterns, zeroblob allowed) and timeout_s=0.5 these ran
# 5.4 s (zeroblob instr), 48 s (zeroblob LIKE), 4.0 s (instr), 4.3 s (replace), 55-66 s (long
# LIKE/GLOB patterns) and 86 s (trim), and returned "ok". SQLite's own limits now make each short or
# an error; the WorkerPool (reward, scorer) makes the time limit hard for what remains.
STALLING = {
    "zeroblob_instr": "SELECT instr(hex(zeroblob(500000)), hex(zeroblob(250000)) || '1')",
    "zeroblob_like": "SELECT hex(zeroblob(500000)) LIKE '%' || hex(zeroblob(20000)) || '1'",
    "instr": _stalling(1_000_000, "SELECT instr(s, substr(s, 1, length(s) / 2) || 'b') FROM h"),
    "replace": _stalling(1_000_000, "SELECT length(replace(s, substr(s, 1, length(s) / 2) || 'b', '')) FROM h"),
    "like_long_pattern": _stalling(60_000, "SELECT s LIKE '%' || substr(s, 1, length(s) / 16) || 'b' FROM h"),
    "glob_long_pattern": _stalling(60_000, "SELECT s GLOB '*' || substr(s, 1, length(s) / 16) || 'b' FROM h"),
    "like": _stalling(1_000_000, "SELECT s LIKE '%' || substr(s, 1, 400) || 'b' FROM h"),
    "trim": _stalling(1_000_000, "SELECT length(trim(s, t || 'a')) FROM h, g"),
    "many_calls": _stalling(60_000, "SELECT " + " + ".join(["instr(s, substr(s, 1, 30000) || 'b')"] * 200) + " FROM h"),
}


@pytest.mark.parametrize("name", sorted(STALLING))
def test_single_call_stalls_are_bounded_by_sqlite_limits(make_db, name):
    db = make_db(SCRIPT)
    start = time.monotonic()
    result = sandbox.execute_sql(db, STALLING[name], timeout_s=0.5)
    assert time.monotonic() - start < 3.0, result  # a loose bound: a correctness property, not a speed target
    assert result.kind in ("refused", "error", "timeout"), result


def test_a_stall_within_sqlite_limits_is_stopped_by_the_worker_pool(make_db):
    # trim(x, y) costs len(x) x len(y) character comparisons in one call: 65536 x 8193 still takes
    # seconds within SQLite's limits. Only killing the process stops it; the other answers of its
    # batch are still scored.
    db = make_db(SCRIPT)
    trims = ", ".join(["length(trim(s, t || t || 'a'))"] * 32)  # tens of seconds in one VM step
    stall = _stalling(65_536, f"SELECT max({trims}) FROM h, g")
    reward = execution_reward.SQLExecutionReward(timeout_s=0.2, workers=1)
    reward.hard_limit_s = 1.0
    try:
        start = time.monotonic()
        rewards = reward(prompts=["q"] * 3, completions=["SELECT count(*) FROM t", stall, "SELECT count(*) FROM t"],
                         gold_sql=["SELECT count(*) FROM t"] * 3, db_path=[str(db)] * 3)
        assert time.monotonic() - start < 1.0 + 14.0  # the hard limit, plus starting two worker processes
        assert rewards == [5.0, -1.0, 5.0]
        metrics = reward.pop_metrics()
        assert metrics["outcome/timeout"] == pytest.approx(1 / 3) and metrics["outcome/worker_failed"] == 0.0
    finally:
        reward.close()


def test_result_size_is_bounded(make_db):
    db = make_db(SCRIPT)
    assert sandbox.execute_sql(db, "SELECT randomblob(100000000)").kind == "refused"
    doubling = "WITH RECURSIVE d(s) AS (SELECT 'a' UNION ALL SELECT s || s FROM d) SELECT length(s) FROM d"
    assert sandbox.execute_sql(db, doubling).kind == "error"  # over SQLite's length limit
    big = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 50) SELECT x FROM c"
    assert sandbox.execute_sql(db, big, max_rows=10).kind == "too_large"


def test_invalid_utf8_never_raises(make_db):
    db = make_db(SCRIPT)
    result = sandbox.execute_sql(db, "SELECT b FROM t ORDER BY a")
    assert result.ok and result.rows == [("x",), ("y",), ("Cafe",)]  # invalid bytes dropped, like the official evaluator


def test_missing_database_is_an_error_not_an_exception(tmp_path):
    result = sandbox.execute_sql(tmp_path / "absent.sqlite", "SELECT 1")
    assert result.kind == "error" and "cannot open" in result.error
    assert not (tmp_path / "absent.sqlite").exists()


def test_safe_from_many_threads(make_db):
    db = make_db(SCRIPT)
    errors = []

    def work(i):
        for _ in range(50):
            if i % 2:
                r = sandbox.execute_sql(db, "SELECT sum(a) FROM t")
                if r.rows != [(6,)]:
                    errors.append(r)
            else:
                sandbox.execute_sql(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c",
                                  timeout_s=0.01)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_zero_byte_database_is_reported_as_an_empty_file(tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    result = sandbox.execute_sql(empty, "SELECT name FROM singer")
    assert result.kind == "error" and "empty file, not a database" in result.error  # not "no such table"
    with pytest.raises(errors.DataError, match="empty file, not a database"):
        schema.schema_from_sqlite(empty)
    assert empty.read_bytes() == b""


def test_zero_byte_database_with_its_sql_source_is_rebuilt(tmp_path):
    folder = tmp_path / "database" / "tiny"
    folder.mkdir(parents=True)
    (folder / "tiny.sql").write_text("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (7);")
    benchmarks.ensure_databases_built(tmp_path / "database")
    (folder / "tiny.sqlite").write_bytes(b"")  # an interrupted copy
    benchmarks.ensure_databases_built(tmp_path / "database")
    assert sandbox.execute_sql(folder / "tiny.sqlite", "SELECT a FROM t").rows == [(7,)]
