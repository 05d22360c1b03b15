"""One question from the command line (evaluate.py --ask "QUESTION" --db PATH.sqlite): the printing of an
answer on a real database through the sandbox, the queries of the agentic mode, and the one-line errors
with exit code 2, on the tiny model where a model is needed (--ask with a trained adapter:
tests/test_folder_pipeline.py)."""

import shutil
import sqlite3

import pytest

from config import EXAMPLE_FOLDER_DIR
from conftest import run_script
from sql_rlvr import ask, benchmarks
from sql_rlvr.errors import UserError
from sql_rlvr.sql_tool import SQLTool


def build(path, script="CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);"):
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module")
def example():
    return benchmarks.Folder.open(EXAMPLE_FOLDER_DIR)


def test_ask_prints_the_sql_and_a_small_table_of_its_first_rows(example, capsys):
    db = example.db_path("garden_shop")
    sql = ask.show_answer("SELECT name, price FROM plant WHERE kind = 'fern' ORDER BY price", db, 2.0)
    assert sql == "SELECT name, price FROM plant WHERE kind = 'fern' ORDER BY price"
    assert capsys.readouterr().out.splitlines() == [
        f"SQL: {sql}",
        "name            | price",
        "----------------+------",
        "Boston fern     | 12.5",
        "Maidenhair fern | 15.0",
        "(2 rows)",
    ]
    ask.show_answer("Here it is:\n```sql\nSELECT name FROM plant\n```", db, 2.0, rows=3)
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["[ask] the model's answer:", "    Here it is:", "    ```sql"]  # more than SQL: its words too
    assert out[-7:] == ["SQL: SELECT name FROM plant", "name", "-----------", "Boston fern", "Snake plant", "Lavender",
                        "(3 of 8 rows shown)"]


def test_ask_says_in_one_line_why_nothing_was_answered(example, capsys):
    db = example.db_path("clinic")
    with pytest.raises(UserError, match=r"the model's answer \(above\) holds no SQL"):
        ask.show_answer("I do not know.", db, 2.0)
    with pytest.raises(UserError, match="the model's answer is empty"):
        ask.show_answer("  ", db, 2.0)
    with pytest.raises(UserError, match=r"the SQL fails on .*clinic\.sqlite \(error\): no such column: salary"):
        ask.show_answer("SELECT salary FROM doctor", db, 2.0)
    with pytest.raises(UserError, match=r"\(refused\): not authorized"):  # the sandbox: read-only
        ask.show_answer("WITH x AS (SELECT 1) DELETE FROM doctor", db, 2.0)
    assert "SQL: SELECT salary FROM doctor" in capsys.readouterr().out  # the SQL that failed is shown


def test_ask_shows_the_queries_the_model_ran_before_answering(example):
    db = str(example.db_path("transit"))
    tool = SQLTool(timeout_s=1.0, max_rows=10, workers=0)
    calls = tool.run([(db, "SELECT name FROM stop"), (db, "SELECT nope FROM stop")])
    lines = ask.call_lines(calls)
    assert lines[0] == "[ask] query 1 (ok): SELECT name FROM stop"
    assert lines[1:7] == ["    name", "    Central Station", "    Market Square", "    University", "    Old Pier",
                          "    Airport"]
    assert lines[7] == "    ... (3 more lines)"
    assert lines[8:] == ["[ask] query 2 (error): SELECT nope FROM stop", "    error: no such column: nope"]


def test_a_database_that_does_not_open_is_one_line_before_any_model_loads(tmp_path):
    (tmp_path / "notes.sqlite").write_text("not a database")
    (tmp_path / "empty.sqlite").write_bytes(b"")
    build(tmp_path / "blank.sqlite", "PRAGMA user_version = 1;")
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(build(tmp_path / "ok.sqlite").read_bytes()[:100] + b"\x00" * 50)
    for path, message in ((tmp_path / "missing.sqlite", "no database file"), (tmp_path / "notes.sqlite", "is not a SQLite database"),
                          (tmp_path / "empty.sqlite", "is not a SQLite database"), (tmp_path / "blank.sqlite", "holds no table"),
                          (damaged, "cannot read schema of")):
        with pytest.raises(UserError, match=message) as err:
            ask.open_database(str(path))
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="--ask needs --db PATH.sqlite"):
        ask.open_database(None)
    # the script: exit 2 and one line, whatever the adapter would have been (none is loaded)
    for argv, message in ((["--ask", "How many?", "--db", str(tmp_path / "notes.sqlite")], "is not a SQLite database"),
                          (["--db", str(tmp_path / "ok.sqlite")], '--db is the database of --ask: pass --ask "QUESTION"'),
                          (["--ask", "  ", "--db", str(tmp_path / "ok.sqlite")], "--ask needs a question")):
        out = run_script("evaluate.py", "--preset", "smoke", "--adapter", "none", *argv)
        assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and message in out.stderr, out.stderr[-2000:]
        assert out.stdout == ""


def test_ask_with_the_untrained_model_that_writes_no_sql_exits_2(tmp_path):
    db = shutil.copy(EXAMPLE_FOLDER_DIR / "clinic" / "clinic.sqlite", tmp_path / "my clinic #1.sqlite")
    out = run_script("evaluate.py", "--preset", "smoke", "--adapter", "none", "--ask", "How many doctors are there?",
                     "--db", str(db))
    # the tiny model untrained answers with tokens of its vocabulary, never a query
    assert out.stdout.startswith(f"[ask] backend=hf adapter=none (base model) database={db} (3 tables); prompt ")
    assert "[ask] the model's answer:" in out.stdout
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1] == "error: the model's answer (above) holds no SQL"
