"""--value_hints: stored values that match the question, shown under their column in the schema prompt
(sql_rlvr/value_index.py's cached FTS5 index, rapidfuzz's ranking), on the shipped mini-Spider and mini-BIRD."""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sql_rlvr import benchmarks
from sql_rlvr import errors
from sql_rlvr import run_folders
import utils
from sql_rlvr import value_index
from conftest import ROOT
from config import MINI_BIRD_DIR, MINI_SPIDER_DIR, SCRIPTS, Config, ConfigError, parse_config, run_defining_config
from sql_rlvr.schema import VALUE_HINTS_LABEL

HINT = VALUE_HINTS_LABEL


@pytest.fixture(scope="module")
def bird() -> benchmarks.Bird:
    bird = benchmarks.Bird.open(MINI_BIRD_DIR)
    bird.examples("dev")
    bird.examples("train")
    return bird


def hinted_columns(schema_text: str) -> dict[tuple[str, str], str]:
    """{(table, column): what its comment shows after HINT} read back from the CREATE TABLE text."""
    found, table = {}, None
    for line in schema_text.splitlines():
        if line.startswith("CREATE TABLE "):
            table = line.split()[2]
        elif HINT in line:
            found[(table, line.split()[0])] = line.split(HINT, 1)[1]
    return found


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_a_question_naming_a_stored_value_gets_it_under_its_column(spider):
    ex = {"db_id": "soccer_league", "question": "Which teams are based in Northport?"}
    assert hinted_columns(spider.example_schema(ex, 0, 3)) == {("team", "City"): "'Northport'"}
    ex = {"db_id": "bookshop", "question": "Which authors from japan wrote mystery books?"}  # case folded
    assert hinted_columns(spider.example_schema(ex, 0, 3)) == {("author", "Country"): "'Japan'",
                                                               ("book", "Genre"): "'Mystery'"}
    # Together with sample values: the hint follows them in the same comment.
    text = spider.example_schema({"db_id": "soccer_league", "question": "Teams in Northport?"}, 2, 3)
    (line,) = [line for line in text.splitlines() if HINT in line]
    assert "-- e.g. " in line and line.endswith(HINT + "'Northport'")
    # No match, no hint: the plain schema.
    ex = {"db_id": "bookshop", "question": "How many books are there?"}
    assert spider.example_schema(ex, 0, 3) == spider.schema("bookshop")


def test_bird_matches_the_evidence_too(bird):
    ex = {"db_id": "food_inspection", "question": "What is the average score of these visits?",
          "evidence": "these visits refers to type = 'Complaint'"}
    assert hinted_columns(bird.example_schema(ex, 0, 3)) == {("inspections", "type"): "'Complaint'"}
    assert bird.example_schema({**ex, "evidence": ""}, 0, 3) == bird.schema("food_inspection")
    # A value of fewer than 3 characters or a code is matched as a whole word, as written.
    ex = {"db_id": "food_inspection", "question": "What percentage of Eastport businesses have tax code H24?",
          "evidence": "Eastport refers to city = 'Eastport'"}
    assert hinted_columns(bird.example_schema(ex, 0, 1)) == {("businesses", "city"): "'Eastport'",
                                                             ("businesses", "tax_code"): "'H24'"}


def test_id_number_long_and_undecodable_values_are_not_offered(bird, make_db, tmp_path):
    # mini-BIRD: ids and scores are INTEGER columns; dates in a TEXT column have no letter.
    index = value_index.value_index(bird.db_path("food_inspection"), tmp_path / "cache")
    assert ("businesses", "business_id") not in index.columns() and ("inspections", "score") not in index.columns()
    ex = {"db_id": "food_inspection", "question": "Which business 3 had a violation on 2023-06-11 scoring 71?",
          "evidence": ""}
    assert bird.example_schema(ex, 0, 3) == bird.schema("food_inspection")
    # The owner stored as Latin-1 bytes, not UTF-8, could not be typed into a query: not offered either.
    assert index.lookup("Which business does Jose Munoz (Jose Muoz) own?", 3) == {}
    # An id column holding text, and a value past MAX_VALUE_CHARS, are skipped; the rest of the table is not.
    long_text = "Harbour Noodles serves noodles " * 4
    db = make_db(f"""CREATE TABLE orders (order_id TEXT, CustomerId TEXT, status TEXT, note TEXT);
                     INSERT INTO orders VALUES ('Harbour-1', 'Harbour', 'Shipped', '{long_text}');""")
    index = value_index.value_index(db, tmp_path / "cache")
    assert index.columns() == [("orders", "status")]
    assert index.lookup("Which Harbour orders were shipped? Harbour Noodles serves noodles", 3) == {
        ("orders", "status"): ["Shipped"]}


def test_lookups_are_deterministic_and_the_same_from_a_fresh_build(spider, tmp_path):
    questions = {}
    for ex in spider.examples("dev") + spider.examples("train"):
        questions.setdefault(ex["db_id"], []).append(ex["question"])
    for db_id, texts in sorted(questions.items()):
        first = value_index.value_index(spider.db_path(db_id), tmp_path / "a")
        again = value_index.value_index(spider.db_path(db_id), tmp_path / "b")  # another cache: built anew
        assert first is not again
        answers = [first.lookup(t, 3) for t in texts]
        assert answers == [again.lookup(t, 3) for t in texts] == [first.lookup(t, 3) for t in texts]
    assert any(answers)


def test_the_index_is_cached_outside_the_database_and_rebuilt_when_it_changes(tmp_path):
    db = tmp_path / "db" / "food_inspection.sqlite"
    db.parent.mkdir()
    shutil.copy(MINI_BIRD_DIR / "dev" / "dev_databases" / "food_inspection" / "food_inspection.sqlite", db)
    before, listing = sha256(db), sorted(os.listdir(db.parent))
    cache = tmp_path / "cache"
    index = value_index.value_index(db, cache)
    assert index.lookup("restaurants in Eastport", 3) == {("businesses", "city"): ["Eastport"]}
    # Never written into the database or beside it; the cache holds one file per database (and the empty
    # lock file its builder took), nothing half-written.
    assert sha256(db) == before and sorted(os.listdir(db.parent)) == listing
    name = value_index.index_path_for(db, cache).name
    assert sorted(p.name for p in cache.iterdir()) == [name, name + ".lock"]
    built = value_index.index_path_for(db, cache).stat().st_mtime_ns
    assert value_index.value_index(db, cache) is index  # unchanged file: the open index, not a rebuild

    conn = sqlite3.connect(db)
    conn.execute("UPDATE businesses SET city = 'Northgate' WHERE city = 'Eastport'")
    conn.commit()
    conn.close()
    st = db.stat()  # the cache is keyed by size and mtime: make sure a coarse clock cannot hide the change
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    fresh = value_index.value_index(db, cache)
    assert fresh is not index and value_index.index_path_for(db, cache).stat().st_mtime_ns != built
    assert fresh.lookup("restaurants in Eastport", 3) == {}
    assert fresh.lookup("restaurants in Northgate", 3) == {("businesses", "city"): ["Northgate"]}
    assert sorted(p.name for p in cache.iterdir()) == [name, name + ".lock"]


def test_default_zero_keeps_todays_prompts_byte_for_byte(spider, bird):
    # Every mini schema, with and without sample values and BIRD's descriptions, as the code before
    # --value_hints rendered it (sha256 taken at commit 0a7a373): the schema refactor changed no byte.
    # If a mini database or the schema text changes on purpose, take the new digest.
    digest = hashlib.sha256()
    for db in sorted(spider.tables):
        for k in (0, 3):
            digest.update(spider.schema(db, k).encode() + b"\0")
    for described in (False, True):
        dataset = benchmarks.Bird.open(MINI_BIRD_DIR, column_descriptions=described)
        for split in ("dev", "train"):
            dataset.examples(split)
        for db in sorted(dataset.tables):
            for k in (0, 3):
                digest.update(dataset.schema(db, k).encode() + b"\0")
    assert digest.hexdigest() == "a167fc927f61e5e95bdff68958bc4feb77278330f35790d4d58665a2cddd7e4a"
    # And every prompt is the schema of its database, as before, whatever the question names.
    for benchmark, dataset, examples in (("spider", spider, spider.examples("dev") + spider.examples("train")),
                                         ("bird", bird, bird.examples("dev") + bird.examples("train"))):
        cfg = Config(benchmark=benchmark, spider_dir=str(MINI_SPIDER_DIR), bird_dir=str(MINI_BIRD_DIR))
        for ex in examples:
            assert utils.render_prompt_for(dataset, ex, cfg) == utils.build_messages(
                dataset.schema(ex["db_id"]), ex["question"], evidence=ex.get("evidence", ""))


def test_the_flag_is_part_of_every_stages_run_identity(tmp_path):
    for script in SCRIPTS:
        assert run_defining_config(Config(value_hints=3), script)["value_hints"] == 3
    with pytest.raises(ConfigError, match="--value_hints must be 0 or more"):
        parse_config(["--value_hints", "-1"])
    assert parse_config(["--value_hints", "3"])[0].value_hints == 3

    # A checkpoint trained without hints refuses --resume with them; one recorded before the flag
    # existed counts as trained without them (resumes as it was, refuses hints).
    out = tmp_path / "sft"
    checkpoint = out / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2, "max_steps": 4}))
    for identity in (run_defining_config(Config(output_dir=str(tmp_path)), "train_sft.py"),
                     {k: v for k, v in run_defining_config(Config(), "train_sft.py").items() if k != "value_hints"}):
        run = {"run_id": "r1", "stage": "sft", "config": identity}
        (out / run_folders.RUN_FILE).write_text(json.dumps(run))
        (checkpoint / run_folders.RUN_FILE).write_text(json.dumps({**run, "step": 2}))
        with pytest.raises(errors.UserError, match=r"other settings \(value_hints: 0 -> 3\)"):
            run_folders.prepare_output_dir(out, Config(output_dir=str(tmp_path), resume=True, value_hints=3), "run_info.json")
        assert run_folders.prepare_output_dir(out, Config(output_dir=str(tmp_path), resume=True), "run_info.json") == str(checkpoint)


def stray_files(folder) -> list[str]:
    """What a folder holds besides value indexes and their lock files (a temporary file, a stray database)."""
    return sorted(p.name for p in Path(folder).iterdir() if not p.name.endswith((".sqlite", ".sqlite.lock")))


def test_database_paths_with_uri_characters_are_indexed(make_db, tmp_path):
    # '#' ends a URI's path and '%20' is an escape: a raw path opened another file or none at all.
    script = "CREATE TABLE team (name TEXT, city TEXT); INSERT INTO team VALUES ('Harbour Hawks', 'Northport');"
    cache = tmp_path / "cache #1"
    for name in ("ab#c/teams.sqlite", "teams%20x.sqlite", "what?mode=rw/a b.sqlite"):
        db = tmp_path / name
        db.parent.mkdir(exist_ok=True)
        make_db(script, name)
        listing = sorted(os.listdir(db.parent))
        index = value_index.value_index(db, cache)
        assert index.lookup("Teams from Northport?", 3) == {("team", "city"): ["Northport"]}, name
        assert sorted(os.listdir(db.parent)) == listing  # nothing opened or created beside it
        assert stray_files(cache) == []
    assert sorted(os.listdir(tmp_path)) == sorted(["ab#c", "teams%20x.sqlite", "what?mode=rw", "cache #1"])
    # A file that is not a database, or is empty: one line, and nothing left in the cache.
    for name, content in (("bad%20file.sqlite", b"not a database, " * 100), ("empty.sqlite", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(errors.UserError, match="--value_hints: cannot index|not a database"):
            value_index.value_index(tmp_path / name, cache)
        assert stray_files(cache) == []
    with pytest.raises(errors.UserError, match="no database file"):
        value_index.value_index(tmp_path / "missing%20.sqlite", cache)


def test_a_column_indexes_at_most_its_most_frequent_values(make_db, tmp_path, monkeypatch):
    monkeypatch.setattr(value_index, "MAX_VALUES_PER_COLUMN", 50)
    rows = [(f"https://example.org/page/{i}", "Rare" if i % 2 else "Common") for i in range(300)]
    rows += [("https://example.org/popular", "Common")] * 3 + [("https://example.org/liked", "Common")] * 2
    db = make_db("CREATE TABLE pages (url TEXT, kind TEXT);")
    conn = sqlite3.connect(db)
    conn.executemany("INSERT INTO pages VALUES (?, ?)", rows)
    conn.commit()
    conn.close()
    stored = value_index.value_index(db, tmp_path / "cache").all_values()
    urls = stored[("pages", "url")]
    # The most frequent first, then ties by value: deterministic, and the cap holds.
    assert len(urls) == 50 and {"https://example.org/popular", "https://example.org/liked"} <= set(urls)
    assert set(urls) == {"https://example.org/popular", "https://example.org/liked"} | {
        u for u, _ in sorted(rows[:300])[:48]}
    assert sorted(stored[("pages", "kind")]) == ["Common", "Rare"]


# A child process that asks for the index of a database. Its build is watched (each call prints BUILT)
# and held until both children have asked, so that the two requests overlap for sure.
CHILD = """
import json, sys, time
from pathlib import Path
from sql_rlvr import value_index
db, cache, ready, me = sys.argv[1:]
real = value_index.build_index
def build(*args):
    print("BUILT", flush=True)
    for _ in range(1000):
        if len(list(Path(ready).iterdir())) == 2:
            break
        time.sleep(0.01)
    time.sleep(0.5)  # the other one is now waiting for the lock (or, without one, building too)
    real(*args)
value_index.build_index = build
(Path(ready) / me).touch()
print(json.dumps(sorted(value_index.value_index(db, cache).all_values().items())), flush=True)
"""


def test_one_process_builds_an_index_while_the_others_wait_for_it(make_db, tmp_path):
    db = make_db("CREATE TABLE team (name TEXT, city TEXT); INSERT INTO team VALUES ('Harbour Hawks', 'Northport');")
    cache, ready = tmp_path / "cache", tmp_path / "ready"
    ready.mkdir()
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(cache), str(ready), me],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for me in ("a", "b")]
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err for _out, err in outputs]
    lines = [out.splitlines() for out, _err in outputs]
    assert sorted(len(out) for out in lines) == [1, 2]  # exactly one printed BUILT
    assert sum(out.count("BUILT") for out in lines) == 1
    assert lines[0][-1] == lines[1][-1] and "Northport" in lines[0][-1]
    assert stray_files(cache) == []


def test_a_killed_builder_blocks_nobody_and_leaves_no_temporary_file(make_db, tmp_path):
    db = make_db("CREATE TABLE team (name TEXT, city TEXT); INSERT INTO team VALUES ('Harbour Hawks', 'Northport');")
    cache, marker = tmp_path / "cache", tmp_path / "building"
    hang = ("import sys, time, pathlib\nfrom sql_rlvr import value_index\n"
            "def hang(*args):\n"
            "    pathlib.Path(sys.argv[2]).touch()\n"
            "    time.sleep(60)\n"
            "value_index.indexed_column = hang  # called mid-build, with the lock held and the temporary file open\n"
            "value_index.value_index(sys.argv[1], sys.argv[3])\n")
    child = subprocess.Popen([sys.executable, "-c", hang, str(db), str(marker), str(cache)], cwd=ROOT)
    try:
        for _ in range(3000):
            if marker.exists() or child.poll() is not None:
                break
            time.sleep(0.01)
        assert marker.exists()
    finally:
        child.kill()
        child.wait()
    assert stray_files(cache)  # what the killed builder left: its temporary file
    start = time.monotonic()
    index = value_index.value_index(db, cache)
    assert time.monotonic() - start < 10 and index.lookup("Teams from Northport?", 3)
    assert stray_files(cache) == []
