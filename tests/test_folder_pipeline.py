"""`--preset smoke --benchmark folder`: the three scripts end to end on the shipped data/example_folder (your
own data's layout, its schema read from the databases), with --value_hints, voting and the agentic mode,
then --ask with the trained adapter (about 3 minutes on 2 busy cores: SFT keeps the preset's 200 steps,
fewer leave every GRPO group scoring the same)."""

import json

import pytest

from config import EXAMPLE_FOLDER_DIR
from conftest import run_script
from sql_rlvr import training
from sql_rlvr.hardness import spider_hardness
from sql_rlvr.sandbox import execute_sql

FOLDER = ["--preset", "smoke", "--benchmark", "folder", "--value_hints", "2"]


@pytest.fixture(scope="module")
def folder_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("folder_smoke")
    runs = {}
    # SFT in batches of 4 (the preset's 200 steps): GRPO still matches on every step (measured), in half the time
    for stage, args in (("sft", ["train_sft.py", "--sft_batch_size", "4"]),
                        ("grpo", ["train_grpo.py", "--eval_steps", "2", "--eval_subset_size", "4"]),
                        ("eval", ["evaluate.py", "--adapter", "grpo", "--num_samples", "2"]),
                        ("agentic", ["evaluate.py", "--adapter", "sft", "--max_tool_calls", "1"])):
        runs[stage] = run_script(*args, *FOLDER, "--output_dir", str(out))
        assert runs[stage].returncode == 0, f"{stage} failed:\n{runs[stage].stdout[-3000:]}\n{runs[stage].stderr[-3000:]}"
    return out, runs


def test_sft_and_grpo_train_on_the_folder_with_spiders_rule(folder_smoke):
    out, runs = folder_smoke
    train = json.loads((EXAMPLE_FOLDER_DIR / "train.json").read_text())
    info = json.loads((out / "sft" / "run_info.json").read_text())
    assert info["train_examples"] == len(train) and info["config"]["benchmark"] == "folder"
    assert info["config"]["data_dir"] == str(EXAMPLE_FOLDER_DIR) and info["config"]["value_hints"] == 2
    grpo = json.loads((out / "grpo" / "run_info.json").read_text())
    assert grpo["prompts"] == len(train) and grpo["skipped_empty_gold"] == 0
    logs = [r for r in training.read_metrics(out / "grpo" / "metrics.jsonl") if "reward" in r]
    assert logs and any(row["reward_std"] > 0 for row in logs) and any(row["outcome/match"] > 0 for row in logs)
    # --eval_steps: greedy EX on a dev subset drawn by database and hardness, scored on the folder's databases
    assert "on 4 of 11 dev questions" in runs["grpo"].stdout and "stratified by database and hardness" in runs["grpo"].stdout
    assert "[data]" not in runs["sft"].stdout + runs["grpo"].stdout  # every shipped gold query runs


def test_evaluation_writes_spiders_files_votes_and_rescores_alike(folder_smoke):
    out, runs = folder_smoke
    ev = out / "eval" / "grpo"
    dev = json.loads((EXAMPLE_FOLDER_DIR / "dev.json").read_text())
    golds = (ev / "gold.txt").read_text().splitlines()
    assert golds == [f"{' '.join(r.get('query', r.get('SQL')).split())}\t{r['db_id']}" for r in dev]
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["by_hardness"]["all"]["count"] == len(dev) and "Spider's" in metrics["comparator"]
    assert metrics["k"] == 3 and metrics["ex"] == metrics["ex_vote"] and "ex_greedy_by_hardness" in metrics
    assert metrics["db_dir"] == str(EXAMPLE_FOLDER_DIR.resolve()) and metrics["config"]["value_hints"] == 2
    records = [json.loads(line) for line in (ev / "predictions.jsonl").read_text().splitlines()]
    assert [r["hardness"] for r in records] == [spider_hardness(r.get("query", r.get("SQL"))) for r in dev]
    assert "none for your own data" in runs["eval"].stdout  # no official evaluator to run on it
    again = run_script("evaluate.py", "--score_only", "--benchmark", "folder", "--pred", str(ev / "pred.txt"),
                       "--gold", str(ev / "gold.txt"), "--db_dir", str(EXAMPLE_FOLDER_DIR), "--results", str(out / "R"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert [json.loads(line)["exec_match"] for line in (out / "R").read_text().splitlines()] == [
        r["exec_match"] for r in records]
    agentic = json.loads((out / "eval" / "sft" / "metrics.json").read_text())
    assert agentic["max_tool_calls"] == 1 and "tool_calls_mean" in agentic
    assert "agentic, up to 1 queries per question" in runs["agentic"].stdout


def test_ask_answers_a_question_on_the_folders_database_with_the_trained_adapter(folder_smoke):
    out, _ = folder_smoke
    db = EXAMPLE_FOLDER_DIR / "garden_shop" / "garden_shop.sqlite"
    # a training question: the adapter, trained on it to a loss near 0, answers with SQL when --ask prompts as
    # training did (the same schema text, read from the database, and the same value hints)
    run = run_script("evaluate.py", *FOLDER, "--output_dir", str(out), "--adapter", "grpo",
                     "--ask", "List the names of all ferns.", "--db", str(db))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"[ask] backend=hf adapter={out / 'grpo'} database={db} (3 tables); prompt ")
    sql = next(line for line in lines if line.startswith("SQL: "))[len("SQL: "):]
    result = execute_sql(db, sql)
    assert result.ok and lines[-1] == f"({len(result.rows)} row{'s' * (len(result.rows) != 1)})"
    assert [cell.strip() for cell in lines[lines.index(f"SQL: {sql}") + 1].split("|")] == result.columns
    shown = [tuple(cell.strip() for cell in line.split("|")) for line in lines[lines.index(f"SQL: {sql}") + 3:-1]]
    assert shown == [tuple(str(v) for v in row) for row in result.rows]
    # the agentic mode runs too: the queries before the answer (none, or a few) then the answer or one line
    agentic = run_script("evaluate.py", *FOLDER, "--output_dir", str(out), "--adapter", "sft", "--max_tool_calls", "1",
                         "--ask", "List the names of all ferns.", "--db", str(db))
    assert "agentic, up to 1 queries" in agentic.stdout and "Traceback" not in agentic.stderr
    assert agentic.returncode == 0 or (agentic.returncode == 2 and agentic.stderr.strip().splitlines()[-1].startswith("error: "))
