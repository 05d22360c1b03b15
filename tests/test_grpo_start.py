"""GRPO from the base model (--grpo_start base): a new LoRA on the base model, no SFT stage, on the real tiny
model, mini-Spider and SQLite; --resume continues only such a run."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

import train_grpo
import utils
from config import Config, ConfigError, parse_config, run_defining_config
from conftest import copy_sft, run_script
from sql_rlvr import errors, run_folders, training

# A check every 2 steps on 4 dev questions and a pass-rate filter of 2 answers: both generate with the new LoRA.
FLAGS = ["--preset", "smoke", "--grpo_start", "base", "--grpo_max_steps", "4", "--save_steps", "2",
         "--eval_steps", "2", "--eval_subset_size", "4", "--grpo_filter_samples", "2", "--num_completions_to_log", "0"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lora_b_moved(adapter: Path) -> bool:
    from safetensors.torch import load_file

    return any(bool(t.any()) for name, t in load_file(str(adapter / "adapter_model.safetensors")).items()
               if "lora_B" in name)


def one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def instruct_model(tmp_path_factory, smoke_sft) -> Path:
    """A base model that already writes SQL, standing in for an instruct model: the session's smoke SFT adapter
    merged into the tiny model (float32, so it answers as the adapter). The tiny model alone answers nothing a
    reward could tell apart, so GRPO from it has no reward spread and rightly refuses to call itself trained."""
    out = tmp_path_factory.mktemp("instruct")
    result = run_script("evaluate.py", "--preset", "smoke", "--output_dir", str(out), "--adapter", str(smoke_sft),
                        "--export", "merged", "--export_dtype", "float32")
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "merged" / "sft"


@pytest.fixture(scope="module")
def from_base(tmp_path_factory, instruct_model):
    """One finished `train_grpo.py --grpo_start base` run into an output folder that has no sft/."""
    out = tmp_path_factory.mktemp("from_base")
    result = run_script("train_grpo.py", *FLAGS, "--model_name", str(instruct_model), "--output_dir", str(out))
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out, result


def test_grpo_from_the_base_model_trains_a_new_lora_without_an_sft_stage(from_base, instruct_model):
    out, result = from_base
    grpo = out / "grpo"
    assert not (out / "sft").exists()
    info = json.loads((grpo / "run_info.json").read_text())
    assert info["grpo_start"] == "base" and info["global_step"] == 4 and info["base_model"] == str(instruct_model)
    assert "sft_adapter_sha256" not in info and "sft_adapter" not in info  # no SFT adapter: none recorded
    adapter = utils.read_adapter_config(grpo)
    assert (adapter["r"], adapter["lora_alpha"]) == (16, 32)  # the config's LoRA (--preset smoke), made new
    assert adapter["base_model_name_or_path"] == str(instruct_model)
    assert lora_b_moved(grpo)  # a new LoRA starts with every lora_B at zero: this one was trained
    assert "[grpo] backend=hf starting from the base model, a new LoRA (r=16, alpha=32)" in result.stdout
    assert f"a new adapter on the base model (sha256 {sha(grpo / 'adapter_model.safetensors')[:12]})" in result.stdout
    run = json.loads((grpo / run_folders.RUN_FILE).read_text())["config"]
    assert run["grpo_start"] == "base" and run["lora_r"] == 16 and "sft_adapter_sha256" not in run
    # The pass-rate filter sampled the base model (no SFT adapter to name) ...
    records = [json.loads(line) for line in (grpo / run_folders.PASS_RATES_FILE).read_text().splitlines()]
    assert len(records) == info["pass_rate_filter"]["prompts_sampled"] == 48
    assert {r["sft_adapter_sha256"] for r in records} == {None} and {r["k"] for r in records} == {2}
    # ... and --eval_steps measured the new LoRA as it trained.
    logged = {r["step"]: r["eval/ex"] for r in training.read_metrics(grpo / "metrics.jsonl") if "eval/ex" in r}
    assert sorted(logged) == [2, 4] and all(0.0 <= ex <= 1.0 for ex in logged.values())


def test_a_run_from_the_base_model_resumes_only_from_the_base_model(from_base, instruct_model, smoke_sft, tmp_path):
    out, _ = from_base
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    grpo = tmp_path / "grpo"
    finished = sha(grpo / "adapter_model.safetensors")
    # As a run killed after its checkpoint-2 leaves the folder: no finished marker, adapter or later checkpoint.
    for name in ("run_info.json", "adapter_model.safetensors", "adapter_config.json"):
        (grpo / name).unlink()
    shutil.rmtree(grpo / "checkpoint-4")
    args = ["train_grpo.py", *FLAGS, "--model_name", str(instruct_model), "--output_dir", str(tmp_path), "--resume"]
    as_sft = [a for a in args if a not in ("--grpo_start", "base")]  # the default, --grpo_start sft

    one_line_error(run_script(*as_sft), f"no finished SFT adapter in {tmp_path / 'sft'}", "--grpo_start base")
    copy_sft(smoke_sft, tmp_path)  # with an SFT adapter there, a checkpoint of a base run still never resumes from it
    one_line_error(run_script(*as_sft), "--resume: checkpoint-2 was trained with other settings (grpo_start: base -> sft")
    # The new LoRA's shape is part of a base run (from the SFT adapter, GRPO takes the adapter's).
    one_line_error(run_script(*args, "--lora_r", "8"), "other settings (lora_r: 16 -> 8)")

    resumed = run_script(*args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "[grpo] resuming from checkpoint-2 (step 2 of 4)" in resumed.stdout
    assert "--resume: reused" in resumed.stdout  # the pass rates of the base model, not sampled again
    info = json.loads((grpo / "run_info.json").read_text())
    assert info["grpo_start"] == "base" and info["global_step"] == 4 and "sft_adapter_sha256" not in info
    assert sha(grpo / "adapter_model.safetensors") == finished  # the same run as the uninterrupted one


def test_grpo_start_is_sft_or_base_and_a_base_run_is_defined_by_its_lora():
    assert Config().grpo_start == "sft"
    with pytest.raises(ConfigError, match="--grpo_start must be sft or base, not 'instruct'"):
        parse_config(["--grpo_start", "instruct"])
    from_sft = run_defining_config(Config(), "train_grpo.py")
    from_base = run_defining_config(Config(grpo_start="base"), "train_grpo.py")
    assert from_sft["grpo_start"] == "sft" and from_base["grpo_start"] == "base"
    lora = {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"}
    assert lora <= set(from_base) and not lora & set(from_sft)  # from the SFT adapter GRPO reads its LoRA there
    assert lora <= set(run_defining_config(Config(), "train_sft.py"))
    result = run_script("train_grpo.py", "--preset", "smoke", "--grpo_start", "instruct")
    assert result.returncode == 2 and result.stderr.strip() == "error: --grpo_start must be sft or base, not 'instruct'"


def test_a_base_run_whose_lora_never_moved_is_not_finished(tmp_path):
    # From the base model "no update" is every lora_B still zero (a new LoRA's start; lora_A starts random and
    # weight decay moves it without a gradient): the adapter answers as the base model.
    cfg, _ = parse_config(["--preset", "smoke", "--output_dir", str(tmp_path)])
    model, _ = utils.load_model(cfg, "hf", adapter=None, trainable=True)
    model.save_pretrained(tmp_path)
    with pytest.raises(errors.UserError, match="is still the base model .every lora_B weight is zero.: no update"):
        train_grpo.refuse_unchanged(tmp_path, None)
    import torch

    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n)[0, 0] = 1e-3
    model.save_pretrained(tmp_path)
    train_grpo.refuse_unchanged(tmp_path, None)  # one weight moved: the model answers differently
