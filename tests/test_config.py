import dataclasses

import pytest

from config import PRESETS, SECTIONS, Config, ConfigError, fields_for, parse_config, run_defining_config
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


def test_grpo_batch_is_derived_so_trl_divisibility_holds():
    cfg = Config(grpo_prompts_per_step=4, num_generations=8, grpo_grad_accum=4)
    cfg.validate(world_size=2)
    per_device = cfg.grpo_per_device_batch(world_size=2)
    generation_batch = per_device * 2 * cfg.grpo_grad_accum  # TRL: per-device x processes x steps_per_generation
    assert generation_batch % cfg.num_generations == 0
    with pytest.raises(ConfigError):
        Config(grpo_prompts_per_step=1, num_generations=8, grpo_grad_accum=4).validate(world_size=3)


@pytest.mark.parametrize("script, own, others", [
    ("train_sft.py", ["--sft_learning_rate", "--lora_r", "--save_steps"], ["--num_generations", "--sql_timeout_s", "--adapter"]),
    ("train_grpo.py", ["--num_generations", "--reward_exact", "--sql_timeout_s"], ["--sft_learning_rate", "--lora_r", "--eval_batch_size"]),
    ("evaluate.py", ["--adapter", "--eval_batch_size", "--sql_timeout_s"], ["--sft_learning_rate", "--num_generations", "--save_steps"]),
])
def test_help_shows_the_scripts_own_flags_then_its_fields_by_section(script, own, others):
    result = run_script(script, "--help")
    assert result.returncode == 0
    text = result.stdout
    for name in ["--model_name", "--output_dir", "--preset", "--resume", *own]:
        assert f"  {name} " in text, name
    for name in others:  # another stage's fields are hidden here ...
        assert f"  {name} " not in text, name
    assert "default: unsloth/Qwen3-4B-Instruct-2507" in " ".join(text.split())
    assert text.index("shared by every script:") < text.index("--model_name")
    assert len(text.splitlines()) < 120
    if script == "evaluate.py":  # its own flags come first, before any config field
        assert text.index("--score_only") < text.index("--pred") < text.index("--preset") < text.index("--model_name")
        assert "[--score_only]" in text.splitlines()[0]


def test_every_field_stays_settable_on_every_script():
    for script in ("train_sft.py", "train_grpo.py", "evaluate.py"):
        cfg, _ = parse_config(["--num_generations", "4", "--sft_learning_rate", "0.001", "--adapter", "sft"], script=script)
        assert (cfg.num_generations, cfg.sft_learning_rate, cfg.adapter) == (4, 0.001, "sft")


def test_sections_name_real_fields_once():
    names = [name for _, _, group in SECTIONS for name in group]
    assert len(names) == len(set(names))
    assert set(names) <= {f.name for f in dataclasses.fields(Config)}
    assert "sft_learning_rate" in fields_for("train_sft.py") and "sft_learning_rate" not in fields_for("train_grpo.py")
    identity = run_defining_config(Config(), "train_sft.py")
    assert "sft_learning_rate" in identity and "num_generations" not in identity
    assert not set(identity) & {"output_dir", "resume", "overwrite", "save_steps", "logging_steps"}


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


@pytest.mark.parametrize("argv, message", [
    # No abbreviations: a prefix of a flag is a typo, answered with the flag it starts.
    (["--temp", "0.5"], "unknown option --temp (did you mean --temperature?)"),
    (["--grpo_max", "3"], "unknown option --grpo_max (did you mean --grpo_max_steps?)"),
    (["--overwr"], "unknown option --overwr (did you mean --overwrite?)"),
    # Values that cannot work.
    (["--temperature", "0"], "--temperature must be positive"),
    (["--sft_max_steps", "0"], "--sft_max_steps must be positive, or -1"),
    (["--grpo_max_steps", "-2"], "--grpo_max_steps must be positive"),
    (["--max_completion_length", "0"], "--max_completion_length must be positive"),
    (["--max_prompt_length", "0"], "--max_prompt_length must be positive"),
    (["--logging_steps", "0"], "--logging_steps must be positive"),
    (["--gpu_memory_utilization", "1.5"], "--gpu_memory_utilization must be in (0, 1]"),
    (["--gpu_memory_utilization", "0"], "--gpu_memory_utilization must be in (0, 1]"),
    (["--lora_target_modules", ""], "--lora_target_modules is empty"),
    (["--lora_target_modules", " , "], "--lora_target_modules is empty"),
    (["--lora_dropout", "1"], "--lora_dropout must be in [0, 1)"),
    (["--sft_warmup_ratio", "3"], "--sft_warmup_ratio must be in [0, 1)"),  # transformers would read 3 as 3 steps
    (["--eval_temperature", "-0.1"], "--eval_temperature must be 0 or more"),
    (["--resume", "--overwrite"], "pass one of them"),
])
def test_settings_that_cannot_work_are_one_line_errors(argv, message):
    with pytest.raises(ConfigError) as err:
        parse_config(argv)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_boundary_values_that_work_are_accepted():
    cfg, _ = parse_config(["--gpu_memory_utilization", "1", "--sft_warmup_ratio", "0.99", "--sft_max_steps", "-1",
                           "--eval_temperature", "0", "--temperature", "0.1"])
    assert (cfg.gpu_memory_utilization, cfg.sft_warmup_ratio, cfg.temperature) == (1.0, 0.99, 0.1)


def test_abbreviated_flags_fail_on_the_command_line_too():
    result = run_script("train_grpo.py", "--preset", "smoke", "--temp", "0.5")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: unknown option --temp (did you mean --temperature?)"
