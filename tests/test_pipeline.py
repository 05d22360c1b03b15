"""The three entry scripts end to end on CPU, as `make smoke` runs them (--preset smoke)."""

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from sql_rlvr import benchmarks
from sql_rlvr import errors
from sql_rlvr import execution_reward
from sql_rlvr import scoring
from sql_rlvr import training
import utils
from config import GRPO_TRAINER_ARGS, MINI_SPIDER_DIR, SFT_TRAINER_ARGS, parse_config
from conftest import assert_official_files_pair, assert_trainer_args_follow_config, copy_sft, run_script


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, smoke_sft):
    out = tmp_path_factory.mktemp("smoke")
    copy_sft(smoke_sft, out)  # `train_sft.py --preset smoke`, run once per session (conftest)
    runs = {}
    for stage, args in (("grpo", ["train_grpo.py"]), ("eval", ["evaluate.py", "--adapter", "grpo"])):
        runs[stage] = run_script(*args, "--preset", "smoke", "--output_dir", str(out))
        assert runs[stage].returncode == 0, f"{stage} failed:\n{runs[stage].stdout[-3000:]}\n{runs[stage].stderr[-3000:]}"
    return out, runs


def test_sft_saves_a_peft_adapter_and_its_loss_goes_down(smoke):
    out, _ = smoke
    sft = out / "sft"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "run_info.json",
                 "metrics.jsonl", "curves.png"):
        assert (sft / name).exists(), name
    losses = [r["loss"] for r in training.read_metrics(sft / "metrics.jsonl") if "loss" in r]
    assert len(losses) >= 100
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10


def test_grpo_trains_the_sft_adapter_with_the_execution_reward(smoke):
    out, runs = smoke
    grpo = out / "grpo"
    info = json.loads((grpo / "run_info.json").read_text())
    assert info["global_step"] == 4
    assert info["sft_adapter_sha256"] == sha(out / "sft" / "adapter_model.safetensors")
    assert sha(grpo / "adapter_model.safetensors") != info["sft_adapter_sha256"]  # it trained something
    # --grpo_filter_samples is off by default: nothing sampled before training, no pass-rate file or counts
    assert not (grpo / "prompt_pass_rates.jsonl").exists() and "pass_rate_filter" not in info
    assert "pass-rate filter" not in runs["grpo"].stdout and info["prompts"] == 48
    logs = [r for r in training.read_metrics(grpo / "metrics.jsonl") if "reward" in r]
    assert len(logs) == 4
    for row in logs:
        assert "rewards/sql_execution/mean" in row and "reward_std" in row and "frac_reward_zero_std" in row
        assert sum(row[f"outcome/{o}"] for o in execution_reward.OUTCOMES) == pytest.approx(1.0)
    # the reward values seen are the reward function's own: matches (+5), invalid (-1), partial/wrong (>= 0)
    assert any(row["outcome/match"] > 0 for row in logs) and any(row["reward_std"] > 0 for row in logs)
    # one line per step as SFT's: names, 3 significant digits, the outcome mix as percentages
    step_lines = [line for line in runs["grpo"].stdout.splitlines() if line.startswith("[grpo] step ")]
    assert [line.split()[2] for line in step_lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(re.search(r"  reward -?[0-9.e+-]+ +reward_std [0-9.e+-]+ .*answers: match +\d+%  partial +\d+%", line)
               for line in step_lines), step_lines
    # TRL's completion log holds every completion of each step with its reward and outcome (log_extra);
    # the logged fractions (log_metric) are exactly that step's outcomes, and a match earned +5.
    import pandas

    tables = []
    for row in logs:
        table = pandas.read_parquet(grpo / "completions" / f"completions_{row['step']:05d}.parquet")
        assert len(table) == 2 * 4  # prompts per step x generations
        for outcome in execution_reward.OUTCOMES:
            assert (table["outcome"] == outcome).mean() == pytest.approx(row[f"outcome/{outcome}"])
        tables.append(table)
    completions = pandas.concat(tables)
    assert (completions["outcome"] == "match").any()
    assert (completions.loc[completions["outcome"] == "match", "sql_execution"] == 5.0).all()
    # Readable steps: a line per step and per sample answer (TRL's table would repeat each schema prompt).
    stdout = runs["grpo"].stdout
    assert re.search(r"^ +(match|partial|wrong|invalid|empty) [+-]\d\.\d\d  '", stdout, re.M)
    assert "Completion" not in stdout and len(stdout.splitlines()) < 60


def test_trainers_get_the_configs_settings(smoke):
    # run_info.json records the arguments the built trainers held; the unsloth twin is in test_unsloth_backend.py.
    out, _ = smoke
    assert_trainer_args_follow_config(json.loads((out / "sft" / "run_info.json").read_text()), SFT_TRAINER_ARGS)
    assert_trainer_args_follow_config(json.loads((out / "grpo" / "run_info.json").read_text()), GRPO_TRAINER_ARGS)


def test_evaluation_writes_official_files_that_line_up(smoke):
    out, runs = smoke
    ev = out / "eval" / "grpo"
    dev = json.loads((MINI_SPIDER_DIR / "dev.json").read_text())
    preds = assert_official_files_pair(ev, dev)
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["adapter"].endswith("grpo") and metrics["adapter_sha256"] == sha(out / "grpo" / "adapter_model.safetensors")
    assert metrics["by_hardness"]["all"]["count"] == len(dev) and metrics["subset"] is None
    records = [json.loads(line) for line in (ev / "predictions.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in records] == preds
    assert [r["dev_index"] for r in records] == list(range(len(dev)))
    assert "evaluation.py --gold" in runs["eval"].stdout
    assert re.search(r"\[eval\] done in \d+ s \(generation \d+ s\)", runs["eval"].stdout)  # its wall time
    # the files score the same through --score_only
    rescored = scoring.score_predictions(scoring.read_pred_file(ev / "pred.txt"), scoring.read_gold_file(ev / "gold.txt"),
                                       MINI_SPIDER_DIR / "database", workers=1)
    assert sum(r["exec_match"] for r in rescored) == metrics["by_hardness"]["all"]["exec_match"]


def test_finished_outputs_are_never_clobbered(smoke):
    out, _ = smoke
    before = sha(out / "sft" / "adapter_model.safetensors")
    again = run_script("train_sft.py", "--preset", "smoke", "--output_dir", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert sha(out / "sft" / "adapter_model.safetensors") == before
    assert run_script("evaluate.py", "--preset", "smoke", "--output_dir", str(out), "--adapter", "grpo").returncode == 2


@pytest.mark.slow
def test_missing_inputs_are_one_clear_line(tmp_path):
    cases = [
        (["train_grpo.py", "--preset", "smoke", "--output_dir", str(tmp_path)], "run `python train_sft.py`"),
        (["evaluate.py", "--preset", "smoke", "--output_dir", str(tmp_path), "--adapter", "sft"], "no sft adapter"),
        (["evaluate.py", "--preset", "smoke", "--adapter", str(tmp_path)], "no LoRA adapter at"),
        (["train_sft.py", "--preset", "smoke", "--output_dir", str(tmp_path), "--spider_dir", str(tmp_path / "x")],
         "yale-lily.github.io/spider"),
        (["train_sft.py", "--output_dir", str(tmp_path), "--spider_dir", str(MINI_SPIDER_DIR), "--backend", "hf",
          "--model_name", str(tmp_path / "no-model")], "no such folder"),
        (["train_sft.py", "--preset", "smoke", "--output_dir", str(tmp_path), "--backend", "unsloth"], "needs a CUDA GPU"),
    ]
    for args, message in cases:
        result = run_script(*args)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]


def test_sft_loss_covers_exactly_the_sql_and_the_end_of_turn_token(tmp_path):
    import train_sft

    cfg, _ = parse_config(["--preset", "smoke", "--output_dir", str(tmp_path)])
    trainer, info = train_sft.build_trainer(cfg, tmp_path / "sft")
    assert_trainer_args_follow_config(info, SFT_TRAINER_ARGS)  # in process: the hf SFTTrainer holds the config's settings
    tokenizer = trainer.processing_class
    spider = benchmarks.Spider.open(cfg.spider_dir)
    golds = {ex["query"] for ex in spider.examples("train")}
    for row in [trainer.train_dataset[i] for i in range(5)]:
        labels = trainer.data_collator([row])["labels"][0].tolist()
        learned = tokenizer.decode([t for t in labels if t != -100])
        assert learned.endswith("<|im_end|>\n")  # the model learns to stop
        assert learned[: -len("<|im_end|>\n")] in golds  # and nothing of the prompt


def test_grpo_refuses_an_adapter_it_cannot_train(tmp_path, monkeypatch):
    from peft import PeftModel

    cfg, _ = parse_config(["--preset", "smoke"])
    model, _ = utils.load_model(cfg, "hf", adapter=None, trainable=True)
    model.save_pretrained(tmp_path)
    trained, _ = utils.load_model(cfg, "hf", adapter=tmp_path, trainable=True)
    assert utils.count_trainable(trained) > 0
    frozen = PeftModel.from_pretrained(utils.load_model(cfg, "hf", trainable=False)[0], str(tmp_path))
    assert utils.count_trainable(frozen) == 0  # what the silent failure looks like; load_model never returns it
    # The reported failure (trl #6700): the adapter comes back frozen. Make PEFT load it that way and
    # load_model must refuse, in one line, instead of handing GRPO a model that trains nothing.
    load_frozen = PeftModel.from_pretrained.__func__
    monkeypatch.setattr(PeftModel, "from_pretrained",
                        classmethod(lambda cls, *args, **kwargs: load_frozen(cls, *args, **{**kwargs, "is_trainable": False})))
    with pytest.raises(errors.UserError, match="no trainable parameters"):
        utils.load_model(cfg, "hf", adapter=tmp_path, trainable=True)


def test_grpo_that_changes_nothing_is_not_marked_finished(tmp_path, smoke_sft):
    # One-token answers are all "no SQL" (-1): every group scores the same, no gradient, no update.
    copy_sft(smoke_sft, tmp_path)
    result = run_script("train_grpo.py", "--preset", "smoke", "--output_dir", str(tmp_path), "--max_completion_length", "1",
                        "--grpo_max_steps", "1", "--num_completions_to_log", "0")
    assert result.returncode == 2 and "identical to the SFT adapter" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert sha(tmp_path / "grpo" / "adapter_model.safetensors") == sha(tmp_path / "sft" / "adapter_model.safetensors")
    assert not (tmp_path / "grpo" / "run_info.json").exists()  # not finished: evaluate --adapter grpo would be wrong
    again = run_script("train_grpo.py", "--preset", "smoke", "--output_dir", str(tmp_path))
    assert again.returncode == 2 and "--resume" in again.stderr  # its checkpoints are an unfinished run's


def test_grpo_eval_steps_logs_the_dev_ex_that_evaluate_reproduces(tmp_path, smoke_sft):
    # Dev questions the tiny model has seen in SFT, so that its greedy EX is not 0 and comparing means something.
    data = tmp_path / "spider"
    data.mkdir()
    for name in ("tables.json", "train_spider.json"):
        shutil.copy(MINI_SPIDER_DIR / name, data / name)
    (data / "dev.json").write_text((MINI_SPIDER_DIR / "train_spider.json").read_text())
    (data / "database").symlink_to(MINI_SPIDER_DIR / "database")
    copy_sft(smoke_sft, tmp_path)
    common = ["--preset", "smoke", "--output_dir", str(tmp_path), "--spider_dir", str(data)]
    grpo = run_script("train_grpo.py", *common, "--eval_steps", "2", "--eval_subset_size", "12", "--progress_every_s", "0")
    assert grpo.returncode == 0, grpo.stderr[-3000:]
    logged = [r for r in training.read_metrics(tmp_path / "grpo" / "metrics.jsonl") if "eval/ex" in r]
    assert [r["step"] for r in logged] == [2, 4]
    assert all("reward" in r for r in logged)  # in the step's own log line, not a line of its own
    assert "eval/ex=" in grpo.stdout and "on 12 of 48 dev questions" in grpo.stdout
    assert "[grpo] step 2: eval/ex answers: 12/12 questions, " in grpo.stdout  # a log's progress line (pace 0 s)
    # the callbacks after it (here the step printer) see it in the step's own line
    assert re.search(r"^\[grpo\] step 2/4  reward .* eval/ex [0-9.]+ ", grpo.stdout, re.M), grpo.stdout[-2000:]
    # evaluate.py on the saved adapter, same seeded subset (same function, same strata): the same EX as
    # the callback measured on the live model after the last step.
    ev = run_script("evaluate.py", *common, "--adapter", "grpo", "--max_eval_examples", "12")
    assert ev.returncode == 0, ev.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "grpo" / "metrics.json").read_text())
    assert metrics["ex"] > 0
    assert logged[-1]["eval/ex"] == pytest.approx(metrics["ex"])
    subset = metrics["subset"]
    assert subset["size"] == 12 and subset["of"] == 48 and subset["seed"] == 42 and subset["strata"] == ["db_id", "hardness"]
    dev = json.loads((data / "dev.json").read_text())
    assert subset["indices"] == utils.stratified_subset(dev, 12, 42, ["db_id", "hardness"])
    assert {dev[i]["db_id"] for i in subset["indices"]} == {ex["db_id"] for ex in dev}
    records = [json.loads(line) for line in (tmp_path / "eval" / "grpo" / "predictions.jsonl").read_text().splitlines()]
    assert [r["dev_index"] for r in records] == subset["indices"]
    assert [r["question"] for r in records] == [dev[i]["question"] for i in subset["indices"]]


def test_dev_ex_joins_its_steps_log_line_through_the_callback_api(tmp_path):
    # No trainer internals: the callback measures at the step's end and adds eval/ex to the logs dict every later
    # callback gets (and to the log history entry of that step), once.
    from transformers import TrainerControl, TrainerState

    from sql_rlvr.dev_check import DevEXCallback

    cfg, _ = parse_config(["--preset", "smoke", "--output_dir", str(tmp_path), "--eval_steps", "2",
                           "--eval_subset_size", "2", "--max_completion_length", "8"])
    model, tokenizer = utils.load_model(cfg, "hf", trainable=True)
    callback = DevEXCallback(cfg, utils.open_dataset(cfg), "hf", tokenizer, tmp_path)
    state = TrainerState(global_step=1, log_history=[{"reward": 0.5, "step": 1}])
    control = TrainerControl()
    callback.on_step_end(None, state, control, model=model)  # not an eval step
    logs = {"reward": 0.5}
    callback.on_log(None, state, control, logs=logs)
    assert "eval/ex" not in logs and not control.should_log
    state.global_step = 2
    state.log_history.append({"reward": 0.25, "step": 2})
    callback.on_step_end(None, state, control, model=model)
    assert control.should_log  # the eval step is logged even off --logging_steps
    logs = {"reward": 0.25}
    callback.on_log(None, state, control, logs=logs)
    assert 0.0 <= logs["eval/ex"] <= 1.0 and state.log_history[-1]["eval/ex"] == logs["eval/ex"]
    assert "eval/ex" not in state.log_history[0]
    later = {"reward": 0.1}
    callback.on_log(None, state, control, logs=later)
    assert "eval/ex" not in later  # once, in the line of the step it measured


def test_same_seed_same_lora_initialisation():
    cfg, _ = parse_config(["--preset", "smoke"])
    first = utils.load_model(cfg, "hf", trainable=True)[0]
    second = utils.load_model(cfg, "hf", trainable=True)[0]
    cfg.seed += 1
    third = utils.load_model(cfg, "hf", trainable=True)[0]
    def lora(m):
        return [p.detach().clone() for n, p in m.named_parameters() if "lora_A" in n]

    assert all((a == b).all() for a, b in zip(lora(first), lora(second)))
    assert not all((a == c).all() for a, c in zip(lora(first), lora(third)))


def test_evaluate_overwrite_leaves_no_file_of_the_earlier_evaluation(tmp_path, smoke_sft):
    # A voting evaluation (--num_samples) redone greedy with --overwrite: its candidates.jsonl and
    # pred_greedy.txt would otherwise sit beside the new pred.txt and metrics.json as if they were its own.
    copy_sft(smoke_sft, tmp_path)
    ev = tmp_path / "eval" / "sft"
    ev.mkdir(parents=True)
    for name in ("metrics.json", "candidates.jsonl", "pred_greedy.txt"):
        (ev / name).write_text('{"old": true}\n')
    result = run_script("evaluate.py", "--preset", "smoke", "--output_dir", str(tmp_path), "--adapter", "sft",
                        "--max_eval_examples", "4", "--overwrite")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (ev / "candidates.jsonl").exists() and not (ev / "pred_greedy.txt").exists()
    assert json.loads((ev / "metrics.json").read_text())["examples"] == 4


@pytest.mark.hf_training
def test_logs_written_to_a_file_put_each_line_on_its_own(tmp_path):
    # Output redirected to a file (`> log 2>&1`) has no progress bar to share a line with: every step line
    # starts a line, and nothing opens with blank lines (the tiny tokenizer's training used to print three).
    import subprocess
    import sys

    from conftest import ROOT

    log = tmp_path / "sft.log"
    with open(log, "w") as fh:  # the first run after a clone builds the model (here in its own folder)
        done = subprocess.run([sys.executable, "train_sft.py", "--preset", "smoke", "--output_dir", str(tmp_path),
                               "--sft_max_steps", "3", "--save_steps", "100"], cwd=ROOT, stdout=fh,
                              stderr=subprocess.STDOUT, timeout=600,
                              env={**os.environ, "SQL_RLVR_TINY_MODEL_DIR": str(tmp_path / "tiny")})
    assert done.returncode == 0, log.read_text()[-3000:]
    lines = log.read_bytes().decode().split("\n")  # read_text() would turn a bar's \r into line breaks
    assert lines[0].strip(), lines[:3]
    steps = [line for line in lines if "[sft] step " in line]
    assert len(steps) == 3 and all(line.startswith("[sft] step ") and "\r" not in line for line in steps), steps
    assert re.fullmatch(r"\[sft\] step 1/3  loss [0-9.]+ +learning_rate [0-9.e-]+ +mean_token_accuracy [0-9.e-]+",
                        steps[0]), steps[0]
