import itertools

import pytest

from config import PRESETS, Config, ConfigError, parse_config
from conftest import run_script


def test_defaults_are_the_real_run():
    cfg, _ = parse_config([])
    assert cfg.model_name == "unsloth/Qwen3-4B-Instruct-2507"
    assert (cfg.reward_exact, cfg.reward_invalid, cfg.reward_empty) == (5.0, -1.0, -2.0)
    assert cfg.sql_timeout_s == 2.0


def test_typed_overrides():
    cfg, _ = parse_config(["--lora_r", "8", "--sft_learning_rate", "1e-4", "--overwrite", "true",
                           "--lora_target_modules", "q_proj, v_proj", "--output_dir", "/tmp/x"])
    assert cfg.lora_r == 8 and isinstance(cfg.lora_r, int)
    assert cfg.sft_learning_rate == 1e-4
    assert cfg.overwrite is True
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.output_dir == "/tmp/x"


def test_bare_boolean_flags_mean_true():
    cfg, _ = parse_config(["--overwrite", "--resume", "false", "--use_train_others"])
    assert cfg.overwrite is True and cfg.resume is False and cfg.use_train_others is True


def test_preset_then_flags_override_it():
    cfg, _ = parse_config(["--preset", "smoke", "--grpo_max_steps", "7"])
    assert cfg.model_name == PRESETS["smoke"]["model_name"] == "tiny"
    assert cfg.spider_dir.endswith("mini_spider")
    assert cfg.grpo_max_steps == 7


@pytest.mark.parametrize("argv, message", [
    (["--lora_rank", "8"], "unknown option --lora_rank (did you mean --lora_r?)"),
    (["--lora_r", "eight"], "--lora_r"),
    (["--overwrite", "maybe"], "expected true or false"),
    (["--preset", "huge"], "invalid choice"),
    (["--backend", "tpu"], "--backend must be auto, unsloth or hf"),
    (["--num_generations", "1"], "--num_generations must be >= 2"),
    (["--num_generations", "3", "--grpo_prompts_per_step", "1", "--grpo_grad_accum", "2"], "must be divisible"),
    (["--reward_partial_max", "6"], "below --reward_exact"),
    (["--max_prompt_length", "4000"], "exceeds max_seq_length"),
])
def test_bad_overrides_are_one_line_errors(argv, message):
    with pytest.raises(ConfigError) as err:
        parse_config(argv)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_grpo_batch_is_derived_so_trl_divisibility_holds(tmp_path):
    # TRL's own GRPOConfig validation decides, for the batch fields train_grpo.py passes it, as if
    # launched on `processes` processes: every config we accept, TRL accepts, with the prompts per step asked for.
    from trl import GRPOConfig

    import train_grpo

    for processes in (1, 2, 3):
        class OnProcesses(GRPOConfig):
            @property
            def world_size(self):
                return processes

        accepted = 0
        for prompts, generations, accum in itertools.product((1, 2, 3, 4), (2, 3, 4, 8), (1, 2, 4)):
            cfg = Config(grpo_prompts_per_step=prompts, num_generations=generations, grpo_grad_accum=accum)
            try:
                cfg.validate(world_size=processes)
            except ConfigError:
                continue
            args = OnProcesses(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[],
                               **train_grpo.grpo_batch_args(cfg, processes))
            assert args.generation_batch_size == prompts * generations  # one optimizer step = the prompts asked for
            accepted += 1
        assert accepted >= 10
    # and the combination from the issue is refused in one line before TRL ever sees it
    with pytest.raises(ConfigError, match="must be divisible"):
        Config(grpo_prompts_per_step=1, num_generations=8, grpo_grad_accum=4).validate(world_size=3)


@pytest.mark.parametrize("script", ["train_sft.py", "train_grpo.py", "evaluate.py"])
def test_scripts_list_every_field_in_help(script):
    result = run_script(script, "--help")
    assert result.returncode == 0
    for name in ("--model_name", "--output_dir", "--preset", "--sql_timeout_s", "--num_generations"):
        assert name in result.stdout
    assert "default: unsloth/Qwen3-4B-Instruct-2507" in " ".join(result.stdout.split())


@pytest.mark.parametrize("script", ["train_sft.py", "train_grpo.py", "evaluate.py"])
def test_scripts_reject_unknown_flags_in_one_line(script):
    result = run_script(script, "--lerning_rate", "3")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: unknown option --lerning_rate")


def test_config_module_imports_nothing_heavy():
    # unsloth must be imported before transformers/peft/trl: parsing config and importing utils may not import them.
    code = ("import sys, config, utils; config.parse_config([]); "
            "print([m for m in ('torch', 'transformers', 'trl', 'peft', 'unsloth') if m in sys.modules])")
    result = run_script("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_unsloth_is_imported_before_the_trainer_stack(tmp_path):
    # A stand-in `unsloth` package that only records what was imported before it, then stops the run.
    stub = tmp_path / "unsloth"
    stub.mkdir()
    (stub / "__init__.py").write_text(
        "import sys, pathlib\n"
        "seen = [m for m in ('transformers', 'trl', 'peft') if m in sys.modules]\n"
        f"pathlib.Path({str(tmp_path / 'seen.txt')!r}).write_text(repr(seen))\n"
        "raise SystemExit(0)\n")
    code = ("import sys; sys.path.insert(0, %r); import config, utils; "
            "cfg, _ = config.parse_config(['--preset', 'smoke']); utils.load_model(cfg, 'unsloth')" % str(tmp_path))
    result = run_script("-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "seen.txt").read_text() == "[]"
