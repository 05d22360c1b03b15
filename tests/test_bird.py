"""BIRD: the shipped mini-BIRD in BIRD's release layout, the prompt extras, BIRD's match rule, its files."""

import json
import shutil

import pytest

from sql_rlvr import benchmarks
from sql_rlvr import errors
from sql_rlvr import execution_reward
from sql_rlvr import sandbox
from sql_rlvr import scoring
import utils
from config import BENCHMARK_DEFAULTS, MINI_BIRD_DIR, ConfigError, parse_config

DB = "food_inspection"


@pytest.fixture(scope="module")
def bird() -> benchmarks.Bird:
    return benchmarks.Bird.open(MINI_BIRD_DIR)


@pytest.fixture(scope="module")
def dev(bird):
    return bird.examples("dev")


# ---------------------------------------------------------------- loader


def test_loader_reads_birds_layout_and_fields(bird, dev):
    train = bird.examples("train")
    mini = bird.examples("mini_dev")
    raw_dev = json.loads((MINI_BIRD_DIR / "dev" / "dev.json").read_text())
    assert len(dev) == len(raw_dev) and 0 < len(mini) < len(dev)
    assert {ex["db_id"] for ex in train}.isdisjoint({ex["db_id"] for ex in dev})  # BIRD's dev databases are unseen
    for ex, raw in zip(dev, raw_dev):
        assert ex["query"] == raw["SQL"] and ex["evidence"] == raw["evidence"]
        assert ex["difficulty"] == raw["difficulty"]  # from the data, never computed
    assert {ex["difficulty"] for ex in dev} == set(benchmarks.BIRD_DIFFICULTIES)
    assert {ex["difficulty"] for ex in train} == {"unknown"}  # BIRD's train.json has no difficulty
    assert any(ex["evidence"] for ex in dev) and any(not ex["evidence"] for ex in dev)
    for ex in train + dev:
        assert bird.db_path(ex["db_id"]).exists()  # built from the shipped .sql
    assert bird.db_path(DB).parent.parent == MINI_BIRD_DIR / "dev" / "dev_databases"
    assert [ex["question_id"] for ex in mini] == [ex["question_id"] for ex in dev if ex["question_id"] in
                                                  {m["question_id"] for m in mini}]


def test_missing_bird_files_are_one_line_naming_them(tmp_path):
    with pytest.raises(benchmarks.BirdDataError, match="bird-bench.github.io"):
        benchmarks.Bird.open(tmp_path / "nowhere")
    (tmp_path / "dev").mkdir()
    empty = benchmarks.Bird.open(tmp_path)
    with pytest.raises(benchmarks.BirdDataError, match=r"missing .*dev_tables\.json.*--bird_dir"):
        empty.examples("dev")
    with pytest.raises(benchmarks.BirdDataError, match="mini_dev_sqlite.json"):
        empty.examples("mini_dev")
    with pytest.raises(benchmarks.BirdDataError, match="unknown BIRD split"):
        empty.examples("test")
    shutil.copytree(MINI_BIRD_DIR / "dev", tmp_path / "dev", dirs_exist_ok=True)
    (tmp_path / "dev" / "dev.json").write_text('[{"db_id": "food_inspection", "question": "q", "query": "SELECT 1"}]')
    with pytest.raises(benchmarks.BirdDataError, match="lacks a string db_id, question or SQL"):
        benchmarks.Bird.open(tmp_path).examples("dev")


# ---------------------------------------------------------------- prompt


def test_prompt_has_the_evidence_after_the_question_and_omits_it_when_empty(bird, dev):
    cfg, _ = parse_config(["--preset", "smoke", "--benchmark", "bird"])
    with_evidence = next(ex for ex in dev if ex["evidence"])
    user = utils.render_prompt_for(bird, with_evidence, cfg)[1]["content"]
    assert user.endswith(f"Question: {with_evidence['question']}\nExternal knowledge: {with_evidence['evidence']}")
    without = next(ex for ex in dev if not ex["evidence"])
    user = utils.render_prompt_for(bird, without, cfg)[1]["content"]
    assert user.endswith(f"Question: {without['question']}") and "External knowledge" not in user
    # training sees the same prompt, with the SQL as the answer
    messages = utils.build_messages(bird.schema(DB), with_evidence["question"], with_evidence["query"],
                                    evidence=with_evidence["evidence"])
    assert messages[:2] == utils.render_prompt_for(bird, with_evidence, cfg)
    assert messages[2]["content"] == with_evidence["query"]


def test_column_descriptions_are_optional_and_read_from_any_encoding(bird):
    plain = bird.schema(DB)
    described = benchmarks.Bird.open(MINI_BIRD_DIR, column_descriptions=True)
    described.examples("dev")
    text = described.schema(DB)
    assert "--" not in plain
    assert plain.replace(" ", "").split() != text.replace(" ", "").split()
    raw = (MINI_BIRD_DIR / "dev" / "dev_databases" / DB / "database_description" / "businesses.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the shipped file really is Windows-1252
    assert "  name TEXT, -- name of the café or restaurant\n" in text
    assert "values: H24: restaurant; H25: café; H07: bakery" in text
    assert "score INTEGER, -- inspection score; values: 0-100" in text
    # a CSV with a byte-order mark: its first column's name still matches
    described.examples("train")
    station = described.schema("bike_rental")
    assert "station_id INTEGER, -- unique id of the station" in station
    assert benchmarks.decode_csv_bytes("é".encode("latin-1")) == "é"
    assert benchmarks.decode_csv_bytes("\ufeffé".encode("utf-8")) == "é"


def test_descriptions_never_stop_a_run(tmp_path):
    folder = tmp_path / "db"
    (folder / "database_description").mkdir(parents=True)
    (folder / "database_description" / "t.csv").write_bytes(b"\xff\xfe\x00garbage\x00\n,,,\n")
    (folder / "database_description" / "u.csv").write_text("original_column_name,column_description\n a ,x\n")
    assert benchmarks.read_column_descriptions(folder) == {("u", "a"): "x"}
    assert benchmarks.read_column_descriptions(tmp_path / "none") == {}


# ---------------------------------------------------------------- BIRD's match rule


def test_bird_rule_is_set_equality_on_raw_rows():
    match = scoring.bird_rows_match
    assert match([(1, "a"), (2, "b")], [(2, "b"), (1, "a")])  # order ignored
    assert match([(1,), (1,), (2,)], [(2,), (1,)])  # duplicates ignored
    assert match([(1,)], [(1.0,)])  # Python equality: 1 == 1.0
    assert not match([("1",)], [(1,)])
    assert not match([(1, "a")], [("a", 1)])  # columns are never permuted
    assert match([], [])
    assert not match([(None,)], [])


@pytest.fixture
def food_db(bird):
    bird.examples("dev")
    return str(bird.db_path(DB))


def judge(pred, gold_sql, db, rule):
    gold = execution_reward.execute_gold(db, gold_sql, 2.0, rule)
    return execution_reward.judge_prediction(pred, gold_sql, gold, db, 2.0, rule)[0]


@pytest.mark.parametrize("gold, pred, spider_verdict, bird_verdict", [
    # Spider orders when the gold says ORDER BY; BIRD compares sets
    ("SELECT name FROM businesses ORDER BY business_id", "SELECT name FROM businesses ORDER BY business_id DESC",
     "partial", "match"),
    # Spider removes DISTINCT (inside aggregates too); BIRD executes both as written
    ("SELECT COUNT(DISTINCT city) FROM businesses", "SELECT COUNT(city) FROM businesses", "match", "wrong"),
    # Spider permutes columns; BIRD does not
    ("SELECT name, city FROM businesses", "SELECT city, name FROM businesses", "match", "partial"),
    # Spider rewrites `value` in the prediction to 1; BIRD does not
    ("SELECT 'value'", "SELECT 'value'", "wrong", "match"),
    # 1 == 1.0 under both
    ("SELECT COUNT(*) FROM businesses", "SELECT CAST(COUNT(*) AS REAL) FROM businesses", "match", "match"),
])
def test_spider_and_bird_rules_differ_where_their_evaluators_do(food_db, gold, pred, spider_verdict, bird_verdict):
    assert judge(pred, gold, food_db, "spider") == spider_verdict
    assert judge(pred, gold, food_db, "bird") == bird_verdict


def test_text_that_is_not_utf8_is_an_error_under_birds_rule_only(food_db):
    gold = "SELECT owner_name FROM businesses WHERE business_id = 3"
    result = sandbox.execute_sql(food_db, gold)
    assert result.ok and result.lossy_text and result.rows == [("Jose Munoz",)]  # Spider's reading: the Latin-1 byte dropped
    assert judge(gold, gold, food_db, "spider") == "match"
    gold_ok = "SELECT owner_name FROM businesses WHERE business_id = 1"
    outcome, _, error = execution_reward.judge_prediction("SELECT owner_name FROM businesses", gold_ok,
                                               execution_reward.execute_gold(food_db, gold_ok, 2.0, "bird"), food_db, 2.0, "bird")
    assert outcome == "invalid" and "UTF-8" in error
    # a gold whose result is not UTF-8 can never be matched (BIRD's evaluator scores it 0)
    assert judge(gold, gold, food_db, "bird") != "match"
    records = scoring.score_predictions([gold, "SELECT owner_name FROM businesses"], [(gold, DB), (gold_ok, DB)],
                                      MINI_BIRD_DIR / "dev" / "dev_databases", workers=1, rule="bird")
    assert [r["exec_match"] for r in records] == [False, False]
    assert "gold result" in records[0]["error"] and records[1]["outcome"] == "invalid"


def test_grpo_reward_gives_plus_five_by_the_benchmarks_rule(food_db):
    gold = "SELECT name FROM businesses ORDER BY business_id"
    answer = "SELECT name FROM businesses ORDER BY business_id DESC"
    for rule, expected in (("bird", 5.0), ("spider", None)):
        reward = execution_reward.SQLExecutionReward(workers=1, rule=rule)
        value = reward([None], [[{"role": "assistant", "content": answer}]], gold_sql=[gold], db_path=[food_db])[0]
        assert value == 5.0 if expected else 0 < value < 5.0  # Spider: right rows, wrong order -> partial credit
        # the single-answer reward (docs/reward-and-sandbox.md) takes the same rule
        assert execution_reward.sql_reward(answer, gold, food_db, rule=rule) == value


def test_gold_against_gold_scores_every_question(dev):
    golds = [(scoring.flatten_sql(ex["query"]), ex["db_id"]) for ex in dev]
    records = scoring.score_predictions([g for g, _ in golds], golds, MINI_BIRD_DIR / "dev" / "dev_databases",
                                      workers=1, rule="bird")
    assert all(r["exec_match"] for r in records)


# ---------------------------------------------------------------- BIRD's files


def official_package_sqls(path):
    """What BIRD's evaluator (mini_dev evaluation_utils.package_sqls, mode 'pred') reads from predict_dev.json."""
    sqls = []
    for _, sql_str in json.load(open(path)).items():
        if isinstance(sql_str, str):
            try:
                sql, _db = sql_str.split("\t----- bird -----\t")
            except ValueError:
                sql = sql_str.strip()
        else:
            sql = " "
        sqls.append(sql)
    return sqls


def test_prediction_file_round_trip(tmp_path, dev):
    spec = benchmarks.get("bird")
    preds = ["SELECT name\nFROM\tbusinesses", "", "SELECT 'a\tb'"] + [ex["query"] for ex in dev[3:]]
    pred_path, gold_path = spec.write_eval_files(tmp_path, dev, preds)
    assert (pred_path.name, gold_path.name) == ("predict_dev.json", "dev_gold.sql")
    data = json.loads(pred_path.read_text())
    assert list(data) == [str(i) for i in range(len(dev))]
    assert data["0"] == f"SELECT name FROM businesses\t----- bird -----\t{DB}"
    read = spec.read_predictions(pred_path, len(dev))
    assert read == official_package_sqls(pred_path)
    assert read[0] == "SELECT name FROM businesses" and read[1] == scoring.EMPTY_PREDICTION
    golds, difficulties = spec.read_gold(MINI_BIRD_DIR / "dev" / "dev.json")
    assert scoring.read_gold_file(gold_path) == golds and difficulties == [ex["difficulty"] for ex in dev]
    lines = [json.loads(line) for line in (tmp_path / "dev_difficulty.jsonl").read_text().splitlines()]
    assert [r["difficulty"] for r in lines] == difficulties
    # BIRD's reader on entries written by others: no separator, two separators, a non-string
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"0": " SELECT 1 ", "1": "SELECT 2\t----- bird -----\tx\t----- bird -----\ty", "2": 0}))
    assert spec.read_predictions(odd) == official_package_sqls(odd) == [
        "SELECT 1", "SELECT 2\t----- bird -----\tx\t----- bird -----\ty", " "]
    lines_file = tmp_path / "pred.txt"
    lines_file.write_text("SELECT 1\nSELECT 2\n")
    assert spec.read_predictions(lines_file, 2) == ["SELECT 1", "SELECT 2"]
    with pytest.raises(errors.UserError, match="pair in order"):
        spec.read_predictions(pred_path, len(dev) + 1)
    bom = tmp_path / "dev_bom.json"  # a question file saved with a byte-order mark
    bom.write_bytes(b"\xef\xbb\xbf" + (MINI_BIRD_DIR / "dev" / "dev.json").read_bytes())
    assert spec.read_gold(bom) == (golds, difficulties)


def test_summary_is_by_birds_difficulty(dev):
    spec = benchmarks.get("bird")
    records = [{"exec_match": i % 2 == 0} for i in range(len(dev))]
    spec.label(records, [ex["difficulty"] for ex in dev])
    summary = spec.summarize(records)
    assert [r["difficulty"] for r in records] == [ex["difficulty"] for ex in dev] and "hardness" not in records[0]
    assert set(summary) == {"simple", "moderate", "challenging", "all"}
    assert sum(summary[level]["count"] for level in benchmarks.BIRD_DIFFICULTIES) == summary["all"]["count"] == len(dev)
    table = spec.format_table(summary)
    assert spec.summarize(records) == summary
    assert table.splitlines()[0].split() == ["simple", "moderate", "challenging", "total"]


# ---------------------------------------------------------------- config


def test_bird_defaults_apply_unless_set():
    cfg, _ = parse_config(["--benchmark", "bird"])
    assert (cfg.max_seq_length, cfg.max_prompt_length, cfg.sql_timeout_s) == tuple(
        BENCHMARK_DEFAULTS["bird"][k] for k in ("max_seq_length", "max_prompt_length", "sql_timeout_s"))
    cfg, _ = parse_config(["--benchmark", "bird", "--max_prompt_length", "1000"])
    assert cfg.max_prompt_length == 1000 and cfg.max_seq_length == BENCHMARK_DEFAULTS["bird"]["max_seq_length"]
    cfg, _ = parse_config(["--preset", "smoke", "--benchmark", "bird"])
    assert cfg.max_seq_length == 1024 and cfg.bird_dir == str(MINI_BIRD_DIR)  # the preset's own value wins
    spider, _ = parse_config([])
    assert spider.benchmark == "spider" and spider.max_seq_length == 2048 and spider.sql_timeout_s == 2.0
    with pytest.raises(ConfigError, match="spider, bird or folder"):
        parse_config(["--benchmark", "bard"])


def test_every_script_lists_the_benchmark_fields_and_a_run_depends_on_its_own_data_only():
    from config import fields_for, run_defining_config

    for script in ("train_sft.py", "train_grpo.py", "evaluate.py"):
        assert {"benchmark", "bird_dir", "bird_column_descriptions"} <= set(fields_for(script))
    assert "eval_split" in fields_for("evaluate.py")
    spider, _ = parse_config(["--bird_dir", "elsewhere"])
    bird, _ = parse_config(["--benchmark", "bird", "--spider_dir", "elsewhere"])
    assert "bird_dir" not in run_defining_config(spider, "train_sft.py") and "spider_dir" in run_defining_config(spider, "train_sft.py")
    identity = run_defining_config(bird, "train_grpo.py")
    assert "spider_dir" not in identity and {"benchmark", "bird_dir", "bird_column_descriptions"} <= set(identity)


def test_bird_samples_are_stratified_by_database_and_difficulty(dev):
    strata = benchmarks.get("bird").eval_strata
    assert strata == ("db_id", "difficulty")
    chosen = utils.stratified_subset(dev, 3, 0, strata)
    assert sorted(dev[i]["difficulty"] for i in chosen) == ["challenging", "moderate", "simple"]


def test_each_benchmark_describes_its_own_eval_splits():
    spider, bird = benchmarks.get("spider"), benchmarks.get("bird")
    assert spider.eval_splits == tuple(benchmarks.SPIDER_EVAL_SPLITS) and bird.eval_splits == ("dev", "mini_dev")
    for split in ("dev", "test"):
        spider.check_eval_split(split)
    bird.check_eval_split("mini_dev")
    with pytest.raises(errors.UserError, match=r"not a Spider split: use one of dev, test \(mini_dev is BIRD's: add --benchmark bird\)"):
        spider.check_eval_split("mini_dev")
    with pytest.raises(errors.UserError, match=r"not a BIRD split: use one of dev, mini_dev \(test is Spider's: add --benchmark spider\)"):
        bird.check_eval_split("test")
    with pytest.raises(errors.UserError, match="not a BIRD split: use one of dev, mini_dev'?$"):
        bird.check_eval_split("train")


# ---------------------------------------------------------------- score-only on BIRD's own files


def test_score_only_reads_birds_files(tmp_path, dev):
    from conftest import run_script

    preds = [ex["query"] for ex in dev]
    preds[0] = "SELECT COUNT(DISTINCT business_id) FROM businesses"  # same rows: match
    preds[1] = "SELECT name FROM businesses WHERE city = 'Westbay' ORDER BY name DESC"  # order ignored: match
    preds[2] = "SELECT owner_name FROM businesses"  # text that is not UTF-8: an error under BIRD's rule
    preds[3] = ""  # empty: wrong
    pred_path = tmp_path / "predict_dev.json"
    scoring.write_bird_predictions(pred_path, preds, [ex["db_id"] for ex in dev])
    results = tmp_path / "R"
    run = run_script("evaluate.py", "--score_only", "--benchmark", "bird", "--pred", str(pred_path),
                     "--gold", str(MINI_BIRD_DIR / "dev" / "dev.json"),
                     "--db_dir", str(MINI_BIRD_DIR / "dev" / "dev_databases"), "--results", str(results))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[0].split() == ["simple", "moderate", "challenging", "total"]
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["exec_match"] for r in records] == [True, True, False, False] + [True] * (len(dev) - 4)
    assert [r["difficulty"] for r in records] == [ex["difficulty"] for ex in dev]
    assert "UTF-8" in records[2]["error"] and records[3]["outcome"] == "empty"
    ex_line = next(line for line in run.stdout.splitlines() if line.startswith("EX"))
    assert ex_line.split()[-1] == f"{100 * (len(dev) - 2) / len(dev):.2f}"
    # one SQL a line, and BIRD's gold lines, work too
    lines = tmp_path / "pred.txt"
    lines.write_text("\n".join(scoring.flatten_sql(p) for p in preds) + "\n")
    run = run_script("evaluate.py", "--score_only", "--benchmark", "bird", "--pred", str(lines),
                     "--gold", str(MINI_BIRD_DIR / "dev" / "dev.sql"),
                     "--db_dir", str(MINI_BIRD_DIR / "dev" / "dev_databases"), "--results", str(results), "--overwrite")
    assert run.returncode == 0, run.stderr[-2000:]
    assert [json.loads(line)["exec_match"] for line in results.read_text().splitlines()][:4] == [True, True, False, False]
    bad = run_script("evaluate.py", "--score_only", "--benchmark", "bird", "--pred", str(pred_path),
                     "--gold", str(MINI_BIRD_DIR / "mini_dev_sqlite.json"),
                     "--db_dir", str(MINI_BIRD_DIR / "dev" / "dev_databases"))
    assert bad.returncode == 2 and "pair in order" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------- voting under BIRD's rule


@pytest.fixture
def vote_db(make_db, tmp_path):
    (tmp_path / "dbs" / "shop").mkdir(parents=True)
    make_db("CREATE TABLE t (i INTEGER, r REAL); INSERT INTO t VALUES (1, 1.0), (1, 1.0), (2, 2.5);"
            "CREATE TABLE u (s TEXT); INSERT INTO u VALUES (CAST(X'4A6FF1' AS TEXT));", name="dbs/shop/shop.sqlite")
    return tmp_path / "dbs"


def test_voting_groups_candidates_by_birds_rule(vote_db):
    candidates = ["SELECT 3",
                  "SELECT r FROM t WHERE r < 2",  # 1.0, 1.0
                  "SELECT DISTINCT i FROM t WHERE i < 2",  # 1 (Spider removes the DISTINCT: 1, 1)
                  "SELECT i FROM t WHERE i = 1",  # 1, 1
                  "SELECT s FROM u",  # text that is not UTF-8
                  "SELECT s FROM u"]
    gold = ("SELECT i FROM t WHERE i = 1", "shop")
    bird = scoring.vote_predictions([candidates], [gold], vote_db, workers=1, rule="bird")[0]
    # BIRD: set(rows) with Python equality: 1 == 1.0 and duplicates ignored, so 1, 2 and 3 agree;
    # the non-UTF-8 result is an error there and does not vote
    assert bird["groups"] == [0, 1, 1, 1, None, None]
    assert (bird["chosen"], bird["votes"], bird["executed"]) == (1, 3, 4)
    assert bird["exec_match"] is True and bird["candidate_outcomes"][4] == "invalid"
    spider = scoring.vote_predictions([candidates], [gold], vote_db, workers=1, rule="spider")[0]
    # Spider: row multisets with values as SQLite returned them (1.0 apart from 1); its DISTINCT removal
    # makes 2 return 1, 1 like 3; the text result runs (its bad byte dropped) and votes
    assert spider["groups"] == [0, 1, 2, 2, 4, 4]
    assert (spider["chosen"], spider["votes"]) == (2, 2)


def test_birds_group_key_is_its_match_rule():
    rule = scoring.match_rule("bird")
    for a, b in (([(1,)], [(1.0,)]), ([(1,), (1,)], [(1,)]), ([(1, "a"), (2, "b")], [(2, "b"), (1.0, "a")])):
        assert scoring.bird_rows_match(a, b) and rule.group_key(a) == rule.group_key(b)
    for a, b in (([(1,)], [("1",)]), ([(1, "a")], [("a", 1)]), ([(None,)], [])):
        assert not scoring.bird_rows_match(a, b) and rule.group_key(a) != rule.group_key(b)
    assert scoring.match_rule("spider").group_key([(1,)]) != scoring.match_rule("spider").group_key([(1.0,)])


def test_score_only_votes_among_several_bird_files_by_birds_rule(tmp_path, dev):
    from conftest import run_script

    db_ids = [ex["db_id"] for ex in dev]
    files = {name: [ex["query"] for ex in dev] for name in "ABC"}
    files["A"][0], files["B"][0] = "SELECT 4", "SELECT CAST(COUNT(*) AS REAL) FROM businesses"  # C: gold (5 vs 5.0)
    westbay = "SELECT name FROM businesses WHERE city = 'Westbay'"
    files["A"][1], files["B"][1] = f"{westbay} UNION ALL {westbay}", "SELECT 'x'"  # A: duplicated rows
    files["C"][1] = f"{westbay} ORDER BY name DESC"
    files["A"][2] = "SELECT owner_name FROM businesses"  # not UTF-8: does not vote
    files["B"][2] = "SELECT COUNT(*) + 1 FROM violations WHERE risk_category = 'High Risk'"
    paths = []
    for name, preds in files.items():
        paths.append(tmp_path / name / "predict_dev.json")
        paths[-1].parent.mkdir()
        scoring.write_bird_predictions(paths[-1], preds, db_ids)
    bird_args = ["--benchmark", "bird", "--gold", str(MINI_BIRD_DIR / "dev" / "dev.json"),
                 "--db_dir", str(MINI_BIRD_DIR / "dev" / "dev_databases")]
    run = run_script("evaluate.py", "--score_only", *bird_args, *[a for p in paths for a in ("--pred", str(p))],
                     "--results", str(tmp_path / "vote" / "results.jsonl"))
    assert run.returncode == 0, run.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "vote" / "results.jsonl").read_text().splitlines()]
    assert [(r["chosen"], r["votes"], r["exec_match"]) for r in records[:3]] == [(1, 2, True), (0, 2, True), (1, 1, False)]
    assert records[2]["groups"] == [None, 1, 2] and records[2]["any_match"] is True
    assert records[0]["prediction"] == files["B"][0] and [r["difficulty"] for r in records] == [ex["difficulty"] for ex in dev]
    metrics = json.loads((tmp_path / "vote" / "metrics.json").read_text())
    n = len(dev)
    assert metrics["mode"] == "score_only" and metrics["k"] == 3 and "set(pred) == set(gold)" in metrics["comparator"]
    assert metrics["ex"] == metrics["ex_vote"] == pytest.approx((n - 1) / n) and metrics["pass_at_k"] == 1.0
    assert metrics["ex_vote_by_difficulty"]["simple"]["count"] == sum(ex["difficulty"] == "simple" for ex in dev)
    assert metrics["pass_at_k_by_difficulty"]["all"]["ex"] == 1.0 and "by_hardness" not in metrics
    # A: #1 duplicates the gold rows, a match under BIRD
    assert [f["ex"] for f in metrics["ex_files"]] == pytest.approx([(n - 2) / n, (n - 2) / n, 1.0])
    assert all("by_difficulty" in f for f in metrics["ex_files"])
    lines = run.stdout.splitlines()
    assert lines[1].split() == ["simple", "moderate", "challenging", "total"] and any(line.startswith("pass@3") for line in lines)
    # one file alone, then --compare on the two score-only folders (by difficulty)
    one = run_script("evaluate.py", "--score_only", *bird_args, "--pred", str(paths[2]),
                     "--results", str(tmp_path / "C" / "results.jsonl"))
    assert one.returncode == 0, one.stderr[-2000:]
    compared = run_script("evaluate.py", "--compare", str(tmp_path / "vote"), str(tmp_path / "C"))
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert "challenging" in compared.stdout and "voted EX" in compared.stdout
    assert "fixed by B (1)" in compared.stdout and "#2 [simple]" in compared.stdout  # score-only has no questions
    spider_run = tmp_path / "spider" / "metrics.json"
    spider_run.parent.mkdir()
    spider_run.write_text(json.dumps({"by_hardness": benchmarks.get("spider").summarize([])}))
    mixed = run_script("evaluate.py", "--compare", str(tmp_path / "C"), str(spider_run))
    assert mixed.returncode == 2 and "different benchmarks" in mixed.stderr and mixed.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("flag", [["--keep_distinct"], ["--ts_db_dir", "data/mini_spider/test_suite"]])
def test_spiders_evaluator_options_are_refused_with_bird(tmp_path, flag):
    from conftest import run_script

    score = ["--score_only", "--pred", str(MINI_BIRD_DIR / "dev" / "dev.sql"), "--gold", str(MINI_BIRD_DIR / "dev" / "dev.json"),
             "--db_dir", str(MINI_BIRD_DIR / "dev" / "dev_databases"), "--results", str(tmp_path / "R")]
    generate = ["--preset", "smoke", "--adapter", "none", "--output_dir", str(tmp_path / "o")]
    for argv in (score, generate):
        out = run_script("evaluate.py", "--benchmark", "bird", *argv, *flag)
        assert out.returncode == 2 and f"{flag[0]} is Spider's" in out.stderr and "--benchmark spider" in out.stderr
        assert out.stderr.strip().count("\n") == 0 and not (tmp_path / "R").exists()
    out = run_script("evaluate.py", "--benchmark", "bird", *generate, "--eval_split", "test")
    assert out.returncode == 2 and "not a BIRD split" in out.stderr
