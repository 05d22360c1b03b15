"""Model loading: a model that is not there is one line, a saved adapter must fit exactly, each process
loads onto its own device, and ZeRO-3 is refused."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file

from sql_rlvr import errors
import utils
from config import parse_config
from conftest import ROOT, run_script


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0, result.stderr
    return result.stderr


@pytest.mark.slow
def test_a_model_path_that_does_not_exist_is_one_line(tmp_path):
    for name in ("/path/that/does/not/exist", "./no-model-here", "outputs/merged/nothing"):
        err = one_line_error(run_script("train_sft.py", "--preset", "smoke", "--model_name", name,
                                        "--output_dir", str(tmp_path)))
        assert f"--model_name {name}: no such folder" in err
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    err = one_line_error(run_script("evaluate.py", "--preset", "smoke", "--model_name", str(not_a_model),
                                    "--adapter", "none", "--output_dir", str(tmp_path)))
    assert "is not a model folder (no config.json in it)" in err


@pytest.mark.slow
def test_a_hub_model_without_network_or_cache_is_one_line_saying_how_to_download(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-cache")}  # an empty Hugging Face cache
    args = [sys.executable, "evaluate.py", "--preset", "smoke", "--model_name", "Qwen/Qwen3-0.6B", "--adapter", "none",
            "--output_dir", str(tmp_path)]
    offline = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env={**env, "HF_HUB_OFFLINE": "1"})
    err = one_line_error(offline)
    assert "not in the Hugging Face cache and HF_HUB_OFFLINE is set" in err and "hf download Qwen/Qwen3-0.6B" in err
    # An endpoint nothing answers at stands for a machine without network, wherever the test runs.
    unreachable = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120,
                                 env={**env, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"})
    err = one_line_error(unreachable)
    assert "cannot reach 127.0.0.1 to download Qwen/Qwen3-0.6B" in err and "hf download" in err


def broken_adapter(smoke_sft, tmp_path, drop: bool):
    adapter = tmp_path / "adapter"
    shutil.copytree(smoke_sft, adapter, ignore=shutil.ignore_patterns("checkpoint-*"))
    weights = load_file(adapter / "adapter_model.safetensors")
    if drop:  # a LoRA weight missing: that layer would silently stay at its initial value
        del weights[sorted(k for k in weights if "lora_B" in k)[0]]
    else:  # a weight the model has no place for
        weights["base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight"] = next(iter(weights.values())).clone()
    save_file(weights, adapter / "adapter_model.safetensors")
    return adapter


@pytest.mark.parametrize("drop", [True, False], ids=["missing", "unexpected"])
def test_an_adapter_that_does_not_fit_the_model_is_refused_both_ways(smoke_sft, tmp_path, drop):
    adapter = broken_adapter(smoke_sft, tmp_path, drop)
    cfg, _ = parse_config(["--preset", "smoke"])
    with pytest.raises(errors.UserError, match="missing from the file" if drop else "has no place for"):
        utils.load_model(cfg, "hf", adapter=adapter, trainable=False)
    model, _ = utils.load_model(cfg, "hf", adapter=smoke_sft, trainable=False)  # the intact one loads
    assert hasattr(model, "peft_config")


def test_deepspeed_zero3_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    cfg, _ = parse_config(["--preset", "smoke"])
    with pytest.raises(errors.UserError, match="ZeRO-3 is not supported.*zero2.yaml"):
        utils.load_model(cfg, "hf", trainable=False)


DEVICES = """
import json, os, sys
sys.path.insert(0, {root!r})
import torch
from accelerate import PartialState
import utils
from config import parse_config

cfg, _ = parse_config(["--preset", "smoke"])
state = PartialState()
inference, _ = utils.load_model(cfg, "hf", trainable=False)
training, _ = utils.load_model(cfg, "hf", trainable=True)
print(json.dumps({{"rank": int(os.environ["RANK"]), "state": str(state.device),
                  "inference": str(next(inference.parameters()).device),
                  "training": str(next(training.parameters()).device),
                  "cuda_initialized": torch.cuda.is_initialized()}}))
"""


@pytest.mark.slow
def test_each_process_loads_onto_its_own_device_and_nothing_goes_to_cuda_without_it(tmp_path):
    # Two gloo processes, as `accelerate launch` starts them: each rank's inference model sits on its
    # own process's device, a model to train stays where it loaded until the trainer places it, and
    # without CUDA nothing touches it (before, the hf loader sent every rank's copy to "cuda", GPU 0).
    script = tmp_path / "devices.py"
    script.write_text(DEVICES.format(root=str(ROOT)))
    result = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/ddp.yaml",
                             "--num_processes", "2", "--mixed_precision", "no", str(script)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = sorted((json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")),
                  key=lambda r: r["rank"])
    assert [r["rank"] for r in seen] == [0, 1]
    for rank in seen:
        assert rank["inference"] == rank["state"] == "cpu" and rank["training"] == "cpu"
        assert rank["cuda_initialized"] is False


@pytest.mark.hf_training
def test_a_seed_gives_the_same_run_whether_the_tiny_model_was_built_now_or_cached(tmp_path):
    # Building the tiny model inside the training process used to consume random state: the first run
    # after a clone logged other losses than every later one (9.1295 vs 9.1230 at step 2).
    from sql_rlvr import training

    own = tmp_path / "tiny"  # built here first: the shared cache stays for the processes reading it

    def losses(name: str) -> list[float]:
        out = tmp_path / name
        result = subprocess.run([sys.executable, "train_sft.py", "--preset", "smoke", "--output_dir", str(out),
                                 "--sft_max_steps", "3", "--save_steps", "100"], cwd=ROOT, capture_output=True,
                                text=True, timeout=600, env={**os.environ, "SQL_RLVR_TINY_MODEL_DIR": str(own)})
        assert result.returncode == 0, result.stderr[-3000:]
        return [r["loss"] for r in training.read_metrics(out / "sft" / "metrics.jsonl") if "loss" in r]

    assert not own.exists()
    built_now = losses("fresh")
    assert (own / "config.json").exists()
    cached = losses("cached")
    assert len(built_now) == 3 and built_now == cached
