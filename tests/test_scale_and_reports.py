"""Beyond one process: accelerate data parallelism (gloo on CPU), kill-and-resume, merged export, compare."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sql_rlvr import benchmarks
from sql_rlvr import execution_reward
from sql_rlvr import scoring
from sql_rlvr import training
import utils
from config import MINI_SPIDER_DIR, parse_config
from conftest import ROOT, copy_sft, run_script

ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/ddp.yaml",
              "--num_processes", "2", "--mixed_precision", "no"]


def test_accelerate_launch_two_processes_runs_sft_and_grpo(tmp_path, smoke_sft):
    # SFT: a few steps show how the data is split. GRPO starts from the session's finished smoke SFT
    # adapter (a few SFT steps would not make the tiny model write SQL, and GRPO would learn nothing).
    sft_run, grpo_run = tmp_path / "sft_run", tmp_path / "grpo_run"
    copy_sft(smoke_sft, grpo_run)
    for script, out, flags in (("train_sft.py", sft_run, ["--sft_max_steps", "12"]), ("train_grpo.py", grpo_run, [])):
        result = subprocess.run([*ACCELERATE, script, "--preset", "smoke", "--output_dir", str(out), *flags],
                                cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Two processes share the data: 12 steps of 2 x 8 examples over 48 examples is 4 epochs, not 2.
    sft_end = [r for r in training.read_metrics(sft_run / "sft" / "metrics.jsonl") if "train_runtime" in r][-1]
    assert sft_end["step"] == 12 and sft_end["epoch"] == pytest.approx(12 * 16 / 48)
    grpo = json.loads((grpo_run / "grpo" / "run_info.json").read_text())
    assert grpo["global_step"] == 4
    rewards = [r for r in training.read_metrics(grpo_run / "grpo" / "metrics.jsonl") if "reward" in r]
    assert len(rewards) == 4 and all("outcome/match" in r for r in rewards)
    # Outcome fractions are averaged over both processes (TRL's log_metric), not rank 0's alone: they
    # equal the outcomes of all completions of the step, which TRL's completion log gathers from both.
    import pandas

    for row in rewards:
        table = pandas.read_parquet(grpo_run / "grpo" / "completions" / f"completions_{row['step']:05d}.parquet")
        assert len(table) == 2 * 4
        for outcome in execution_reward.OUTCOMES:
            assert (table["outcome"] == outcome).mean() == pytest.approx(row[f"outcome/{outcome}"])
    assert (grpo_run / "grpo" / "curves.png").exists() and (sft_run / "sft" / "curves.png").exists()


def kill_after_checkpoint(args: list[str], checkpoint: Path, timeout: float = 300) -> None:
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not (checkpoint / "trainer_state.json").exists():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # a crash, not a polite stop
    proc.wait()


@pytest.mark.parametrize("script, stage, flags, total", [
    ("train_sft.py", "sft", ["--sft_max_steps", "30", "--save_steps", "10"], 30),  # killed with 20 steps (6 s) to go
    ("train_grpo.py", "grpo", ["--grpo_max_steps", "12", "--save_steps", "4"], 12),
])
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, smoke_sft, script, stage, flags, total):
    if stage == "grpo":  # GRPO starts from a finished SFT adapter
        copy_sft(smoke_sft, tmp_path)
    args = [script, "--preset", "smoke", "--output_dir", str(tmp_path), *flags]
    out = tmp_path / stage
    kill_after_checkpoint(args, out / f"checkpoint-{flags[-1]}")
    assert not (out / "run_info.json").exists()
    last = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").exists())
    logged_before = len([r for r in training.read_metrics(out / "metrics.jsonl") if r["step"] <= last])  # --resume drops the rest

    again = run_script(*args)
    assert again.returncode == 2 and "--resume" in again.stderr  # never silently restarts over checkpoints

    resumed = run_script(*args, "--resume", "true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    new_logs = [r for r in training.read_metrics(out / "metrics.jsonl")[logged_before:] if "train_runtime" not in r]
    assert new_logs[0]["step"] == last + 1  # continued, not restarted at step 1
    assert json.loads((out / "run_info.json").read_text())["global_step"] == total
    # the summary counts the steps this run trained, not the whole stage
    assert f"{total - last} steps ({last + 1} to {total}, resumed from checkpoint-{last}) in" in resumed.stdout
    utils.read_adapter_config(out)  # a valid adapter was written


@pytest.mark.slow
def test_export_merged_reloads_without_peft_and_answers_like_the_adapter(tmp_path, spider):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg, _ = parse_config(["--preset", "smoke", "--output_dir", str(tmp_path)])
    model, tokenizer = utils.load_model(cfg, "hf", adapter=None, trainable=True)
    torch.manual_seed(1)
    with torch.no_grad():  # a LoRA that does something: B starts at zero
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    adapter = tmp_path / "my_adapter"
    model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)

    result = run_script("evaluate.py", "--preset", "smoke", "--output_dir", str(tmp_path), "--adapter", str(adapter),
                        "--export", "merged", "--export_dtype", "float32")
    assert result.returncode == 0, result.stderr[-3000:]
    merged_dir = tmp_path / "merged" / "my_adapter"
    assert not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)  # plain transformers, no peft
    assert not hasattr(merged, "peft_config")
    prompts = [utils.render_prompt_for(spider, ex, cfg, tokenizer) for ex in spider.examples("dev")[4:10]]
    tok = AutoTokenizer.from_pretrained(merged_dir)
    from_merged = utils.generate(merged, tok, prompts, "hf", adapter_dir=None, max_new_tokens=24, progress=False)
    with_adapter, _ = utils.load_model(cfg, "hf", adapter=adapter, trainable=False)
    from_adapter = utils.generate(with_adapter, tok, prompts, "hf", adapter_dir=adapter, max_new_tokens=24, progress=False)
    base = utils.generate(utils.load_model(cfg, "hf", trainable=False)[0], tok, prompts, "hf", adapter_dir=None,
                          max_new_tokens=24, progress=False)
    assert from_merged == from_adapter
    assert from_adapter != base  # the comparison means something: the adapter changes the answers
    assert json.loads((merged_dir / "export_info.json").read_text())["agreeing_prompts"] == 4


def write_run(folder: Path, preds: list[str]) -> Path:
    """An evaluation folder as evaluate.py writes it, scored by the real scorer."""
    dev = json.loads((MINI_SPIDER_DIR / "dev.json").read_text())
    golds = [(ex["query"], ex["db_id"]) for ex in dev]
    records = scoring.score_predictions(preds, golds, MINI_SPIDER_DIR / "database", workers=1)
    for record, ex, pred in zip(records, dev, preds):
        record.update(question=ex["question"], prediction=pred)
    folder.mkdir(parents=True)
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "metrics.json").write_text(json.dumps({"by_hardness": benchmarks.get("spider").summarize(records)}))
    return folder / "metrics.json"


def test_compare_shows_ex_side_by_side_and_flipped_questions(tmp_path):
    dev = json.loads((MINI_SPIDER_DIR / "dev.json").read_text())
    gold = [ex["query"] for ex in dev]
    run_a = list(gold)
    run_a[0] = "SELECT 1"  # A wrong on #0
    run_b = list(gold)
    run_b[2] = "SELECT 2"  # B wrong on #2
    a, b = write_run(tmp_path / "a", run_a), write_run(tmp_path / "b", run_b)
    result = run_script("evaluate.py", "--compare", str(a), str(b))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    easy = next(line for line in lines if line.startswith("easy"))
    assert easy.split()[:4] == ["easy", "0.750", "1.000", "+0.250"]
    text = result.stdout
    assert "fixed by B (1)" in text and "broken by B (1)" in text
    assert f"#0 [easy] {dev[0]['question']}" in text and f"#2 [hard] {dev[2]['question']}" in text
