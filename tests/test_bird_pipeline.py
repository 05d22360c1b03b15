"""`--preset smoke --benchmark bird`: the three scripts end to end on the shipped mini-BIRD (about 2 minutes
on 2 busy cores: SFT keeps the preset's 200 steps, fewer leave every GRPO group scoring the same)."""

import hashlib
import json

import pytest

from sql_rlvr import benchmarks
from sql_rlvr import training
from config import MINI_BIRD_DIR
from conftest import run_script


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def bird_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bird_smoke")
    runs = {}
    # SFT in batches of 4 (the preset's 200 steps): GRPO still sees varied rewards and matches (measured), in half the time
    for stage, args in (("sft", ["train_sft.py", "--sft_batch_size", "4"]), ("grpo", ["train_grpo.py", "--eval_steps", "2", "--eval_subset_size", "6"]),
                        ("eval", ["evaluate.py", "--adapter", "grpo"])):
        runs[stage] = run_script(*args, "--preset", "smoke", "--benchmark", "bird", "--output_dir", str(out))
        assert runs[stage].returncode == 0, f"{stage} failed:\n{runs[stage].stdout[-3000:]}\n{runs[stage].stderr[-3000:]}"
    return out, runs


def test_sft_and_grpo_train_on_bird_prompts_with_birds_rule(bird_smoke):
    out, runs = bird_smoke
    info = json.loads((out / "sft" / "run_info.json").read_text())
    assert info["train_examples"] == len(json.loads((MINI_BIRD_DIR / "train" / "train.json").read_text()))
    assert info["config"]["benchmark"] == "bird"
    grpo = json.loads((out / "grpo" / "run_info.json").read_text())
    assert sha(out / "grpo" / "adapter_model.safetensors") != grpo["sft_adapter_sha256"]  # it trained something
    logs = [r for r in training.read_metrics(out / "grpo" / "metrics.jsonl") if "reward" in r]
    assert logs and any(row["reward_std"] > 0 for row in logs)
    assert "prompts=36" in runs["grpo"].stdout
    # --eval_steps: dev EX on a subset drawn by database and difficulty, scored on BIRD's dev databases by its rule
    assert "on 6 of 12 dev questions" in runs["grpo"].stdout and "by database and difficulty" in runs["grpo"].stdout
    logged = [r for r in training.read_metrics(out / "grpo" / "metrics.jsonl") if "eval/ex" in r]
    assert logged and all(0.0 <= r["eval/ex"] <= 1.0 for r in logged)


def test_evaluation_writes_birds_files(bird_smoke):
    out, runs = bird_smoke
    ev = out / "eval" / "grpo"
    dev = json.loads((MINI_BIRD_DIR / "dev" / "dev.json").read_text())
    predict = json.loads((ev / "predict_dev.json").read_text())
    assert list(predict) == [str(i) for i in range(len(dev))]
    for value, ex in zip(predict.values(), dev):
        sql, db_id = value.split("\t----- bird -----\t")
        assert db_id == ex["db_id"] and sql.strip() and "\n" not in sql
    gold_lines = (ev / "dev_gold.sql").read_text().splitlines()
    assert gold_lines == [f"{' '.join(ex['SQL'].split())}\t{ex['db_id']}" for ex in dev]
    metrics = json.loads((ev / "metrics.json").read_text())
    assert {level: metrics["by_difficulty"][level]["count"] for level in benchmarks.BIRD_DIFFICULTIES} == {
        level: sum(ex["difficulty"] == level for ex in dev) for level in benchmarks.BIRD_DIFFICULTIES}
    assert "set(pred) == set(gold)" in metrics["comparator"]
    records = [json.loads(line) for line in (ev / "predictions.jsonl").read_text().splitlines()]
    assert [r["difficulty"] for r in records] == [ex["difficulty"] for ex in dev]
    assert "evaluation_ex.py" in runs["eval"].stdout and "dev_difficulty.jsonl" in runs["eval"].stdout
    # the files score the same through --score_only, reading BIRD's formats
    again = run_script("evaluate.py", "--score_only", "--benchmark", "bird", "--pred", str(ev / "predict_dev.json"),
                       "--gold", str(MINI_BIRD_DIR / "dev" / "dev.json"),
                       "--db_dir", str(MINI_BIRD_DIR / "dev" / "dev_databases"), "--results", str(out / "R"))
    assert again.returncode == 0, again.stderr[-2000:]
    rescored = [json.loads(line) for line in (out / "R").read_text().splitlines()]
    assert [r["exec_match"] for r in rescored] == [r["exec_match"] for r in records]
    compared = run_script("evaluate.py", "--compare", str(ev / "metrics.json"), str(ev / "metrics.json"))
    assert compared.returncode == 0 and "challenging" in compared.stdout, compared.stderr[-2000:]


def test_evaluation_on_birds_mini_dev_split_with_voting(bird_smoke):
    out, _ = bird_smoke
    run = run_script("evaluate.py", "--preset", "smoke", "--benchmark", "bird", "--output_dir", str(out),
                     "--adapter", "sft", "--eval_split", "mini_dev", "--num_samples", "2")
    assert run.returncode == 0, run.stderr[-2000:]
    ev = out / "eval" / "sft" / "mini_dev"  # a split other than dev has its own folder, as Spider's test
    mini = json.loads((MINI_BIRD_DIR / "mini_dev_sqlite.json").read_text())
    predict = json.loads((ev / "predict_dev.json").read_text())
    assert [v.split("\t----- bird -----\t")[1] for v in predict.values()] == [ex["db_id"] for ex in mini]
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["by_difficulty"]["all"]["count"] == len(mini) and metrics["config"]["eval_split"] == "mini_dev"
    # voting among greedy + 2 samples under BIRD's rule: the voted prediction is what predict_dev.json holds
    assert metrics["k"] == 3 and metrics["ex"] == metrics["ex_vote"]
    assert {"ex_vote_by_difficulty", "pass_at_k_by_difficulty", "ex_greedy_by_difficulty"} <= set(metrics)
    candidates = [json.loads(line) for line in (ev / "candidates.jsonl").read_text().splitlines()]
    assert len(candidates) == len(mini) and all(len(c["candidates"]) == 3 for c in candidates)
    voted = [c["candidates"][c["chosen"]]["sql"] for c in candidates]
    assert [v.split("\t----- bird -----\t")[0] for v in predict.values()] == voted
    assert "pass@3" in run.stdout
