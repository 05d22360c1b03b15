"""evaluate.py --eval_file: Spider-format question files (Spider-Syn's and Spider-DK's formats, shipped in
data/mini_spider_variants) evaluated in one run on mini-Spider's databases, a set's own tables and databases
merged over them, with the progress lines a log file gets."""

import json
import os
import shutil

import pytest

from config import MINI_SPIDER_DIR, REPO_DIR, parse_config
from conftest import run_script
from sql_rlvr import question_files, scoring
from sql_rlvr.errors import UserError

VARIANTS = REPO_DIR / "data" / "mini_spider_variants"
SYN, DK = VARIANTS / "syn_dev.json", VARIANTS / "dk.json"
DK_FLAGS = ["--eval_tables", str(VARIANTS / "dk_tables.json"), "--eval_db_dir", str(VARIANTS / "dk_database")]
SUITE = MINI_SPIDER_DIR / "test_suite"


def open_files(*flags: str) -> list[question_files.QuestionFile]:
    cfg, _ = parse_config(["--preset", "smoke", *flags], script="evaluate.py")
    return question_files.open_question_files(cfg)


def test_a_set_is_read_with_its_own_tables_and_databases_over_spiders():
    syn, dk = open_files("--eval_file", f"{SYN},{DK}", *DK_FLAGS)
    dev = json.loads((MINI_SPIDER_DIR / "dev.json").read_text())
    assert (syn.name, dk.name) == ("syn_dev", "dk")
    # Spider-Syn: the synonym question is the one asked; the golds are dev's, in dev's order
    assert [q["question"] for q in syn.questions] == [r["SpiderSynQuestion"] for r in json.loads(SYN.read_text())]
    assert [(q["query"], q["db_id"]) for q in syn.questions] == [(d["query"], d["db_id"]) for d in dev]
    assert syn.own_databases() == [] and syn.db_dir() == MINI_SPIDER_DIR / "database"
    # Spider-DK: the modified database from --eval_db_dir, the others from Spider's folder; its schema from both
    assert dk.own_databases() == ["new_college_courses"]
    assert dk.db_path("new_college_courses") == VARIANTS / "dk_database" / "new_college_courses" / "new_college_courses.sqlite"
    assert dk.db_path("bookshop") == MINI_SPIDER_DIR / "database" / "bookshop" / "bookshop.sqlite"
    schema = dk.schema("new_college_courses")
    assert "Founded_Year" in schema and "FOREIGN KEY" in schema and "enrollment" not in schema
    assert [q["file_index"] for q in dk.questions] == list(range(7))


def test_the_golds_that_fail_are_left_out_and_every_other_gold_matches_itself(tmp_path):
    (dk,) = open_files("--eval_file", str(DK), *DK_FLAGS)
    dk.prepare(tmp_path)
    # one --db and one --table for the official evaluator: links to each database, the file's schemas
    assert sorted(p.name for p in (tmp_path / "database").iterdir()) == ["bookshop", "new_college_courses"]
    assert (tmp_path / "database" / "bookshop").resolve() == (MINI_SPIDER_DIR / "database" / "bookshop").resolve()
    assert [t["db_id"] for t in json.loads((tmp_path / "tables.json").read_text())] == ["bookshop", "new_college_courses"]
    cfg, _ = parse_config(["--preset", "smoke"], script="evaluate.py")
    failed = question_files.leave_out_failing_golds(dk, cfg)
    assert [(f["file_index"], f["db_id"]) for f in failed] == [(4, "new_college_courses")] and "course" in failed[0]["error"]
    assert len(dk.questions) == 6 and 4 not in [q["file_index"] for q in dk.questions]
    golds = [(scoring.flatten_sql(q["query"]), q["db_id"]) for q in dk.questions]
    records = scoring.score_predictions([g for g, _ in golds], golds, dk.db_dir(), workers=1)
    assert all(r["exec_match"] for r in records)


@pytest.mark.parametrize("records, says", [
    ([{"query": "SELECT 1", "db_id": "bookshop"}], "record 0: no question"),
    ([{"question": "q?", "db_id": "bookshop"}], "record 0: no query"),
    ([{"question": "q?", "query": "SELECT 1", "db_id": "bookshop"}, {"question": "q?", "query": "SELECT 1"}],
     "record 1: no db_id"),
    ([{"question": "q?", "query": "SELECT 1", "db_id": "atlantis"}], "record 0: unknown db_id 'atlantis'"),
    ({"question": "q?"}, "should hold a non-empty JSON list"),
])
def test_a_malformed_record_is_one_line_naming_the_file_and_the_record(tmp_path, records, says):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(records))
    with pytest.raises(UserError, match=f"--eval_file {path} .*{says}" if "record" in says else says):
        open_files("--eval_file", str(path))


def test_bad_flags_and_files_are_refused_before_any_model_loads(tmp_path):
    other = tmp_path / "syn_dev.json"
    shutil.copy(SYN, other)
    with pytest.raises(UserError, match="would both write eval/<adapter>/syn_dev/"):
        open_files("--eval_file", f"{SYN},{other}")
    with pytest.raises(UserError, match="no database for db_id 'new_college_courses'"):
        open_files("--eval_file", str(DK), "--eval_tables", str(VARIANTS / "dk_tables.json"))  # no --eval_db_dir
    with pytest.raises(UserError, match="--eval_tables and --eval_db_dir go with --eval_file"):
        open_files(*DK_FLAGS)
    with pytest.raises(UserError, match="drop --benchmark bird"):
        open_files("--eval_file", str(SYN), "--benchmark", "bird")
    # the command line: one line, exit 2, nothing written
    out = run_script("evaluate.py", "--preset", "smoke", "--adapter", "none", "--output_dir", str(tmp_path / "o"),
                     "--eval_file", f"{SYN},{tmp_path / 'missing.json'}")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert f"--eval_file {tmp_path / 'missing.json'}: no such file" in out.stderr
    assert not (tmp_path / "o").exists()
    # a folder holding another file's evaluation (or a split's: test.json meets --eval_split test) is never
    # taken for this one's, not even by --resume
    held = tmp_path / "o" / "eval" / "base" / "syn_dev" / "metrics.json"
    held.parent.mkdir(parents=True)
    held.write_text(json.dumps({"eval_file": "/elsewhere/syn_dev.json", "adapter_sha256": None}))
    out = run_script("evaluate.py", "--preset", "smoke", "--adapter", "none", "--output_dir", str(tmp_path / "o"),
                     "--eval_file", str(SYN), "--resume")
    assert out.returncode == 2 and "holds an evaluation of /elsewhere/syn_dev.json, not of" in out.stderr


# ---------------------------------------------------------------- the tiny model end to end


@pytest.fixture(scope="module")
def files_run(tmp_path_factory):
    """One run over three files (mini-Spider's dev.json, the Syn-style and the DK-style file) with test suites,
    voting and value hints, its output as a log file gets it; then the agentic mode on the DK-style file."""
    out = tmp_path_factory.mktemp("eval_files")
    common = ["--preset", "smoke", "--adapter", "none", "--output_dir", str(out), "--progress_every_s", "0"]
    run = run_script("evaluate.py", *common, "--eval_file", f"{MINI_SPIDER_DIR / 'dev.json'},{SYN},{DK}", *DK_FLAGS,
                     "--ts_db_dir", str(SUITE), "--num_samples", "2", "--value_hints", "1", "--eval_batch_size", "8")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    agentic = run_script("evaluate.py", *common, "--eval_file", str(DK), *DK_FLAGS, "--max_tool_calls", "1",
                         "--max_eval_examples", "3", "--output_dir", str(out / "agentic"))
    assert agentic.returncode == 0, agentic.stdout[-3000:] + agentic.stderr[-3000:]
    return out, run, agentic


@pytest.mark.slow
def test_each_file_gets_a_dev_evaluations_folder_and_the_run_one_table(files_run):
    out, run, _ = files_run
    base = out / "eval" / "base"
    for name, n in (("dev", 17), ("syn_dev", 17), ("dk", 6)):
        folder = base / name
        for written in ("pred.txt", "gold.txt", "pred_greedy.txt", "candidates.jsonl", "predictions.jsonl"):
            assert (folder / written).exists(), f"{name}/{written}"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["examples"] == n and metrics["by_hardness"]["all"]["count"] == n
        assert {"ex", "ex_greedy", "ex_vote", "pass_at_k"} <= set(metrics) and metrics["config"]["value_hints"] == 1
        assert len((folder / "pred.txt").read_text().splitlines()) == n
        assert metrics["eval_file"].endswith(f"{name}.json")
    # Syn: the synonym questions were asked, of dev's golds (so --compare pairs the two question by question)
    syn = [json.loads(line) for line in (base / "syn_dev" / "predictions.jsonl").read_text().splitlines()]
    assert syn[0]["question"] == json.loads(SYN.read_text())[0]["SpiderSynQuestion"]
    assert (base / "syn_dev" / "gold.txt").read_text() == (base / "dev" / "gold.txt").read_text()
    compared = run_script("evaluate.py", "--compare", str(base / "dev"), str(base / "syn_dev"))
    assert compared.returncode == 0 and "voted EX:" in compared.stdout and "test-suite accuracy (ts):" in compared.stdout
    # DK: its failing gold left out, scored on the merged databases; no test suite covers its modified database
    dk = json.loads((base / "dk" / "metrics.json").read_text())
    assert [f["file_index"] for f in dk["gold_left_out"]] == [4] and dk["file_questions"] == 7
    assert dk["own_databases"] == ["new_college_courses"] and "ts" not in dk
    assert "ts" in json.loads((base / "syn_dev" / "metrics.json").read_text())
    assert (base / "dk" / "database" / "new_college_courses").resolve() == (
        VARIANTS / "dk_database" / "new_college_courses").resolve()
    assert f"--db {base / 'dk' / 'database'} --table {base / 'dk' / 'tables.json'}" in run.stdout
    assert "[eval] dk: 1 of 7 gold queries fail on their database and are left out" in run.stdout
    assert "[eval] dk: no test-suite accuracy" in run.stdout
    # one model load, then the table: a row per file, EX / TS / voted EX
    assert run.stdout.count("[eval] backend=hf") == 3
    table = run.stdout[run.stdout.index("[eval] 3 question files"):].splitlines()
    assert table[1].split() == ["file", "questions", "EX", "TS", "voted", "EX"]
    rows = {line.split()[0]: line.split()[1:] for line in table[2:5]}
    assert rows["dev"][0] == "17" and rows["syn_dev"][0] == "17" and rows["dk"][0] == "6" and rows["dk"][2] == "-"
    assert rows["syn_dev"][1] == f"{json.loads((base / 'syn_dev' / 'metrics.json').read_text())['ex_greedy']:.3f}"
    # progress lines, as a log file gets them (stdout is not a terminal here)
    assert "[eval] syn_dev: greedy answers: 8/17 questions (47%), " in run.stdout
    assert "[eval] dk: 2 sampled answers each: 6/6 questions, " in run.stdout
    assert "generating: " not in run.stderr  # no bar written into a file


@pytest.mark.slow
def test_the_agentic_mode_and_resume_per_file(files_run):
    out, run, agentic = files_run
    metrics = json.loads((out / "agentic" / "eval" / "base" / "dk" / "metrics.json").read_text())
    assert metrics["max_tool_calls"] == 1 and metrics["examples"] == 3 and "tool_calls_mean" in metrics
    assert "[eval] dk: greedy answers, turn 1: " in agentic.stdout
    # --resume: every file is evaluated already; the table again, from their metrics, and no model
    again = run_script("evaluate.py", "--preset", "smoke", "--adapter", "none", "--output_dir", str(out), "--resume",
                       "--eval_file", f"{SYN},{DK}", *DK_FLAGS)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already holds an evaluation") == 2 and "[eval] backend" not in again.stdout
    assert "[eval] 2 question files" in again.stdout
    assert os.path.islink(out / "eval" / "base" / "dk" / "database" / "bookshop")
