"""execute_sql on real SQLite files: hostile SQL never changes the database or creates a file."""

import hashlib
import os
import threading
import time

import pytest

import utils

SCRIPT = ("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT);"
          "INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, CAST(X'4361666583' AS TEXT));")


def snapshot(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(os.listdir(folder))}


def test_select_returns_rows(make_db):
    db = make_db(SCRIPT)
    result = utils.execute_sql(db, "SELECT a FROM t WHERE a < 3 ORDER BY a")
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
    result = utils.execute_sql(db, sql.format(dir=tmp_path))
    assert not result.ok and result.kind in ("refused", "error")
    assert snapshot(tmp_path) == before  # same files, same bytes
    assert utils.execute_sql(db, "SELECT count(*) FROM t").rows == [(3,)]


@pytest.mark.parametrize("sql", [
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c ORDER BY x DESC LIMIT 1",
    "SELECT count(*) FROM t a, t b, t c, t d, t e, t f, t g, t h, t i, t j, t k, t l, t m, t n, t o, t p, t q, t r",
])
def test_runaway_queries_return_within_the_limit(make_db, sql):
    db = make_db(SCRIPT)
    start = time.monotonic()
    result = utils.execute_sql(db, sql, timeout_s=0.5)
    assert time.monotonic() - start < 1.5
    assert result.kind in ("timeout", "too_large")


def test_printf_padding_cannot_stall_a_single_step(make_db):
    db = make_db(SCRIPT)
    start = time.monotonic()
    result = utils.execute_sql(db, "SELECT printf('%.*c', 2000000000, 'x')", timeout_s=0.5)
    assert time.monotonic() - start < 1.0 and result.kind == "refused"


def test_result_size_is_bounded(make_db):
    db = make_db(SCRIPT)
    assert utils.execute_sql(db, "SELECT randomblob(100000000)").kind == "error"  # over SQLite's length limit
    big = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 50) SELECT x FROM c"
    assert utils.execute_sql(db, big, max_rows=10).kind == "too_large"


def test_invalid_utf8_never_raises(make_db):
    db = make_db(SCRIPT)
    result = utils.execute_sql(db, "SELECT b FROM t ORDER BY a")
    assert result.ok and result.rows == [("x",), ("y",), ("Cafe",)]  # invalid bytes dropped, like the official evaluator


def test_missing_database_is_an_error_not_an_exception(tmp_path):
    result = utils.execute_sql(tmp_path / "absent.sqlite", "SELECT 1")
    assert result.kind == "error" and "cannot open" in result.error
    assert not (tmp_path / "absent.sqlite").exists()


def test_safe_from_many_threads(make_db):
    db = make_db(SCRIPT)
    errors = []

    def work(i):
        for _ in range(50):
            if i % 2:
                r = utils.execute_sql(db, "SELECT sum(a) FROM t")
                if r.rows != [(6,)]:
                    errors.append(r)
            else:
                utils.execute_sql(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c",
                                  timeout_s=0.01)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
