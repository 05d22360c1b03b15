"""Paths and hyperparameters for sql-rlvr, in plain Python.

Every field of `Config` can be overridden on the command line of every script as `--field value`
(`--help` lists them all). `--preset smoke` swaps in a tiny CPU configuration (the shipped
mini-Spider and a tiny locally built model) that runs end to end in seconds.

This module imports nothing heavy (no torch, transformers or TRL): the entry scripts parse their
config first and only then choose a backend, so that unsloth can be imported before the trainer
stack when it is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent
MINI_SPIDER_DIR = REPO_DIR / "data" / "mini_spider"
TINY_MODEL_NAME = "tiny"  # resolved to a ~100k-parameter Qwen3 built locally (utils.ensure_tiny_model)

try:  # .env is optional; python-dotenv is in both requirement sets, but config must never crash on it
    from dotenv import load_dotenv

    load_dotenv(REPO_DIR / ".env", override=False)
except ImportError:  # pragma: no cover
    pass


class ConfigError(ValueError):
    """A bad override or an inconsistent configuration: reported as one line, never a traceback."""


def _f(default: Any, help: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    # --- paths ---
    model_name: str = _f("unsloth/Qwen3-4B-Instruct-2507", "base model: hub name or local folder ('tiny' = the local test model)")
    spider_dir: str = _f(os.environ.get("SPIDER_DIR", "data/spider"), "Spider release folder (train_spider.json, dev.json, tables.json, database/); env SPIDER_DIR")
    output_dir: str = _f("outputs", "every artifact of a run goes under this folder (sft/, grpo/, eval/)")
    overwrite: bool = _f(False, "allow replacing a finished adapter or evaluation in output_dir")
    resume: bool = _f(False, "continue training from the last checkpoint in output_dir")
    backend: str = _f("auto", "auto | unsloth | hf  (auto = unsloth when CUDA is available, else hf)")
    seed: int = _f(42, "random seed for data order, LoRA init and sampling")
    torch_threads: int = _f(0, "CPU threads for torch (0 = torch's default); 1 is fastest for tiny models on busy CPUs")

    # --- data and prompts ---
    use_train_others: bool = _f(True, "add train_others.json to the training set when present")
    schema_sample_values: int = _f(0, "distinct sample values shown per column in the schema prompt (0 = none)")
    max_train_examples: int = _f(0, "use at most this many training examples (0 = all)")
    max_eval_examples: int = _f(0, "evaluate at most this many dev examples (0 = all)")

    # --- model and LoRA ---
    max_seq_length: int = _f(2048, "longest prompt + answer the model handles (vLLM max_model_len)")
    max_prompt_length: int = _f(1536, "prompts longer than this many tokens are skipped, with a count in the log")
    load_in_4bit: bool = _f(False, "load the base model in 4-bit (unsloth backend; less memory, slightly worse)")
    gpu_memory_utilization: float = _f(0.5, "fraction of GPU memory vLLM may take (unsloth fast_inference)")
    lora_r: int = _f(32, "LoRA rank")
    lora_alpha: int = _f(64, "LoRA alpha (scaling = alpha / r)")
    lora_dropout: float = _f(0.0, "LoRA dropout")
    lora_target_modules: list = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "comma-separated module names that get LoRA adapters",
    )
    gradient_checkpointing: bool = _f(True, "recompute activations to save memory (unsloth's variant on CUDA)")

    # --- SFT ---
    sft_learning_rate: float = _f(2e-4, "SFT learning rate")
    sft_epochs: float = _f(2.0, "SFT epochs over the training set")
    sft_max_steps: int = _f(-1, "stop SFT after this many optimizer steps (-1 = use sft_epochs)")
    sft_batch_size: int = _f(8, "SFT examples per device per forward pass")
    sft_grad_accum: int = _f(2, "SFT gradient accumulation steps")
    sft_warmup_ratio: float = _f(0.03, "fraction of SFT steps spent warming up the learning rate")

    # --- GRPO ---
    grpo_learning_rate: float = _f(5e-6, "GRPO learning rate")
    grpo_max_steps: int = _f(500, "GRPO optimizer steps")
    grpo_prompts_per_step: int = _f(4, "distinct prompts per optimizer step, over all devices")
    num_generations: int = _f(8, "completions sampled per prompt (the GRPO group size, >= 2)")
    grpo_grad_accum: int = _f(4, "GRPO gradient accumulation steps; per-device batch is derived from it")
    temperature: float = _f(1.0, "sampling temperature for GRPO rollouts")
    beta: float = _f(0.0, "KL penalty to the base model (0 = none, TRL's default; >0 uses the adapter-disabled model)")
    max_completion_length: int = _f(256, "longest generated answer in tokens (GRPO and evaluation)")
    vllm_mode: str = _f("colocate", "hf backend GRPO rollouts: colocate = plain generate in-process; server = TRL's `trl vllm-serve` on its own GPUs")
    vllm_server_host: str = _f("127.0.0.1", "--vllm_mode server: host of `trl vllm-serve`")
    vllm_server_port: int = _f(8000, "--vllm_mode server: port of `trl vllm-serve`")
    grpo_skip_empty_gold: bool = _f(True, "leave out GRPO prompts whose gold result is empty: an empty answer would match them for free")

    # --- reward (also used by the scorer) ---
    reward_exact: float = _f(5.0, "reward when the predicted result equals the gold result")
    reward_invalid: float = _f(-1.0, "reward for no SQL, invalid, refused or timed-out SQL")
    reward_empty: float = _f(-2.0, "reward for an empty answer")
    reward_partial_max: float = _f(2.5, "partial credit = this x F1 of result rows (must be < reward_exact)")
    sql_timeout_s: float = _f(2.0, "time limit per SQL query, seconds (made hard by the worker processes: a query stalled well past it has its worker killed)")
    reward_workers: int = _f(2, "processes that execute predicted SQL in parallel")

    # --- evaluation ---
    eval_batch_size: int = _f(16, "prompts per generation batch in evaluation")
    eval_temperature: float = _f(0.0, "0 = greedy decoding")
    adapter: str = _f("grpo", "evaluate.py: sft | grpo | none | PATH to a PEFT adapter folder")
    export_dtype: str = _f("bfloat16", "evaluate.py --export merged: bfloat16 | float16 | float32 weights")

    # --- logging and checkpoints ---
    logging_steps: int = _f(10, "log every N optimizer steps")
    save_steps: int = _f(100, "checkpoint every N optimizer steps")
    save_total_limit: int = _f(2, "checkpoints kept in output_dir")
    num_completions_to_log: int = _f(2, "GRPO: sample completions printed with each log line")
    wandb_project: str = _f(os.environ.get("WANDB_PROJECT", "sql-rlvr"), "wandb project (wandb is on only when WANDB_API_KEY is set)")

    # ------------------------------------------------------------------
    def validate(self, world_size: int = 1) -> None:
        """Reject inconsistent settings now, in one line, rather than deep inside a trainer."""
        if self.backend not in ("auto", "unsloth", "hf"):
            raise ConfigError(f"--backend must be auto, unsloth or hf, not {self.backend!r}")
        if self.vllm_mode not in ("colocate", "server"):
            raise ConfigError(f"--vllm_mode must be colocate or server, not {self.vllm_mode!r}")
        if self.export_dtype not in ("bfloat16", "float16", "float32"):
            raise ConfigError(f"--export_dtype must be bfloat16, float16 or float32, not {self.export_dtype!r}")
        if self.num_generations < 2:
            raise ConfigError("--num_generations must be >= 2 (GRPO compares completions within a group)")
        completions = self.grpo_prompts_per_step * self.num_generations
        per_step = self.grpo_grad_accum * world_size
        if self.grpo_prompts_per_step < 1 or completions % per_step:
            raise ConfigError(
                f"grpo_prompts_per_step x num_generations = {completions} completions per step must be divisible "
                f"by grpo_grad_accum x processes = {per_step}; change one of them"
            )
        if not self.reward_partial_max < self.reward_exact:
            raise ConfigError("--reward_partial_max must be below --reward_exact, or a wrong result could outscore a right one")
        if self.max_prompt_length + self.max_completion_length > self.max_seq_length:
            raise ConfigError(
                f"max_prompt_length ({self.max_prompt_length}) + max_completion_length ({self.max_completion_length}) "
                f"exceeds max_seq_length ({self.max_seq_length})"
            )
        for name in ("sql_timeout_s", "sft_learning_rate", "grpo_learning_rate", "lora_r", "sft_batch_size",
                     "sft_grad_accum", "grpo_grad_accum", "eval_batch_size", "reward_workers", "save_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name} must be positive")

    def grpo_per_device_batch(self, world_size: int = 1) -> int:
        """Completions per device per forward pass, derived so TRL's divisibility rule always holds."""
        return self.grpo_prompts_per_step * self.num_generations // (self.grpo_grad_accum * world_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# A tiny configuration for CPU: the shipped mini-Spider and the tiny local model, seconds per stage.
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        model_name=TINY_MODEL_NAME,
        spider_dir=str(MINI_SPIDER_DIR),
        output_dir="outputs/smoke",
        backend="hf",
        torch_threads=1,  # measured: a 2-layer model gains nothing from more threads and loses 3-4x on a busy CPU
        max_seq_length=1024,
        max_prompt_length=896,
        lora_r=16,
        lora_alpha=32,
        gradient_checkpointing=False,
        sft_learning_rate=1e-2,
        sft_epochs=1.0,
        sft_max_steps=200,  # enough for the tiny model to emit valid SQL some of the time: GRPO needs varied rewards
        sft_batch_size=8,
        sft_grad_accum=1,
        sft_warmup_ratio=0.0,
        grpo_learning_rate=5e-4,
        grpo_max_steps=4,
        grpo_prompts_per_step=2,
        num_generations=4,
        grpo_grad_accum=1,
        temperature=0.7,
        max_completion_length=48,
        eval_batch_size=8,
        logging_steps=1,
        save_steps=50,
        reward_workers=2,
    ),
}


# ----------------------------------------------------------------------
# Command line: `--field value` for every field, typed from the dataclass.

def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _converter(f: dataclasses.Field):
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {
        "bool": _parse_bool,
        "int": int,
        "float": float,
        "list": lambda s: [part.strip() for part in s.split(",") if part.strip()],
    }.get(kind, str)


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage and exits; we want one line through the scripts' error handling."""

    def error(self, message: str):
        raise ConfigError(message)


def _build_parser(script: str) -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=script, description=f"sql-rlvr {script}. Every field below can be set as --field value.")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named configuration (flags still override it)")
    defaults = Config()
    for f in dataclasses.fields(Config):
        default = getattr(defaults, f.name)
        shown = ",".join(default) if isinstance(default, list) else default
        # A bare boolean flag (`--overwrite`) means true; `--overwrite false` also works.
        flag_kwargs = dict(nargs="?", const="true") if isinstance(default, bool) else {}
        parser.add_argument(f"--{f.name}", dest=f.name, default=argparse.SUPPRESS, metavar=type(default).__name__.upper(),
                            help=f"{f.metadata['help']} (default: {shown})", **flag_kwargs)
    return parser


def parse_config(argv: list[str] | None = None, script: str = "sql-rlvr",
                 extra: argparse.ArgumentParser | None = None) -> tuple[Config, argparse.Namespace]:
    """Parse `--preset` and `--field value` overrides. Raises ConfigError with a one-line reason.

    `extra` lets a script add its own flags (evaluate.py's --score_only, ...); they come back in the
    returned namespace.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(script)
    if extra is not None:
        for action in extra._actions:
            if action.option_strings and action.dest != "help":
                parser._add_action(action)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flag = unknown[0]
        names = [f"--{f.name}" for f in dataclasses.fields(Config)] + [a for act in parser._actions for a in act.option_strings]
        close = difflib.get_close_matches(flag.split("=")[0], names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else " (see --help)"
        raise ConfigError(f"unknown option {flag}{hint}")

    cfg = Config()
    values = vars(args)
    preset = values.pop("preset", None)
    if preset:
        for key, value in PRESETS[preset].items():
            setattr(cfg, key, value)
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for name in list(values):
        if name not in fields:
            continue
        raw = values.pop(name)
        try:
            setattr(cfg, name, _converter(fields[name])(raw))
        except ValueError as exc:
            raise ConfigError(f"--{name}: {exc}") from None
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cfg.validate(world_size)
    return cfg, argparse.Namespace(**values)
