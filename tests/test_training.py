"""What both trainers share (sql_rlvr/training.py), on stand-ins where the real thing needs a GPU."""

import types

import pytest

from sql_rlvr import errors

pytestmark = pytest.mark.both_lanes  # the real SFTConfig / GRPOConfig of each TRL version
from sql_rlvr import training


def test_the_out_of_memory_hint_never_sends_vllm_users_to_4_bit():
    # The probe's advice must be something that runs: --load_in_4bit with vLLM is refused (vLLM 0.31 has no bitsandbytes).
    import torch

    class OutOfMemory(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, **batch):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    trainer = types.SimpleNamespace(model=OutOfMemory(), train_dataset=[{}],
                                    data_collator=lambda rows: {"input_ids": torch.zeros(len(rows), 4, dtype=torch.long)})
    with pytest.raises(errors.UserError) as err:
        training.memory_probe(trainer, 0, 8)
    message = str(err.value)
    assert "--sft_batch_size 8" in message and "\n" not in message
    assert "--load_in_4bit" not in message or "--fast_inference false" in message


def grpo_passed(tmp_path, *argv: str) -> dict:
    """What train_grpo.py passes to GRPOConfig for a config (the arguments that come from it, and the batch)."""
    import train_grpo
    from config import GRPO_TRAINER_ARGS, parse_config

    cfg, _ = parse_config(["--output_dir", str(tmp_path), *argv])
    return dict(training.trainer_args(cfg, tmp_path / "grpo", "hf", GRPO_TRAINER_ARGS), **train_grpo.grpo_batch_args(cfg, 1),
                use_vllm=False, log_completions=True)


def test_a_trainer_that_changed_what_it_was_given_is_refused_in_one_line(tmp_path):
    # What unsloth's rewritten GRPOConfig does to arguments it is not given (docs/configuration.md), done to ones we
    # gave: the check names each one, what we passed and what the trainer holds.
    from trl import GRPOConfig

    passed = grpo_passed(tmp_path)
    args = GRPOConfig(**passed)
    trainer = types.SimpleNamespace(args=args)
    training.check_trainer_args(trainer, passed)  # TRL itself keeps every value
    args.optim, args.weight_decay, args.per_device_train_batch_size = "adamw_8bit", 0.001, 16
    with pytest.raises(errors.UserError) as err:
        training.check_trainer_args(trainer, passed)
    message = str(err.value)
    assert "\n" not in message
    assert "optim (we passed 'adamw_torch_fused', the trainer holds 'adamw_8bit')" in message
    assert "weight_decay (we passed 0.0, the trainer holds 0.001)" in message
    assert "per_device_train_batch_size (we passed 8, the trainer holds 16)" in message
    with pytest.raises(errors.UserError, match="no_such_argument"):
        training.check_trainer_args(types.SimpleNamespace(args=GRPOConfig(**passed)), {**passed, "no_such_argument": 1})


def test_unsloths_top_k_off_is_allowed_and_recorded_as_the_configs_0(tmp_path):
    from trl import GRPOConfig

    from config import GRPO_TRAINER_ARGS

    passed = grpo_passed(tmp_path)
    args = GRPOConfig(**passed)
    args.top_k = -1  # unsloth's spelling of "off" when vLLM generates
    trainer = types.SimpleNamespace(args=args)
    training.check_trainer_args(trainer, passed)
    recorded = training.effective_trainer_args(trainer, GRPO_TRAINER_ARGS.values())
    assert recorded["top_k"] == 0 and recorded["optim"] == "adamw_torch_fused"  # enums as their names
    args.top_k = 5  # any other value is a change
    with pytest.raises(errors.UserError, match=r"top_k \(we passed 0, the trainer holds 5\)"):
        training.check_trainer_args(trainer, passed)
    # top_k -1 is only ever unsloth's "off": the config refuses a negative top_k, so -1 never stands for a passed value.


def test_what_transformers_rewrites_in_the_same_value_passes(tmp_path, monkeypatch):
    # Real TRL configs: transformers expands ~ in output_dir, and inside a Kubeflow TrainJob adds its own reporter.
    from trl import GRPOConfig, SFTConfig

    from config import SFT_TRAINER_ARGS, parse_config

    monkeypatch.setenv("KUBEFLOW_TRAINER_SERVER_URL", "http://127.0.0.1:1")
    monkeypatch.delenv("DISABLE_KUBEFLOW_INTEGRATION", raising=False)
    cfg, _ = parse_config(["--output_dir", "~/sql-rlvr-outputs"])
    passed = dict(training.trainer_args(cfg, "~/sql-rlvr-outputs/sft", "hf", SFT_TRAINER_ARGS), completion_only_loss=True)
    args = SFTConfig(**passed)
    assert args.output_dir != passed["output_dir"] and args.report_to == ["kubeflow"]  # both rewritten...
    training.check_trainer_args(types.SimpleNamespace(args=args), passed)  # ...and accepted
    grpo = grpo_passed(tmp_path)
    training.check_trainer_args(types.SimpleNamespace(args=GRPOConfig(**grpo)), grpo)
    args.output_dir = "/elsewhere"
    with pytest.raises(errors.UserError, match="output_dir"):
        training.check_trainer_args(types.SimpleNamespace(args=args), passed)


def test_grpo_passes_vllms_memory_fraction_only_on_hf(tmp_path):
    # unsloth sizes its engine at from_pretrained (a fraction of free memory) and ignores GRPOConfig's field.
    from trl import GRPOConfig

    import train_grpo
    from config import parse_config

    cfg, _ = parse_config(["--gpu_memory_utilization", "0.3"])
    unsloth = train_grpo.rollout_args(cfg, "unsloth")
    assert "vllm_gpu_memory_utilization" not in unsloth
    assert (unsloth["use_vllm"], unsloth["vllm_mode"]) == (True, "colocate")  # what unsloth forces anyway
    assert train_grpo.rollout_args(parse_config(["--fast_inference", "false"])[0], "unsloth")["use_vllm"] is False
    cfg, _ = parse_config(["--gpu_memory_utilization", "0.3", "--backend", "hf", "--vllm_mode", "server"])
    hf = train_grpo.rollout_args(cfg, "hf")
    assert (hf["use_vllm"], hf["vllm_mode"], hf["vllm_gpu_memory_utilization"]) == (True, "server", 0.3)
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], **hf)  # TRL takes them as given
    training.check_trainer_args(types.SimpleNamespace(args=args), hf)


def test_what_unsloth_writes_into_the_working_directory_is_ignored_by_git():
    # unsloth's GRPO saves the LoRA it hands vLLM to vllm_gen_lora[_<CUDA_VISIBLE_DEVICES>]/ (models/rl_replacements.py)
    # and its compiled trainers to unsloth_compiled_cache/, both in the working directory: the repository root.
    import subprocess

    from conftest import ROOT

    paths = ["vllm_gen_lora/adapter_model.safetensors", "vllm_gen_lora_01/adapter_config.json",
             "unsloth_compiled_cache/UnslothGRPOTrainer.py"]
    result = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    if result.returncode == 128:
        pytest.skip(f"not a git checkout: {result.stderr.strip()}")
    assert result.stdout.split() == paths
