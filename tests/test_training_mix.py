"""--train_benchmarks spider,bird: SFT and GRPO on the shipped mini-Spider and mini-BIRD together, each
example with its own prompt extras, database and match rule; evaluation stays on --benchmark."""

import collections
import json

import pytest

from sql_rlvr import errors
from sql_rlvr import execution_reward
import train_grpo
import train_sft
import utils
from config import MINI_BIRD_DIR, MINI_SPIDER_DIR, parse_config, run_defining_config
from conftest import copy_sft, run_script

MIX = ["--preset", "smoke", "--train_benchmarks", "spider,bird"]
SPIDER_TRAIN = len(json.loads((MINI_SPIDER_DIR / "train_spider.json").read_text()))
BIRD_TRAIN = json.loads((MINI_BIRD_DIR / "train" / "train.json").read_text())


def mix_examples(*args: str):
    cfg, _ = parse_config([*MIX, *args])
    datasets = utils.open_training_datasets(cfg)
    return cfg, datasets, utils.training_examples(cfg, datasets)


def test_the_mix_draws_every_benchmarks_train_split_and_samples_across_benchmarks_and_databases():
    _, datasets, examples = mix_examples()
    assert list(datasets) == ["spider", "bird"]
    assert collections.Counter(ex["benchmark"] for ex in examples) == {"spider": SPIDER_TRAIN, "bird": len(BIRD_TRAIN)}
    assert [ex["question"] for ex in examples if ex["benchmark"] == "bird"] == [ex["question"] for ex in BIRD_TRAIN]
    # --max_train_examples: seeded, every (benchmark, database) represented, in proportion to their sizes
    cfg, _, sample = mix_examples("--max_train_examples", "12")
    strata = {(ex["benchmark"], ex["db_id"]) for ex in examples}
    assert len(sample) == 12 and {(ex["benchmark"], ex["db_id"]) for ex in sample} == strata  # 4 + 2 databases
    assert collections.Counter(ex["benchmark"] for ex in sample) == {"spider": 7, "bird": 5}  # 48:36 of 12
    assert sample == mix_examples("--max_train_examples", "12")[2]
    # one benchmark alone: the very sample it was before the mix (stratified by database)
    spider_cfg, _ = parse_config(["--preset", "smoke", "--max_train_examples", "12"])
    alone = utils.training_examples(spider_cfg, utils.open_training_datasets(spider_cfg))
    train = datasets["spider"].examples("train")
    assert [ex["question"] for ex in alone] == [train[i]["question"] for i in utils.stratified_subset(train, 12, 42, ["db_id"])]


def test_the_mix_is_part_of_a_training_runs_identity_and_not_of_evaluations():
    cfg, _ = parse_config(MIX)
    sft = run_defining_config(cfg, "train_sft.py")
    assert sft["train_benchmarks"] == ["spider", "bird"] and {"spider_dir", "bird_dir"} <= set(sft)
    assert "train_benchmarks" not in run_defining_config(cfg, "evaluate.py")
    assert "bird_dir" not in run_defining_config(cfg, "evaluate.py")  # evaluation stays on --benchmark spider
    # the --benchmark alone, spelled out or not, is the same run as before the flag existed
    for args in ([], ["--train_benchmarks", "spider"]):
        alone, _ = parse_config(["--preset", "smoke", *args])
        assert "train_benchmarks" not in run_defining_config(alone, "train_grpo.py")
        assert "bird_dir" not in run_defining_config(alone, "train_grpo.py")
    with pytest.raises(ValueError, match="--train_benchmarks names spider, bird and/or folder"):
        parse_config([*MIX[:2], "--train_benchmarks", "spider,wikisql"])


def test_a_missing_benchmark_folder_is_one_line_naming_it(tmp_path):
    result = run_script("train_sft.py", *MIX, "--bird_dir", str(tmp_path / "no-bird"), "--output_dir", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith(f"error: --train_benchmarks spider,bird: BIRD folder {tmp_path / 'no-bird'} does not exist")
    # a BIRD folder without its train split: the missing file, named the same way
    (tmp_path / "bird" / "dev").mkdir(parents=True)
    with pytest.raises(errors.DataError, match=r"^--train_benchmarks spider,bird: missing .*train_tables\.json"):
        mix_examples("--bird_dir", str(tmp_path / "bird"))


def test_sft_prompts_come_from_each_examples_own_benchmark(tmp_path):
    cfg, _ = parse_config([*MIX, "--bird_column_descriptions", "true", "--output_dir", str(tmp_path)])
    trainer, info = train_sft.build_trainer(cfg, tmp_path / "sft")
    assert info["train_benchmarks"] == {"spider": {"examples": SPIDER_TRAIN, "skipped_over_max_seq_length": 0},
                                        "bird": {"examples": len(BIRD_TRAIN), "skipped_over_max_seq_length": 0}}
    users = [row["prompt"][-1]["content"] for row in trainer.train_dataset]
    answers = [row["completion"][0]["content"] for row in trainer.train_dataset]
    with_evidence = [ex for ex in BIRD_TRAIN if ex["evidence"]]
    for ex in with_evidence:
        user = users[answers.index(ex["SQL"])]
        assert user.endswith(f"Question: {ex['question']}\nExternal knowledge: {ex['evidence']}")
        assert "CREATE TABLE" in user and " -- " in user  # its own database's schema, with BIRD's column descriptions
    bird_users = {users[answers.index(ex["SQL"])] for ex in BIRD_TRAIN}
    spider_users = [u for u in users if u not in bird_users]
    assert len(spider_users) == SPIDER_TRAIN
    assert not any("External knowledge" in u or " -- " in u for u in spider_users)


def test_grpo_rows_carry_their_rule_and_the_reward_judges_each_by_its_own(tiny_tokenizer):
    cfg, datasets, examples = mix_examples()
    rows, _, skipped = train_grpo.grpo_rows(cfg, datasets, examples, tiny_tokenizer)
    assert not skipped and len(rows) == SPIDER_TRAIN + len(BIRD_TRAIN)
    assert {(row["benchmark"], row["rule"]) for row in rows} == {("spider", "spider"), ("bird", "bird")}
    bird = next(row for row in rows if row["gold_sql"] == "SELECT genre, COUNT(book_id) FROM book GROUP BY genre")
    spider = next(row for row in rows if row["gold_sql"] == "SELECT Genre , count(*) FROM book GROUP BY Genre")
    assert "train_databases/city_library" in bird["db_path"] and "mini_spider/database/bookshop" in spider["db_path"]
    evidence = next(ex["evidence"] for ex in BIRD_TRAIN if ex["evidence"])
    assert any(row["prompt"][-1]["content"].endswith(f"External knowledge: {evidence}") for row in rows)
    # The same answer, columns swapped: Spider's rule permutes columns (+5), BIRD's does not (partial credit).
    answers = ["SELECT COUNT(book_id), genre FROM book GROUP BY genre", "SELECT count(*), Genre FROM book GROUP BY Genre"]
    reward = execution_reward.SQLExecutionReward(workers=1)  # its own rule (Spider's) is not what judges the rows
    try:
        assert execution_reward.checked_gold_rows([bird, spider], reward, skip_empty=True)[1] == 0
        values = reward(prompts=[bird["prompt"], spider["prompt"]], completions=answers,
                        gold_sql=[bird["gold_sql"], spider["gold_sql"]], db_path=[bird["db_path"], spider["db_path"]],
                        rule=[bird["rule"], spider["rule"]], benchmark=[bird["benchmark"], spider["benchmark"]])
        assert 0 < values[0] < 5.0 and values[1] == 5.0
        assert reward.score(answers[:1], [bird["gold_sql"]], [bird["db_path"]], ["spider"])[0][1] == "match"
    finally:
        reward.close()


@pytest.fixture(scope="module")
def mix_grpo(tmp_path_factory, smoke_sft):
    out = tmp_path_factory.mktemp("mix")
    copy_sft(smoke_sft, out)  # the session's Spider SFT adapter: GRPO's run does not depend on SFT's data
    result = run_script("train_grpo.py", *MIX, "--output_dir", str(out))
    assert result.returncode == 0, f"grpo failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out, result


def test_grpo_trains_on_the_mix_with_counts_per_benchmark_and_evaluation_stays_on_spider(mix_grpo, tmp_path):
    out, result = mix_grpo
    info = json.loads((out / "grpo" / "run_info.json").read_text())
    counts = info["train_benchmarks"]
    assert counts["spider"]["prompts"] + counts["bird"]["prompts"] == info["prompts"]
    assert counts["bird"] == {"prompts": len(BIRD_TRAIN), "skipped_over_max_prompt_length": 0, "skipped_empty_gold": 0}
    assert counts["spider"]["prompts"] + counts["spider"]["skipped_empty_gold"] == SPIDER_TRAIN
    line = next(line for line in result.stdout.splitlines() if line.startswith("[grpo] training mix: "))
    assert f"bird: prompts={len(BIRD_TRAIN)} skipped_over_max_prompt_length=0 skipped_empty_gold=0" in line
    assert info["config"]["train_benchmarks"] == ["spider", "bird"]
    ev = run_script("evaluate.py", *MIX, "--output_dir", str(out), "--adapter", "grpo", "--max_eval_examples", "4")
    assert ev.returncode == 0, ev.stderr[-3000:]
    metrics = json.loads((out / "eval" / "grpo" / "metrics.json").read_text())
    assert "by_hardness" in metrics and (out / "eval" / "grpo" / "pred.txt").exists()  # Spider's files, not BIRD's
    # GRPO's data, like SFT's, stops in one line when a benchmark of the mix is missing
    copy_sft(out / "sft", tmp_path)
    missing = run_script("train_grpo.py", *MIX, "--output_dir", str(tmp_path), "--bird_dir", str(tmp_path / "none"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0, missing.stderr[-2000:]
    assert "--train_benchmarks spider,bird: BIRD folder" in missing.stderr


@pytest.mark.hf_training
def test_sft_logs_the_counts_per_benchmark(tmp_path):
    result = run_script("train_sft.py", *MIX, "--output_dir", str(tmp_path), "--sft_max_steps", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"[sft] training mix: spider: examples={SPIDER_TRAIN} skipped_over_max_seq_length=0; "
            f"bird: examples={len(BIRD_TRAIN)} skipped_over_max_seq_length=0") in result.stdout
    info = json.loads((tmp_path / "sft" / "run_info.json").read_text())
    assert info["train_examples"] == SPIDER_TRAIN + len(BIRD_TRAIN)
    assert info["train_benchmarks"]["bird"]["examples"] == len(BIRD_TRAIN)
