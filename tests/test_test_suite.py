"""Test-suite accuracy, --keep_distinct, the Spider test split, and sampled candidates end to end (issues 11, 12)."""

import json
import shutil

import pytest

from sql_rlvr import benchmarks
from sql_rlvr import sandbox
from sql_rlvr import scoring
from config import MINI_SPIDER_DIR
from conftest import copy_sft, run_script

SUITE = MINI_SPIDER_DIR / "test_suite"


def dev_golds():
    return [(ex["query"], ex["db_id"]) for ex in json.loads((MINI_SPIDER_DIR / "dev.json").read_text())]


def test_the_mini_test_suite_has_three_databases_per_db_id(spider):
    for db_id in spider.tables:
        files = scoring.db_files(str(SUITE), db_id)
        assert [f.rsplit("/", 1)[1] for f in files] == [f"{db_id}.sqlite", f"{db_id}_1.sqlite", f"{db_id}_2.sqlite"]
    # the original database of the suite is the one EX uses
    original = sandbox.execute_sql(SUITE / "bookshop" / "bookshop.sqlite", "SELECT * FROM purchase").rows
    assert original == sandbox.execute_sql(spider.db_path("bookshop"), "SELECT * FROM purchase").rows
    golds = dev_golds()
    assert all(r["exec_match"] for r in scoring.score_predictions([g for g, _ in golds], golds, SUITE, workers=1))


def test_right_on_the_original_database_and_wrong_on_a_variant(spider):
    gold = ("SELECT Name FROM department WHERE Budget > 300000", "college_courses")
    lucky = "SELECT Name FROM department WHERE Budget > 300000 AND Dept_ID < 100"  # the variant adds Dept_ID 101...
    ex = scoring.score_predictions([lucky], [gold], MINI_SPIDER_DIR / "database", workers=1)[0]
    ts = scoring.score_predictions([lucky], [gold], SUITE, workers=1)[0]
    assert ex["exec_match"] is True and ts["exec_match"] is False and ts["outcome"] == "wrong"


def test_a_prediction_is_judged_at_the_first_database_where_it_differs(tmp_path, make_db):
    # Like the official evaluator: later databases are not run once one differs. Here the later one
    # would time out, which would give outcome 'invalid' instead of 'wrong'.
    (tmp_path / "dbs" / "d").mkdir(parents=True)
    make_db("CREATE TABLE n (x INTEGER); INSERT INTO n VALUES (1);", name="dbs/d/d.sqlite")
    make_db("CREATE TABLE n (x INTEGER); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 3000) "
            "INSERT INTO n SELECT x FROM c;", name="dbs/d/d_1.sqlite")
    slow = "SELECT count(*) FROM n AS a JOIN n AS b ON a.x > b.x"
    record = scoring.score_predictions([slow], [("SELECT 5", "d")], tmp_path / "dbs", timeout_s=0.05, workers=1)[0]
    assert record["outcome"] == "wrong"


def test_keep_distinct_flips_a_verdict_in_score_only(tmp_path):
    golds = dev_golds()
    pred = tmp_path / "pred.txt"
    preds = [g for g, _ in golds]
    preds[4] = preds[4].replace("SELECT T3.Genre", "SELECT DISTINCT T3.Genre")  # the gold lists a genre twice
    pred.write_text("".join(p + "\n" for p in preds))
    gold = tmp_path / "gold.txt"
    gold.write_text("".join(f"{g}\t{db}\n" for g, db in golds))
    verdicts = {}
    for flag in ([], ["--keep_distinct"]):
        results = tmp_path / ("kept" if flag else "removed") / "results.jsonl"
        out = run_script("evaluate.py", "--score_only", "--pred", str(pred), "--gold", str(gold),
                         "--db_dir", str(SUITE), "--results", str(results), *flag)
        assert out.returncode == 0, out.stderr
        verdicts[bool(flag)] = json.loads(results.read_text().splitlines()[4])["exec_match"]
        metrics = json.loads(results.with_name("metrics.json").read_text())
        assert metrics["keep_distinct"] is bool(flag) and metrics["databases_per_db_id"] == 3
    assert verdicts == {False: True, True: False}


def test_score_only_builds_the_shipped_databases_and_test_suite_of_a_fresh_checkout(tmp_path):
    # A fresh checkout holds the mini-Spider's databases and test suite as SQL text only: score-only
    # pointed straight at them builds them as opening the mini-Spider does (no "no database" error).
    mini = tmp_path / "mini_spider"
    unbuilt = shutil.ignore_patterns("*.sqlite", "*.sha256")
    shutil.copytree(MINI_SPIDER_DIR / "database", mini / "database", ignore=unbuilt)
    shutil.copytree(SUITE, mini / "test_suite", ignore=unbuilt)
    golds = dev_golds()
    pred, gold = tmp_path / "pred.txt", tmp_path / "gold.txt"
    pred.write_text("".join(g + "\n" for g, _ in golds))
    gold.write_text("".join(f"{g}\t{db}\n" for g, db in golds))
    for folder, per_db_id in (("test_suite", 3), ("database", 1)):
        results = tmp_path / folder / "results.jsonl"
        out = run_script("evaluate.py", "--score_only", "--pred", str(pred), "--gold", str(gold),
                         "--db_dir", str(mini / folder), "--results", str(results))
        assert out.returncode == 0, out.stderr
        metrics = json.loads(results.with_name("metrics.json").read_text())
        assert metrics["ex"] == 1.0 and metrics["databases_per_db_id"] == per_db_id


def test_ts_db_dir_missing_a_db_id_is_one_line_before_generation(tmp_path):
    partial = tmp_path / "suite"
    shutil.copytree(SUITE, partial, ignore=shutil.ignore_patterns("soccer_league"))
    out = run_script("evaluate.py", "--preset", "smoke", "--adapter", "none", "--output_dir", str(tmp_path / "o"),
                     "--ts_db_dir", str(partial))
    assert out.returncode == 2 and "--ts_db_dir: no database for soccer_league" in out.stderr
    assert out.stderr.strip().count("\n") == 0 and not (tmp_path / "o" / "eval").exists()


def test_a_missing_test_file_is_one_line_naming_the_files(tmp_path):
    copy = tmp_path / "spider"
    shutil.copytree(MINI_SPIDER_DIR, copy, ignore=shutil.ignore_patterns("test_tables.json", "test_database"))
    out = run_script("evaluate.py", "--preset", "smoke", "--adapter", "none", "--spider_dir", str(copy),
                     "--output_dir", str(tmp_path / "o"), "--eval_split", "test")
    assert out.returncode == 2 and "--eval_split test needs test_tables.json, test_database/" in out.stderr
    assert out.stderr.strip().count("\n") == 0
    out = run_script("evaluate.py", "--preset", "smoke", "--eval_split", "train", "--output_dir", str(tmp_path / "o"))
    assert out.returncode == 2 and "use one of dev, test" in out.stderr


def test_training_never_reads_test_files(tmp_path):
    copy = tmp_path / "spider"
    shutil.copytree(MINI_SPIDER_DIR, copy)
    for name in ("test.json", "test_tables.json", "test_gold.sql"):
        (copy / name).write_text("not json")  # any read would fail loudly
    spider = benchmarks.Spider.open(copy)
    assert len(spider.examples("train")) == 48 and len(spider.examples("dev")) == 17


# ---------------------------------------------------------------- the tiny model end to end

@pytest.fixture(scope="module")
def runs(tmp_path_factory, smoke_sft):
    out = tmp_path_factory.mktemp("suite_e2e")
    copy_sft(smoke_sft, out)  # the session's smoke SFT adapter: these runs only read it
    smoke = ["--preset", "smoke", "--output_dir", str(out)]
    steps = {
        "greedy": ["evaluate.py", *smoke, "--adapter", "sft"],
        "voted": ["evaluate.py", "--preset", "smoke", "--output_dir", str(out / "voted"), "--adapter", str(out / "sft"),
                  "--num_samples", "4", "--ts_db_dir", str(SUITE)],
        "test": ["evaluate.py", *smoke, "--adapter", "sft", "--eval_split", "test", "--keep_distinct"],
    }
    results = {}
    for name, args in steps.items():
        results[name] = run_script(*args)
        assert results[name].returncode == 0, f"{name}:\n{results[name].stdout[-2000:]}\n{results[name].stderr[-3000:]}"
    return out, results


def test_sampled_candidates_are_voted_and_the_greedy_one_is_the_greedy_run(runs):
    out, results = runs
    greedy_run = (out / "eval" / "sft" / "pred.txt").read_text()
    voted = out / "voted" / "eval" / "sft"
    assert (voted / "pred_greedy.txt").read_text() == greedy_run
    candidates = [json.loads(line) for line in (voted / "candidates.jsonl").read_text().splitlines()]
    preds = (voted / "pred.txt").read_text().splitlines()
    assert len(candidates) == len(preds) == 17
    for row, greedy, pred in zip(candidates, greedy_run.splitlines(), preds):
        assert [c["k"] for c in row["candidates"]] == [0, 1, 2, 3, 4]
        assert row["candidates"][0]["sql"] == greedy and row["candidates"][row["chosen"]]["sql"] == pred
        assert {"answer", "sql", "outcome", "exec_match", "group"} <= set(row["candidates"][0])
        groups = [c["group"] for c in row["candidates"]]
        sizes = {g: groups.count(g) for g in groups if g is not None}
        expected = min((g for g in sizes if sizes[g] == max(sizes.values())), default=0)  # the voting rule
        assert (row["chosen"], row["votes"], row["executed"]) == (expected, max(sizes.values(), default=0), sum(sizes.values()))
    metrics = json.loads((voted / "metrics.json").read_text())
    for key in ("ex_greedy", "ex_vote", "pass_at_k", "ts", "ts_by_hardness", "ex_vote_by_hardness", "pass_at_k_by_hardness"):
        assert key in metrics, key
    assert metrics["ex"] == metrics["ex_vote"] and metrics["k"] == 5 and metrics["num_samples"] == 4
    assert metrics["ex_greedy"] == json.loads((out / "eval" / "sft" / "metrics.json").read_text())["ex"]
    assert metrics["pass_at_k"] >= max(metrics["ex_greedy"], metrics["ex_vote"])
    assert metrics["ts"] <= metrics["ex"] and metrics["ts_by_hardness"]["all"]["count"] == 17
    # the pass@k of a question counts a candidate right on the original databases
    records = [json.loads(line) for line in (voted / "predictions.jsonl").read_text().splitlines()]
    assert [r["any_match"] for r in records] == [any(c["exec_match"] for c in row["candidates"]) for row in candidates]
    assert {"ts_match", "chosen", "votes", "executed", "greedy_match"} <= set(records[0])
    assert "pass@5" in results["voted"].stdout and "test-suite (ts)" in results["voted"].stdout
    compared = run_script("evaluate.py", "--compare", str(out / "eval" / "sft"), str(voted))
    assert compared.returncode == 0, compared.stderr
    assert "voted EX:" in compared.stdout and "test-suite accuracy (ts):" in compared.stdout


def test_eval_split_test_end_to_end(runs):
    out, results = runs
    ev = out / "eval" / "sft" / "test"
    test = json.loads((MINI_SPIDER_DIR / "test.json").read_text())
    golds = (ev / "gold.txt").read_text().splitlines()
    assert golds == [f"{ex['query']}\t{ex['db_id']}" for ex in test]
    assert len((ev / "pred.txt").read_text().splitlines()) == len(test)
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["by_hardness"]["all"]["count"] == len(test)
    assert str((MINI_SPIDER_DIR / "test_database").resolve()) in results["test"].stdout  # the official command
    assert "test_tables.json" in results["test"].stdout
    # --keep_distinct reaches generation mode: recorded, and passed on to the official command
    assert metrics["keep_distinct"] is True and "--etype exec --keep_distinct" in results["test"].stdout
