import json
import shutil

import pytest

from sql_rlvr import extract
from sql_rlvr import benchmarks
from sql_rlvr import hardness
from sql_rlvr import sandbox
from sql_rlvr import schema
from sql_rlvr import scoring
import utils
from config import MINI_SPIDER_DIR


def test_mini_spider_loads_in_spider_layout(spider):
    train, dev = spider.examples("train"), spider.examples("dev")
    assert len(train) >= 40 and len(dev) >= 15
    assert {ex["db_id"] for ex in train} >= {"college_courses", "bookshop", "music_festival", "soccer_league"}
    for ex in train + dev:
        assert spider.db_path(ex["db_id"]).exists()
        assert sandbox.execute_sql(spider.db_path(ex["db_id"]), ex["query"]).ok, ex["query"]
    levels = {hardness.spider_hardness(ex["query"]) for ex in dev}
    assert levels == {"easy", "medium", "hard", "extra"}


def test_gold_files_match_json():
    for split, gold in (("train_spider", "train_gold.sql"), ("dev", "dev_gold.sql")):
        examples = json.loads((MINI_SPIDER_DIR / f"{split}.json").read_text())
        pairs = scoring.read_gold_file(MINI_SPIDER_DIR / gold)
        assert pairs == [(ex["query"], ex["db_id"]) for ex in examples]


@pytest.mark.parametrize("missing", ["tables.json", "dev.json"])
def test_missing_data_message_names_the_file_and_how_to_get_it(tmp_path, missing):
    copy = tmp_path / "spider"
    shutil.copytree(MINI_SPIDER_DIR, copy)
    (copy / missing).unlink()
    with pytest.raises(benchmarks.SpiderDataError) as err:
        benchmarks.Spider.open(copy).examples("dev")
    message = str(err.value)
    assert missing in message and "yale-lily.github.io/spider" in message and "SPIDER_DIR" in message


def test_missing_folder_and_malformed_json(tmp_path):
    with pytest.raises(benchmarks.SpiderDataError, match="does not exist"):
        benchmarks.Spider.open(tmp_path / "nowhere")
    copy = tmp_path / "spider"
    shutil.copytree(MINI_SPIDER_DIR, copy)
    (copy / "dev.json").write_text("[{\"db_id\": \"bookshop\"")
    with pytest.raises(benchmarks.SpiderDataError, match="not valid JSON"):
        benchmarks.Spider.open(copy).examples("dev")
    (copy / "dev.json").write_text(json.dumps([{"db_id": "bookshop", "question": "q"}]))
    with pytest.raises(benchmarks.SpiderDataError, match="example 0 lacks"):
        benchmarks.Spider.open(copy).examples("dev")


def test_train_others_is_optional_and_added_when_present(tmp_path):
    copy = tmp_path / "spider"
    shutil.copytree(MINI_SPIDER_DIR, copy)
    base = len(benchmarks.Spider.open(copy).examples("train"))
    extra = [{"db_id": "bookshop", "question": "How many books?", "query": "SELECT count(*) FROM book"}]
    (copy / "train_others.json").write_text(json.dumps(extra))
    assert len(benchmarks.Spider.open(copy).examples("train")) == base + 1
    assert len(benchmarks.Spider.open(copy).examples("train", use_train_others=False)) == base


def test_databases_are_built_from_sql_and_rebuilt_when_the_script_changes(tmp_path):
    copy = tmp_path / "spider"
    shutil.copytree(MINI_SPIDER_DIR, copy, ignore=shutil.ignore_patterns("*.sqlite", "*.sha256"))
    spider = benchmarks.Spider.open(copy)
    db = spider.db_path("bookshop")
    assert db.exists()
    script = db.with_suffix(".sql")
    script.write_text(script.read_text() + "\nCREATE TABLE extra_table (x INTEGER);\n")
    benchmarks.Spider.open(copy)
    assert "extra_table" in schema.schema_from_sqlite(db)


def test_a_real_spider_database_without_stamp_is_never_rebuilt(tmp_path, make_db):
    folder = tmp_path / "database" / "real"
    folder.mkdir(parents=True)
    db = make_db("CREATE TABLE t (a INTEGER);", name="database/real/real.sqlite")
    (folder / "real.sql").write_text("CREATE TABLE other (b TEXT);")
    before = db.read_bytes()
    benchmarks.ensure_databases_built(tmp_path / "database")
    assert db.read_bytes() == before


def test_schema_has_types_keys_and_quotes_odd_names(spider):
    music = spider.schema("music_festival")
    assert "CREATE TABLE Song (" in music
    assert '"Release Year" INTEGER' in music
    assert "PRIMARY KEY (Song_ID)" in music
    assert "FOREIGN KEY (Artist_ID) REFERENCES Artist(Artist_ID)" in music
    college = spider.schema("college_courses")
    assert "PRIMARY KEY (Student_ID, Course_ID)" in college
    assert spider.schema("music_festival") == schema.schema_from_sqlite(spider.db_path("music_festival"))  # deterministic


def test_schema_sample_values_survive_invalid_utf8_and_mistyped_columns(make_db):
    db = make_db(
        "CREATE TABLE \"Odd Table\" (id INTEGER PRIMARY KEY, \"Full Name\" TEXT, founded INTEGER);"
        "INSERT INTO \"Odd Table\" VALUES (1, CAST(X'4D6F6E7472E9616C' AS TEXT), 1999);"
        "INSERT INTO \"Odd Table\" VALUES (2, 'Ann', 'N/A');")
    text = schema.schema_from_sqlite(db, sample_values=3)
    assert 'CREATE TABLE "Odd Table" (' in text
    assert "'Montral'" in text  # the invalid byte is dropped, as the official evaluator decodes
    assert "1999" in text and "N/A" in text
    assert text == schema.schema_from_sqlite(db, sample_values=3)


def test_schema_from_tables_json_when_database_is_absent(spider):
    text = schema.schema_from_tables_json(spider.tables["music_festival"])
    assert "CREATE TABLE Song (" in text and '"Release Year" NUMBER' in text
    assert "FOREIGN KEY" in text and "PRIMARY KEY" in text


def test_prompt_round_trip_through_the_chat_template(spider, tiny_tokenizer):
    ex = spider.examples("dev")[0]
    schema = spider.schema(ex["db_id"])
    messages = utils.build_messages(schema, ex["question"], ex["query"])
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    prompt = utils.render_prompt(tiny_tokenizer, messages)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert schema in prompt and ex["question"] in prompt and ex["query"] not in prompt
    full = tiny_tokenizer.apply_chat_template(messages, tokenize=False)
    assert full.startswith(prompt) and full.endswith(ex["query"] + "<|im_end|>\n")
    ids = tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(ids) == prompt


@pytest.mark.parametrize("answer, sql", [
    ("SELECT name FROM t", "SELECT name FROM t"),
    ("SELECT name FROM t;", "SELECT name FROM t"),
    ("```sql\nSELECT a\nFROM t;\n```", "SELECT a\nFROM t"),
    ("```\nSELECT a FROM t\n```\nThis lists a.", "SELECT a FROM t"),
    ("Here is the query:\nSELECT a FROM t WHERE b = 'x;y';", "SELECT a FROM t WHERE b = 'x;y'"),
    ("Sure. SELECT count(*) FROM t", "SELECT count(*) FROM t"),
    ("SELECT a\nFROM t\n\nThis query returns a.", "SELECT a\nFROM t"),
    ("SELECT a FROM t\n\nUNION SELECT b FROM u", "SELECT a FROM t\n\nUNION SELECT b FROM u"),
    ("With pleasure: WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
    ("<think>maybe SELECT</think>\nSELECT 1", "SELECT 1"),
    ("SELECT a FROM t; DROP TABLE t", "SELECT a FROM t"),
    ("select a from t", "select a from t"),
    ("I cannot answer that.", ""),
    ("<think>still thinking", ""),
    ("", ""),
    ("   \n", ""),
])
def test_extract_sql(answer, sql):
    assert extract.extract_sql(answer) == sql


def test_tiny_model_builds_loads_and_generates(tiny_model_dir, tiny_tokenizer, spider):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen3"
    assert sum(p.numel() for p in model.parameters()) < 300_000
    assert tiny_tokenizer.eos_token == "<|im_end|>"
    ex = spider.examples("dev")[0]
    prompt = utils.render_prompt(tiny_tokenizer, utils.build_messages(spider.schema(ex["db_id"]), ex["question"]))
    out = utils.generate(model, tiny_tokenizer, [prompt, prompt], "hf", adapter_dir=None, max_new_tokens=8,
                         batch_size=2, progress=False)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    assert out[0] == out[1]  # greedy and batched: deterministic


def test_keys_missing_from_the_database_come_from_tables_json(make_db):
    # Many Spider .sqlite files declare no keys; tables.json annotates them.
    db = make_db("CREATE TABLE Singer (Singer_ID int, Name text);"
                 "CREATE TABLE concert (concert_id int, singer_id int, FOREIGN KEY (singer_id) REFERENCES Singer(Singer_ID));")
    entry = {"db_id": "x", "table_names_original": ["singer", "concert"],
             "column_names_original": [[-1, "*"], [0, "singer_id"], [0, "name"], [1, "concert_id"], [1, "singer_id"]],
             "column_types": ["text", "number", "text", "number", "number"],
             "primary_keys": [1, 3], "foreign_keys": [[4, 1]]}
    text = schema.schema_from_sqlite(db, tables_entry=entry)
    assert "CREATE TABLE Singer (\n  Singer_ID INT,\n  Name TEXT,\n  PRIMARY KEY (Singer_ID)\n);" in text
    assert "PRIMARY KEY (concert_id)" in text
    assert text.count("FOREIGN KEY (singer_id) REFERENCES") == 1  # declared and annotated: listed once
    assert "PRIMARY KEY" not in schema.schema_from_sqlite(db)
