"""The unsloth backend end to end on CPU: unsloth's own CPU backend (UNSLOTH_FORCE_CPU=1), `--preset smoke
--backend unsloth --fast_inference false`, with the assertions the hf pipeline gets in test_pipeline.py.

Everything that imports unsloth runs in a subprocess: unsloth patches transformers, peft and TRL for
the whole process on import, and this test process also tests the hf backend. What this covers and
what stays GPU-only is in docs/verified.md.
"""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sql_rlvr import errors
from sql_rlvr import training
import utils
from config import GRPO_TRAINER_ARGS, MINI_SPIDER_DIR, SFT_TRAINER_ARGS
from conftest import ROOT, assert_official_files_pair, assert_trainer_args_follow_config

pytestmark = pytest.mark.unsloth

UNSLOTH = ["--preset", "smoke", "--backend", "unsloth", "--fast_inference", "false"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UNSLOTH_")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**clean, **(env or {})})


@pytest.fixture(scope="module")
def unsloth_smoke(tmp_path_factory, tiny_model_dir):
    assert importlib.util.find_spec("unsloth"), "unsloth is not installed: pip install --no-deps -r requirements-unsloth-cpu.txt"
    out = tmp_path_factory.mktemp("unsloth_smoke")
    runs, seconds = {}, {}
    # SFT 120 steps, not the preset's 200: the 100 logged losses the SFT test reads, and varied GRPO rewards (measured).
    # GRPO measures dev EX on the way and evaluation votes among sampled answers: both generate on unsloth too.
    for stage, args in (("sft", ["train_sft.py", "--sft_max_steps", "120"]), ("grpo", ["train_grpo.py", "--eval_steps", "2"]),
                        ("eval", ["evaluate.py", "--adapter", "grpo", "--num_samples", "2"]),
                        ("export", ["evaluate.py", "--adapter", "grpo", "--export", "merged"])):
        start = time.time()
        runs[stage] = run(*args, *UNSLOTH, "--output_dir", str(out))
        seconds[stage] = round(time.time() - start, 1)
        assert runs[stage].returncode == 0, f"{stage} failed:\n{runs[stage].stdout[-3000:]}\n{runs[stage].stderr[-3000:]}"
    print(f"\nunsloth CPU smoke stages, seconds: {seconds}")
    return out, runs


def test_unsloth_sft_runs_on_unsloths_cpu_backend_and_its_loss_goes_down(unsloth_smoke):
    out, runs = unsloth_smoke
    assert "no GPU found, training on CPU" in runs["sft"].stdout + runs["sft"].stderr  # unsloth's CPU backend, really
    assert "should be imported before" not in runs["sft"].stdout + runs["sft"].stderr
    info = json.loads((out / "sft" / "run_info.json").read_text())
    assert info["backend"] == "unsloth" and "[sft] backend=unsloth" in runs["sft"].stdout
    losses = [r["loss"] for r in training.read_metrics(out / "sft" / "metrics.jsonl") if "loss" in r]
    assert len(losses) >= 100
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10


def test_unsloth_grpo_trains_the_sft_adapter(unsloth_smoke):
    out, runs = unsloth_smoke
    info = json.loads((out / "grpo" / "run_info.json").read_text())
    assert info["backend"] == "unsloth" and info["global_step"] == 4
    assert info["sft_adapter_sha256"] == sha(out / "sft" / "adapter_model.safetensors")
    assert sha(out / "grpo" / "adapter_model.safetensors") != info["sft_adapter_sha256"]  # it trained something
    logs = [r for r in training.read_metrics(out / "grpo" / "metrics.jsonl") if "reward" in r]
    assert len(logs) == 4 and any(row["reward_std"] > 0 for row in logs)
    assert "[grpo] backend=unsloth" in runs["grpo"].stdout and "[grpo] step 1/4  reward " in runs["grpo"].stdout


def test_unsloth_grpo_from_the_base_model_trains_a_new_lora(unsloth_smoke, tmp_path):
    # --grpo_start base on unsloth: its own new LoRA (get_peft_model), no sft/ folder. The base is the smoke GRPO
    # adapter merged (the fixture's export), standing in for an instruct model that writes SQL: the tiny model
    # alone earns the same reward for every answer, so GRPO from it could not train. The pass-rate filter samples
    # the base model through the new LoRA (lora_B zero) on unsloth's generation path.
    from safetensors.torch import load_file

    out, _ = unsloth_smoke
    base = out / "merged" / "grpo"
    result = run("train_grpo.py", *UNSLOTH, "--model_name", str(base), "--grpo_start", "base", "--output_dir",
                 str(tmp_path), "--grpo_filter_samples", "2", "--num_completions_to_log", "0")
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert not (tmp_path / "sft").exists()
    info = json.loads((tmp_path / "grpo" / "run_info.json").read_text())
    assert info["backend"] == "unsloth" and info["grpo_start"] == "base" and info["global_step"] == 4
    assert "sft_adapter_sha256" not in info and info["pass_rate_filter"]["prompts_sampled"] == 48
    assert "[grpo] backend=unsloth starting from the base model, a new LoRA (r=16, alpha=32)" in result.stdout
    assert utils.read_adapter_config(tmp_path / "grpo")["r"] == 16
    weights = load_file(str(tmp_path / "grpo" / "adapter_model.safetensors"))
    assert any(bool(t.any()) for name, t in weights.items() if "lora_B" in name)  # trained from lora_B = 0


def test_unsloth_trainers_get_the_configs_settings(unsloth_smoke):
    # unsloth's rewritten configs have their own defaults (adamw_8bit, weight decay, warm-up, ...); on CPU it
    # rewrites optim: what the built trainers hold must still be the config.
    out, _ = unsloth_smoke
    assert_trainer_args_follow_config(json.loads((out / "sft" / "run_info.json").read_text()), SFT_TRAINER_ARGS)
    assert_trainer_args_follow_config(json.loads((out / "grpo" / "run_info.json").read_text()), GRPO_TRAINER_ARGS)


def test_unsloth_evaluation_writes_paired_official_files(unsloth_smoke):
    out, runs = unsloth_smoke
    ev = out / "eval" / "grpo"
    dev = json.loads((MINI_SPIDER_DIR / "dev.json").read_text())
    preds = assert_official_files_pair(ev, dev)
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["backend"] == "unsloth" and "[eval] backend=unsloth" in runs["eval"].stdout
    assert metrics["adapter_sha256"] == sha(out / "grpo" / "adapter_model.safetensors")
    records = [json.loads(line) for line in (ev / "predictions.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in records] == preds
    assert sum(bool(r["answer"].strip()) for r in records) > 0  # the adapter generated something


def test_unsloth_dev_ex_and_voting_run_on_the_unsloth_backend(unsloth_smoke):
    out, runs = unsloth_smoke
    logged = {r["step"]: r["eval/ex"] for r in training.read_metrics(out / "grpo" / "metrics.jsonl") if "eval/ex" in r}
    assert sorted(logged) == [2, 4] and all(0.0 <= ex <= 1.0 for ex in logged.values())
    assert "[grpo] step 2: eval/ex=" in runs["grpo"].stdout
    ev = out / "eval" / "grpo"
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["num_samples"] == 2 and {"ex_greedy", "ex_vote", "pass_at_k"} <= set(metrics)
    rows = [json.loads(line) for line in (ev / "candidates.jsonl").read_text().splitlines()]
    assert rows and all(len(r["candidates"]) == 3 for r in rows)  # greedy + 2 sampled, per question
    assert any(len({c["answer"] for c in r["candidates"]}) > 1 for r in rows)  # sampled, not greedy again
    assert (ev / "pred_greedy.txt").read_text().splitlines() == [r["candidates"][0]["sql"] for r in rows]


def test_unsloth_merged_export_is_the_adapter_merged_into_16_bit_weights(unsloth_smoke):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, runs = unsloth_smoke
    merged_dir = out / "merged" / "grpo"
    assert "[export] backend=unsloth" in runs["export"].stdout
    assert not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype="auto")  # plain transformers, no peft
    assert merged.dtype == torch.bfloat16  # --export_dtype's default, honoured
    base = AutoModelForCausalLM.from_pretrained(utils.resolve_model_name("tiny"), dtype=torch.float32)
    base_weights = {k: v.clone() for k, v in base.state_dict().items()}
    expected = PeftModel.from_pretrained(base, str(out / "grpo")).merge_and_unload().state_dict()
    got = merged.state_dict()
    assert set(got) == set(expected)
    for name, value in got.items():  # the float32 merge, rounded once to bfloat16 (one ulp of slack)
        torch.testing.assert_close(value.float(), expected[name].to(torch.bfloat16).float(), rtol=2 ** -7, atol=1e-6)
    changed = [n for n in got if not torch.equal(got[n], base_weights[n].to(torch.bfloat16))]
    assert any("q_proj" in n for n in changed)  # the adapter is in it, not just the base
    info = json.loads((merged_dir / "export_info.json").read_text())
    assert info["checked_prompts"] == 4 and len(info["merged_answers"]) == 4


def test_unsloth_export_refuses_float32_in_one_line_and_keeps_the_export(unsloth_smoke):
    out, _ = unsloth_smoke
    weights = out / "merged" / "grpo" / "model.safetensors"
    before = sha(weights)
    result = run("evaluate.py", *UNSLOTH, "--output_dir", str(out), "--adapter", "grpo", "--export", "merged",
                 "--export_dtype", "float32", "--overwrite")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "float32" in result.stderr
    assert sha(weights) == before


LABELS_AND_PROBE = """
import json, sys
from pathlib import Path
import train_sft
from sql_rlvr import training
from config import parse_config

cfg, _ = parse_config(["--preset", "smoke", "--backend", "unsloth", "--fast_inference", "false", "--output_dir", sys.argv[1],
                       "--gradient_checkpointing", "true"])
trainer, info = train_sft.build_trainer(cfg, Path(sys.argv[1]) / "sft")
tokenizer = trainer.processing_class
learned = []
for row in [trainer.train_dataset[i] for i in range(5)]:
    labels = trainer.data_collator([row])["labels"][0].tolist()
    learned.append(tokenizer.decode([t for t in labels if t != -100]))
from unsloth import FastLanguageModel
FastLanguageModel.for_inference(trainer.model)  # where unsloth's GPU SFTTrainer leaves the model after __init__
training.memory_probe(trainer, info["longest_example"], 2, info["backend"])
model = trainer.model
print(json.dumps({"learned": learned, "unsloth_trainer": bool(getattr(type(trainer), "_unsloth_cpu", False)),
                  "training": model.training, "use_cache": model.config.use_cache,
                  "checkpointing": model.is_gradient_checkpointing}))
"""


def test_unsloth_sft_loss_covers_exactly_the_sql_and_the_end_of_turn_token(tmp_path, spider):
    # The labels as unsloth's SFTTrainer (on CPU: its subclass of TRL's) prepares them, decoded in the subprocess.
    result = run("-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); exec({LABELS_AND_PROBE!r})", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["unsloth_trainer"]  # the trainer class unsloth installed, not TRL's own
    golds = {ex["query"] for ex in spider.examples("train")}
    for learned in seen["learned"]:
        assert learned.endswith("<|im_end|>\n")  # the model learns to stop
        assert learned[: -len("<|im_end|>\n")] in golds  # and nothing of the prompt
    # The memory probe ran in training mode (KV cache off, checkpointing on), not where for_inference left it.
    assert seen["training"] and seen["use_cache"] is False and seen["checkpointing"]


DEV_EX_MODE = """
import json, sys
from pathlib import Path
import utils
from config import parse_config
from transformers import TrainerControl, TrainerState

cfg, _ = parse_config(["--preset", "smoke", "--backend", "unsloth", "--fast_inference", "false", "--output_dir", sys.argv[1],
                       "--gradient_checkpointing", "true", "--eval_steps", "1", "--eval_subset_size", "2",
                       "--max_completion_length", "8"])
model, tokenizer = utils.load_model(cfg, "unsloth", adapter=None, trainable=True)
from unsloth import FastLanguageModel
from sql_rlvr.dev_check import DevEXCallback  # a TrainerCallback: after unsloth
FastLanguageModel.for_training(model)  # the mode the trainer keeps the model in between steps
tokenizer.padding_side = "right"
mode = lambda: {"training": model.training, "use_cache": model.config.use_cache,
                "checkpointing": model.is_gradient_checkpointing, "padding_side": tokenizer.padding_side}
before = mode()
Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
callback = DevEXCallback(cfg, utils.open_dataset(cfg), "unsloth", tokenizer, Path(sys.argv[1]))
state = TrainerState(global_step=1)
callback.on_step_end(None, state, TrainerControl(), model=model)
logs = [{"reward": 0.0}]  # the step's log line, as the trainer hands it to each callback
callback.on_log(None, state, TrainerControl(), logs=logs[0])
print(json.dumps({"before": before, "after": mode(), "eval_ex": [log["eval/ex"] for log in logs if "eval/ex" in log]}))
"""


def test_unsloth_dev_ex_during_grpo_leaves_the_model_in_training_mode(tmp_path):
    # --eval_steps on unsloth without vLLM generates through for_inference (KV cache on; on CUDA also gradient
    # checkpointing off): the steps after it must train as before, not in generation mode.
    result = run("-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); exec({DEV_EX_MODE!r})", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(seen["eval_ex"]) == 1 and 0.0 <= seen["eval_ex"][0] <= 1.0  # it measured dev EX
    assert seen["before"] == {"training": True, "use_cache": False, "checkpointing": True, "padding_side": "right"}
    assert seen["after"] == seen["before"]


def test_a_real_unsloth_rewrite_of_a_trainer_argument_stops_the_run_in_one_line(tmp_path):
    # unsloth's CPU backend turns optim adamw_torch into adamw_torch_fused behind the config's back: the check
    # after the trainer is built catches it (on a GPU, any rewrite of unsloth's rewritten trainers alike).
    result = run("train_sft.py", *UNSLOTH, "--output_dir", str(tmp_path), "--optim", "adamw_torch")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: SFTTrainer changed arguments it was given: optim (we passed 'adamw_torch', "
                           "the trainer holds 'adamw_torch_fused')."), last
    assert not (tmp_path / "sft" / "run_info.json").exists() and not list((tmp_path / "sft").glob("checkpoint-*"))


def test_unsloth_refuses_unsloth_allow_cpu_in_one_line(tmp_path):
    result = run("train_sft.py", *UNSLOTH, "--output_dir", str(tmp_path), env={"UNSLOTH_ALLOW_CPU": "1"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: UNSLOTH_ALLOW_CPU is set") and result.stderr.strip().count("\n") == 0
    assert not (tmp_path / "sft" / "run_info.json").exists()


def test_backend_choice_without_cuda(monkeypatch):
    # unsloth is installed here (CI installs its CPU backend) and there is no GPU: auto stays on hf, an explicit
    # --backend unsloth takes unsloth's CPU backend without vLLM, and asks for --fast_inference false with it.
    from config import Config

    assert importlib.util.find_spec("unsloth") and not utils.cuda_available()
    monkeypatch.delenv("UNSLOTH_ALLOW_CPU", raising=False)
    assert utils.pick_backend(Config(backend="auto")) == "hf"
    assert utils.pick_backend(Config(backend="auto", fast_inference=False)) == "hf"
    assert utils.pick_backend(Config(backend="unsloth", fast_inference=False)) == "unsloth"
    with pytest.raises(errors.UserError, match="needs a CUDA GPU"):
        utils.pick_backend(Config(backend="unsloth"))
    assert "unsloth" not in sys.modules  # choosing imports nothing: unsloth comes first, in load_model


def test_unsloth_refuses_an_adapter_missing_a_lora_weight(unsloth_smoke, tmp_path):
    # The unsloth loader set the saved weights into a fresh LoRA and checked only unexpected keys: a LoRA
    # weight missing from the file left that layer at its initial value without a word.
    from safetensors.torch import load_file, save_file

    out, _ = unsloth_smoke
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (adapter / name).write_bytes((out / "sft" / name).read_bytes())
    weights = load_file(adapter / "adapter_model.safetensors")
    del weights[sorted(k for k in weights if "lora_B" in k)[0]]
    save_file(weights, adapter / "adapter_model.safetensors")
    result = run("evaluate.py", *UNSLOTH, "--output_dir", str(tmp_path), "--adapter", str(adapter))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors_said = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # (loading bars above it)
    assert len(errors_said) == 1 and "1 LoRA weights missing from the file" in errors_said[0]
