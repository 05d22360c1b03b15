import dataclasses
import itertools
import os
import subprocess
import sys

import pytest

from config import PRESETS, SECTIONS, Config, ConfigError, fields_for, parse_config, run_defining_config
from conftest import ROOT, run_script


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


def test_recipe_settings_are_checked_when_the_config_loads():
    for argv in (["--grpo_loss_type", "ppo"], ["--grpo_warmup_ratio", "1.5"], ["--top_p", "0"], ["--top_k", "-1"],
                 ["--scale_rewards", "yes"], ["--grpo_loss_type", "dr_grpo"]):  # dr_grpo is defined without std scaling
        with pytest.raises(ConfigError):
            parse_config(argv)
    cfg, _ = parse_config(["--grpo_loss_type", "dr_grpo", "--scale_rewards", "none", "--fast_inference", "false"])
    assert (cfg.grpo_loss_type, cfg.scale_rewards, cfg.fast_inference) == ("dr_grpo", "none", False)


@pytest.mark.parametrize("script, own, others", [
    ("train_sft.py", ["--sft_learning_rate", "--lora_r", "--save_steps"], ["--num_generations", "--sql_timeout_s", "--adapter"]),
    ("train_grpo.py", ["--num_generations", "--reward_exact", "--sql_timeout_s", "--grpo_start", "--lora_r"], ["--sft_learning_rate", "--sft_batch_size", "--eval_batch_size"]),
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
    listed = [line for line in text.splitlines() if line.startswith("  --")]
    assert len(listed) < len(dataclasses.fields(Config))  # not every field of every stage
    if script == "evaluate.py":  # its own flags come first, before any config field
        assert text.index("--score_only") < text.index("--pred") < text.index("--preset") < text.index("--model_name")
        assert "[--score_only]" in text.splitlines()[0]


def test_every_field_stays_settable_on_every_script():
    for script in ("train_sft.py", "train_grpo.py", "evaluate.py"):
        cfg, _ = parse_config(["--num_generations", "4", "--sft_learning_rate", "0.001", "--adapter", "sft"], script=script)
        assert (cfg.num_generations, cfg.sft_learning_rate, cfg.adapter) == (4, 0.001, "sft")


def test_every_field_has_its_section():
    # A field left out of SECTIONS counts as shared: it shows under "other fields" in every script's --help
    # and becomes part of every stage's run identity (grpo_skip_empty_gold did, after two branches merged).
    placed = {name for _, _, group in SECTIONS for name in group}
    assert {f.name for f in dataclasses.fields(Config)} - placed == set()
    assert "grpo_skip_empty_gold" in fields_for("train_grpo.py")
    assert "grpo_skip_empty_gold" not in fields_for("train_sft.py") + fields_for("evaluate.py")
    assert "grpo_skip_empty_gold" not in run_defining_config(Config(), "train_sft.py")


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


@pytest.mark.parametrize("script", ["train_sft.py", "train_grpo.py", "evaluate.py"])
def test_scripts_refuse_python_before_3_11_in_one_line(script):
    # The GPU set's trl 1.15.0 needs Python 3.11: on 3.10 (Ubuntu 22.04's) each script must still parse
    # and stop at its first statement with one line, before importing anything that would fail in a traceback.
    import ast

    ast.parse((ROOT / script).read_text(), feature_version=(3, 10))
    code = ("import runpy, sys; sys.version_info = (3, 10, 12, 'final', 0); "
            f"sys.argv = [{script!r}]; runpy.run_path({script!r}, run_name='__main__')")
    result = run_script("-c", code)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: sql-rlvr needs Python 3.11 or newer") and result.stderr.strip().count("\n") == 0


def test_config_module_imports_nothing_heavy():
    # unsloth must be imported before transformers/peft/trl: parsing config and importing utils may not import them.
    code = ("import sys, config, utils; config.parse_config([]); "
            "print([m for m in ('torch', 'transformers', 'trl', 'peft', 'unsloth') if m in sys.modules])")
    result = run_script("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


UNSLOTH_MODES = {  # every entry path that loads a model, as a user runs it on the unsloth backend
    "train_sft": ["train_sft.py"],
    "train_grpo": ["train_grpo.py"],
    "evaluate": ["evaluate.py", "--adapter", "none"],
    "export_merged": ["evaluate.py", "--adapter", "{adapter}", "--export", "merged"],
}


@pytest.mark.parametrize("mode", sorted(UNSLOTH_MODES))
def test_unsloth_is_imported_before_the_trainer_stack(tmp_path, mode):
    # A stand-in `unsloth` package that only records what was imported before it, then stops the run.
    stub = tmp_path / "stub" / "unsloth"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "import sys, pathlib\n"
        "seen = [m for m in ('transformers', 'trl', 'peft') if m in sys.modules]\n"
        f"pathlib.Path({str(tmp_path / 'seen.txt')!r}).write_text(repr(seen))\n"
        "raise SystemExit(0)\n")
    out = tmp_path / "out"
    if mode == "train_grpo":  # it starts from a finished SFT run
        (out / "sft").mkdir(parents=True)
        (out / "sft" / "run_info.json").write_text("{}")
        (out / "sft" / "adapter_config.json").write_text('{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}')
        (out / "sft" / "adapter_model.safetensors").write_bytes(b"")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}')
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    args = [a.format(adapter=adapter) for a in UNSLOTH_MODES[mode]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNSLOTH_")}
    result = subprocess.run([sys.executable, *args, "--preset", "smoke", "--output_dir", str(out), "--backend", "unsloth",
                             "--fast_inference", "false"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**env, "PYTHONPATH": str(tmp_path / "stub")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "seen.txt").read_text() == "[]"


def test_score_only_loads_no_model_stack(tmp_path):
    # Scoring needs no model: whatever --backend says, neither unsloth nor the trainer stack is imported.
    from config import MINI_SPIDER_DIR

    (tmp_path / "pred.txt").write_text("SELECT count(*) FROM book\n")
    (tmp_path / "gold.txt").write_text("SELECT count(*) FROM book\tbookshop\n")
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import runpy, sys\nsys.path.insert(0, '.')\n"
        f"sys.argv = ['evaluate.py', '--backend', 'unsloth', '--score_only', '--pred', {str(tmp_path / 'pred.txt')!r}, "
        f"'--gold', {str(tmp_path / 'gold.txt')!r}, '--db_dir', {str(MINI_SPIDER_DIR / 'database')!r}]\n"
        "runpy.run_path('evaluate.py', run_name='__main__')\n"
        "print([m for m in ('torch', 'transformers', 'trl', 'peft', 'unsloth') if m in sys.modules])\n")
    result = run_script(str(probe))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


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
    (["--temperature", "nan"], "--temperature: expected a number, got 'nan'"),  # NaN passes every `<= 0` check
    (["--sql_timeout_s", "NaN"], "--sql_timeout_s: expected a number, got 'NaN'"),
])
def test_settings_that_cannot_work_are_one_line_errors(argv, message):
    with pytest.raises(ConfigError) as err:
        parse_config(argv)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("argv, message", [
    # vLLM 0.31 ships no bitsandbytes: unsloth_zoo's load_vllm raises on 4-bit with fast_inference.
    (["--load_in_4bit", "true"], "--load_in_4bit needs --fast_inference false"),
    (["--load_in_4bit", "true", "--backend", "unsloth"], "--load_in_4bit needs --fast_inference false"),
    # TRL and unsloth cap CISPO's importance weight at epsilon_high itself: 0.2 would cap every token's weight at 0.2.
    (["--grpo_loss_type", "cispo"], "must be >= 1 (TRL suggests 5), not 0.2"),
    (["--grpo_loss_type", "cispo", "--epsilon_high", "0.99"], "must be >= 1"),
    # unsloth's GRPO trainer forces colocated vLLM: a `trl vllm-serve` server would sit idle.
    (["--vllm_mode", "server"], "--vllm_mode server needs --backend hf"),
    (["--vllm_mode", "server", "--backend", "unsloth", "--fast_inference", "false"], "--vllm_mode server needs --backend hf"),
])
def test_gpu_settings_that_would_fail_or_be_ignored_are_one_line_errors(argv, message):
    with pytest.raises(ConfigError) as err:
        parse_config(argv)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_what_those_refusals_suggest_is_accepted():
    cfg, _ = parse_config(["--load_in_4bit", "true", "--fast_inference", "false"])
    assert cfg.load_in_4bit and not cfg.fast_inference
    assert parse_config(["--load_in_4bit", "true", "--backend", "hf"])[0].load_in_4bit  # hf never starts vLLM
    cfg, _ = parse_config(["--grpo_loss_type", "cispo", "--epsilon_high", "5"])
    assert (cfg.grpo_loss_type, cfg.epsilon_high) == ("cispo", 5.0)
    assert parse_config(["--grpo_loss_type", "cispo", "--epsilon_high", "1"])[0].epsilon_high == 1.0
    cfg, _ = parse_config(["--vllm_mode", "server", "--backend", "hf"])
    assert (cfg.vllm_mode, cfg.backend) == ("server", "hf")


def test_boundary_values_that_work_are_accepted():
    cfg, _ = parse_config(["--gpu_memory_utilization", "1", "--sft_warmup_ratio", "0.99", "--sft_max_steps", "-1",
                           "--eval_temperature", "0", "--temperature", "0.1"])
    assert (cfg.gpu_memory_utilization, cfg.sft_warmup_ratio, cfg.temperature) == (1.0, 0.99, 0.1)


def test_abbreviated_flags_fail_on_the_command_line_too():
    result = run_script("train_grpo.py", "--preset", "smoke", "--temp", "0.5")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: unknown option --temp (did you mean --temperature?)"


def test_help_says_what_the_smoke_preset_sets():
    result = run_script("train_sft.py", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "smoke sets model_name=tiny," in text and "sft_max_steps=200" in text and "grpo_max_steps=4" in text
