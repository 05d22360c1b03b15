"""Your own data (--benchmark folder --data_dir DIR): the folder's reader on the shipped data/example_folder
and on folders built here, its checks, the schema read from the database, scoring in both layouts, the
config. No model trains here (tests/test_folder_pipeline.py runs the three stages; --ask: tests/test_ask.py)."""

import json
import sqlite3

import pytest

import utils
from config import EXAMPLE_FOLDER_DIR, Config, ConfigError, parse_config, run_defining_config
from conftest import run_script
from sql_rlvr import benchmarks, scoring
from sql_rlvr.errors import DataError, UserError

SCRIPT = """
CREATE TABLE owner (owner_id INTEGER PRIMARY KEY, name TEXT, city TEXT);
CREATE TABLE pet (pet_id INTEGER PRIMARY KEY, name TEXT, kind TEXT, owner_id INTEGER REFERENCES owner(owner_id));
INSERT INTO owner VALUES (1, 'Ada', 'Oslo'), (2, 'Bo', 'Rome');
INSERT INTO pet VALUES (1, 'Rex', 'dog', 1), (2, 'Tom', 'cat', 2), (3, 'Kit', 'cat', 1);
"""


def build(path, script=SCRIPT):
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return path


def make_folder(root, train=None, dev=None, flat=True):
    """A --data_dir folder with one database, `pets`, as <db_id>.sqlite (flat) or <db_id>/<db_id>.sqlite."""
    build(root / ("pets.sqlite" if flat else "pets/pets.sqlite"))
    records = [{"db_id": "pets", "question": "How many pets are there?", "query": "SELECT count(*) FROM pet"},
               {"db_id": "pets", "question": "Name the cats.", "SQL": "SELECT name FROM pet WHERE kind = 'cat'",
                "evidence": "cats are kind = 'cat'"}]
    (root / "train.json").write_text(json.dumps(records if train is None else train))
    (root / "dev.json").write_text(json.dumps(records if dev is None else dev))
    return root


@pytest.fixture(scope="module")
def example():
    return benchmarks.Folder.open(EXAMPLE_FOLDER_DIR)


# ---------------------------------------------------------------- the reader


def test_the_example_folder_reads_both_spellings_of_a_record(example):
    raw = json.loads((EXAMPLE_FOLDER_DIR / "train.json").read_text())
    train, dev = example.examples("train"), example.examples("dev")
    assert len(train) == len(raw) == 31 and len(dev) == len(json.loads((EXAMPLE_FOLDER_DIR / "dev.json").read_text()))
    for ex, record in zip(train, raw):
        assert ex["query"] == record.get("query", record.get("SQL")) and ex["evidence"] == record.get("evidence", "")
    assert any("SQL" in r for r in raw) and any(ex["evidence"] for ex in train)
    assert {ex["db_id"] for ex in train} == {ex["db_id"] for ex in dev} == {"clinic", "garden_shop", "transit"}
    for db_id in ("clinic", "garden_shop", "transit"):  # built from the shipped .sql on first use
        assert example.db_path(db_id) == EXAMPLE_FOLDER_DIR / db_id / f"{db_id}.sqlite" and example.db_path(db_id).exists()
    assert example.db_dir("dev") == EXAMPLE_FOLDER_DIR


def test_the_schema_comes_from_the_database_keys_included(example):
    clinic, shop, transit = (example.schema(db) for db in ("clinic", "garden_shop", "transit"))
    assert "CREATE TABLE visit (\n  visit_id INTEGER,\n" in clinic and "  fee REAL,\n" in clinic
    # `REFERENCES doctor` without a column means doctor's primary key
    assert "FOREIGN KEY (doctor_id) REFERENCES doctor(doctor_id)" in clinic
    assert "FOREIGN KEY (patient_id) REFERENCES patient(patient_id)" in clinic
    assert "PRIMARY KEY (plant_id, supplier_id)" in shop  # a two-column key, in its order
    line_stop = transit.split("CREATE TABLE line_stop")[1]
    assert "PRIMARY KEY" not in line_stop and "FOREIGN KEY (stop_id) REFERENCES stop(stop_id)" in line_stop
    # the style of Spider's schema text: schema.py renders both from the same tables
    spider = benchmarks.Spider.open(EXAMPLE_FOLDER_DIR.parent / "mini_spider")
    assert spider.schema("bookshop").startswith("CREATE TABLE author (\n  Author_ID INTEGER,")


def test_ask_prompts_with_the_text_training_and_evaluation_use(example, tiny_tokenizer):
    cfg = Config(value_hints=2)
    for ex in example.examples("dev"):
        if ex["evidence"]:
            continue  # --ask takes a question alone
        one = benchmarks.Folder.for_database(example.db_path(ex["db_id"]))
        asked = {"db_id": ex["db_id"], "question": ex["question"]}
        assert one.schema(ex["db_id"]) == example.schema(ex["db_id"])
        assert (utils.render_prompt_for(one, asked, cfg, tiny_tokenizer)
                == utils.render_prompt_for(example, ex, cfg, tiny_tokenizer))
    hinted = utils.render_prompt_for(example, example.examples("dev")[2], cfg)[1]["content"]
    assert "city TEXT, -- values matching the question: 'Lyon'" in hinted  # --value_hints reach the prompt


def test_a_tables_json_adds_keys_the_database_does_not_declare(tmp_path):
    root = make_folder(tmp_path / "d")
    build(root / "bare.sqlite", "CREATE TABLE a (x INTEGER, y TEXT); CREATE TABLE b (x INTEGER, z TEXT);")
    (root / "tables.json").write_text(json.dumps([{
        "db_id": "bare", "table_names_original": ["a", "b"],
        "column_names_original": [[-1, "*"], [0, "x"], [0, "y"], [1, "x"], [1, "z"]],
        "primary_keys": [1], "foreign_keys": [[3, 1]]}]))
    schema = benchmarks.Folder.open(root).schema("bare")
    assert "PRIMARY KEY (x)" in schema and "FOREIGN KEY (x) REFERENCES a(x)" in schema
    assert "PRIMARY KEY" not in benchmarks.Folder.for_database(root / "bare.sqlite").schema("bare")


def test_both_layouts_read_and_score_alike(tmp_path):
    records = []
    for layout, flat in (("flat", True), ("nested", False)):
        root = make_folder(tmp_path / layout, flat=flat)
        folder = benchmarks.Folder.open(root)
        dev = folder.examples("dev")
        assert folder.db_path("pets") == root / ("pets.sqlite" if flat else "pets/pets.sqlite")
        assert scoring.db_files(root, "pets") == [str(folder.db_path("pets"))]
        golds = [(ex["query"], ex["db_id"]) for ex in dev]
        preds = ["SELECT count(pet_id) FROM pet", "SELECT name FROM pet WHERE kind = 'dog'"]
        records.append([r["exec_match"] for r in scoring.score_predictions(preds, golds, folder.db_dir("dev"), workers=1)])
        votes = scoring.vote_predictions([[p, p] for p in preds], golds, root, workers=1)
        assert [v["exec_match"] for v in votes] == records[-1] and all(v["votes"] == 2 for v in votes)
    assert records == [[True, False], [True, False]]
    with pytest.raises(UserError, match=r"no database for nope under"):
        scoring.check_db_dir(tmp_path / "flat", ["nope"])


@pytest.mark.parametrize("case, message", [
    ("no question", r"train\.json record 1 has no question"),
    ("no query", r"train\.json record 1 has no query \(or SQL\)"),
    ("unknown db", r"train\.json record 1: db_id 'zoo' has no database in .* \(expected zoo\.sqlite or zoo/zoo\.sqlite\)"),
    ("not sqlite", r"train\.json record 0: .*pets\.sqlite is not a SQLite database"),
    ("not a list", r"train\.json should hold a list of records"),
    ("bad json", r"train\.json is not valid JSON"),
    ("no train", r"missing .*train\.json: --data_dir names a folder holding train\.json and dev\.json"),
    ("both layouts", r"holds both .*pets\.sqlite and .*pets/pets\.sqlite: keep one database per db_id"),
])
def test_bad_input_is_one_line_naming_the_file_and_the_record(tmp_path, case, message):
    good = {"db_id": "pets", "question": "How many pets?", "query": "SELECT count(*) FROM pet"}
    bad = {"no question": {"db_id": "pets", "query": "SELECT 1"}, "no query": {"db_id": "pets", "question": "Why?"},
           "unknown db": {**good, "db_id": "zoo"}}.get(case, good)
    root = make_folder(tmp_path / "d", train=[good, bad])
    if case == "not sqlite":
        (root / "pets.sqlite").write_text("pets,owners\n1,2\n")
    elif case == "not a list":
        (root / "train.json").write_text(json.dumps({"records": [good]}))
    elif case == "bad json":
        (root / "train.json").write_text("[{")
    elif case == "no train":
        (root / "train.json").unlink()
    elif case == "both layouts":
        build(root / "pets" / "pets.sqlite")
    with pytest.raises(DataError, match=message) as err:
        benchmarks.Folder.open(root).examples("train")
    assert "\n" not in str(err.value)


def test_a_missing_data_dir_is_one_line(tmp_path):
    with pytest.raises(DataError, match="--benchmark folder needs --data_dir DIR"):
        benchmarks.Folder.open("")
    with pytest.raises(DataError, match=r"--data_dir .*nowhere is not a folder"):
        benchmarks.Folder.open(tmp_path / "nowhere")
    out = run_script("train_sft.py", "--preset", "smoke", "--benchmark", "folder", "--data_dir", str(tmp_path / "nowhere"),
                     "--output_dir", str(tmp_path / "o"))
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "is not a folder" in out.stderr
    assert not (tmp_path / "o" / "sft" / "run_info.json").exists()


def test_gold_queries_that_fail_or_time_out_are_left_out_with_a_count(tmp_path, capsys):
    good = {"db_id": "pets", "question": "How many pets?", "query": "SELECT count(*) FROM pet"}
    broken = [{"db_id": "pets", "question": "Ages?", "query": "SELECT age FROM pet"},
              {"db_id": "pets", "question": "Forever?", "query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                                                                  "SELECT x + 1 FROM c) SELECT count(*) FROM c"},
              {"db_id": "pets", "question": "Delete?", "query": "DELETE FROM pet"},
              {"db_id": "pets", "question": "Owners?", "query": "SELECT nme FROM owner"}]
    root = make_folder(tmp_path / "d", train=[good, *broken, good])
    before = (root / "pets.sqlite").read_bytes()
    folder = benchmarks.Folder.open(root, gold_timeout_s=0.3)
    kept = folder.examples("train")
    assert kept == [{**good, "evidence": ""}] * 2
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0 and "train.json: 4 of 6 records left out" in line
    assert "record 1 (pets): error: no such column: age" in line and "record 2 (pets): timeout" in line
    assert "record 3 (pets): refused" in line and line.endswith("; ...")  # the first 3 named
    assert folder.examples("train") is kept and capsys.readouterr().out == ""  # checked once per split
    assert (root / "pets.sqlite").read_bytes() == before  # DELETE never ran
    root2 = make_folder(tmp_path / "e", dev=broken[:1])
    with pytest.raises(DataError, match=r"dev\.json: no record left whose gold query runs"):
        benchmarks.Folder.open(root2).examples("dev")


# ---------------------------------------------------------------- config and the Benchmark description


def test_folder_is_a_benchmark_whose_data_dir_defines_its_runs(tmp_path):
    cfg, _ = parse_config(["--preset", "smoke", "--benchmark", "folder"])
    assert cfg.data_dir == str(EXAMPLE_FOLDER_DIR)
    identity = run_defining_config(cfg, "train_sft.py")
    assert identity["data_dir"] == str(EXAMPLE_FOLDER_DIR) and "spider_dir" not in identity and "bird_dir" not in identity
    spider, _ = parse_config(["--preset", "smoke"])
    assert "data_dir" not in run_defining_config(spider, "train_sft.py")
    mix, _ = parse_config(["--preset", "smoke", "--train_benchmarks", "spider,folder"])
    assert {"spider_dir", "data_dir"} <= set(run_defining_config(mix, "train_grpo.py"))
    assert set(utils.open_training_datasets(mix)) == {"spider", "folder"}
    with pytest.raises(ConfigError, match="--benchmark must be spider, bird or folder"):
        parse_config(["--benchmark", "mine"])
    spec = benchmarks.get("folder")
    assert (spec.rule, spec.metrics_key, spec.eval_splits) == ("spider", "by_hardness", ("dev",))
    spec.check_options(Config(benchmark="folder", keep_distinct=True))  # Spider's comparison, with its flag
    with pytest.raises(UserError, match="--ts_db_dir is Spider's"):
        spec.check_options(Config(benchmark="folder", ts_db_dir="x"))
    with pytest.raises(UserError, match="--keep_distinct is Spider's"):
        benchmarks.get("bird").check_options(Config(benchmark="bird", keep_distinct=True))
    with pytest.raises(UserError, match="not a --data_dir folder split: use one of dev"):
        spec.check_eval_split("test")


def test_score_only_reads_a_flat_folder(tmp_path):
    root = make_folder(tmp_path / "d")
    (tmp_path / "pred.txt").write_text("SELECT count(*) FROM pet\nSELECT name FROM pet\n")
    (tmp_path / "gold.txt").write_text("SELECT count(*) FROM pet\tpets\nSELECT name FROM pet WHERE kind = 'cat'\tpets\n")
    out = run_script("evaluate.py", "--score_only", "--benchmark", "folder", "--pred", str(tmp_path / "pred.txt"),
                     "--gold", str(tmp_path / "gold.txt"), "--db_dir", str(root), "--results", str(tmp_path / "results.jsonl"))
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["ex"] == 0.5 and "Spider's" in metrics["comparator"]
