"""What the SFT and GRPO trainers share around TRL: the trainer arguments both pass, logging (metrics.jsonl,
one readable line per log step, curves.png, the end-of-stage summary), the memory probe, and wandb.

Imports config, errors, execution_reward (for the reward's outcome names) and utils; transformers and torch inside
the functions. Nothing here is specific to one stage: that stays in train_sft.py / train_grpo.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

from config import Config
from sql_rlvr.errors import UserError
from sql_rlvr.execution_reward import OUTCOMES
from utils import cuda_available

def world_size() -> int:
    """Processes in this run (accelerate/torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def bf16_supported() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def trainer_args(cfg: Config, out: Path, backend: str, fields: dict[str, str]) -> dict:
    """The arguments of SFTConfig or GRPOConfig that come from the config: `fields` (config.SFT_TRAINER_ARGS
    or GRPO_TRAINER_ARGS, config field -> trainer argument) plus what both stages set alike. Every
    setting that changes the run is passed: unsloth's rewritten configs have other defaults (config.py)."""
    return dict(
        {argument: getattr(cfg, name) for name, argument in fields.items()},
        output_dir=str(out),
        bf16=bf16_supported(),
        use_cpu=not cuda_available(),  # with several processes and no GPU, accelerate then uses gloo (MULTI_CPU)
        gradient_checkpointing=cfg.gradient_checkpointing and backend == "hf",  # unsloth applies its own
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=report_to(cfg),
    )


def metrics_callback(path: Path, resume: bool = False):
    """A TrainerCallback writing each log line (loss, lr, rewards, outcome fractions) to metrics.jsonl."""
    from transformers import TrainerCallback

    class MetricsJsonl(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                path.parent.mkdir(parents=True, exist_ok=True)
                if not resume:
                    path.write_text("")
                else:  # the steps after the checkpoint are trained again: drop their old lines
                    kept = [r for r in read_metrics(path) if r.get("step", 0) <= state.global_step]
                    tmp = path.with_name(path.name + ".tmp")
                    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
                    os.replace(tmp, path)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                with open(path, "a") as fh:
                    fh.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    return MetricsJsonl()


def step_line(stage: str, step: int, max_steps: int, logs: dict, keys: tuple[str, ...], mix: bool = False) -> str:
    """One log step as a person reads it: `[stage] step N/M` then each of `keys` by its metrics.jsonl name
    with 3 significant digits, in columns that line up from one line to the next; with `mix`, the outcome
    mix of the answers (GRPO) as percentages, and the diagnostic fractions when they are not zero."""
    cells = [f"[{stage}] step {step:>{len(str(max_steps))}}/{max_steps}"]
    cells += [f"{key} {logs[key]:<9.3g}" for key in keys if isinstance(logs.get(key), (int, float))]
    outcomes = {key.split("/", 1)[1]: value for key, value in logs.items()
                if key.startswith("outcome/") and isinstance(value, (int, float))}
    if mix and outcomes:
        shown = [f"{name} {100 * outcomes[name]:3.0f}%" for name in OUTCOMES if name in outcomes]
        shown += [f"{name} {100 * value:.0f}%" for name, value in outcomes.items() if name not in OUTCOMES and value]
        cells.append("answers: " + "  ".join(shown))
    return "  ".join(cells).rstrip()


def readable_progress(trainer, stage: str, keys: tuple[str, ...] = (), *, mix: bool = False, every_log: bool = False,
                      after: Callable[[dict], list[str]] | None = None) -> None:
    """Instead of transformers printing each whole log dict (200 lines in the smoke SFT): one step_line
    every few log steps (every log with `every_log`), followed by the lines `after(logs)` returns (GRPO's
    sample answers). On a terminal a progress bar runs below the lines; written to a file there is no bar,
    so every line starts a line of its own. metrics.jsonl still gets every log."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    terminal = sys.stderr.isatty()

    class CompactProgress(ProgressCallback if terminal else TrainerCallback):
        def say(self, line: str) -> None:
            if getattr(self, "training_bar", None) is not None:
                self.training_bar.write(line)  # above the bar
            else:
                print(line, flush=True)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not keys or not state.is_world_process_zero or not logs or "train_runtime" in logs:
                return
            if not any(key in logs for key in keys):
                return
            every = state.logging_steps * max(1, -(-state.max_steps // (state.logging_steps * 20)))  # ~20 lines a run
            step = state.global_step
            if not every_log and step % every and step > state.logging_steps and step != state.max_steps:
                return
            self.say(step_line(stage, step, state.max_steps, logs, keys, mix))
            for line in after(logs) if after else []:
                self.say(line)

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(CompactProgress())


SUMMARY_KEYS = {"sft": {"loss": "loss", "mean_token_accuracy": "token accuracy"}, "grpo": {"reward": "reward mean"}}


def training_summary(stage: str, path: Path, steps: int, seconds: float, extra: tuple[str, ...] = (),
                     resumed_at: int = 0) -> str:
    """What shows a stage worked, from its metrics.jsonl: the steps this run trained (after `resumed_at`,
    the checkpoint it resumed from), first -> last of its key numbers (SFT loss and token accuracy; GRPO
    reward mean and the outcome mix), and the files written."""
    rows = [r for r in read_metrics(path / "metrics.jsonl") if "train_runtime" not in r]
    ran = (f"{steps - resumed_at} steps ({resumed_at + 1} to {steps}, resumed from checkpoint-{resumed_at})"
           if resumed_at else f"{steps} steps")
    parts = [f"{ran} in {seconds:.0f} s"]
    for key, label in SUMMARY_KEYS.get(stage, {}).items():
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if points:
            (s0, v0), (s1, v1) = points[0], points[-1]
            parts.append(f"{label} {v0:.4g} (step {s0}) -> {v1:.4g} (step {s1})")
    mix = {}
    for outcome in OUTCOMES:
        values = [v for r in rows for k, v in r.items() if k.endswith(f"outcome/{outcome}") and isinstance(v, (int, float))]
        if values:
            mix[outcome] = sum(values) / len(values)
    if mix:
        parts.append("answers over the run: " + ", ".join(f"{o} {f:.0%}" for o, f in mix.items()))
    parts.extend(extra)
    written = [p.name for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
    return f"[{stage}] done: " + "; ".join(parts) + f"\n[{stage}] wrote {path}: {', '.join(written)}"


def read_metrics(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


PLOTS = {
    "sft": [("loss", ["loss"]), ("learning rate", ["learning_rate"])],
    "grpo": [("reward", ["reward", "reward_std"]),
             ("outcomes", [f"outcome/{o}" for o in OUTCOMES] + ["outcome/parse_fail", "outcome/timeout"]),
             ("completion length", ["completions/mean_length"]), ("KL", ["kl"]),
             ("dev EX (greedy, --eval_steps)", ["eval/ex"]),
             ("tool calls (--max_tool_calls)", ["tool_calls_mean", "answered_after_call"])],
}


def plot_metrics(metrics_path: Path, png_path: Path, stage: str) -> None:
    """Training curves as a PNG (headless matplotlib); panels without data are left out. Rank 0 only."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    rows = [r for r in read_metrics(metrics_path) if "train_runtime" not in r]
    panels = [(title, [k for k in keys if any(k in r for r in rows)]) for title, keys in PLOTS[stage]]
    panels = [(title, keys) for title, keys in panels if keys]
    if not panels:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), label=key.split("/")[-1], marker="." if len(points) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        if len(keys) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"{stage} {metrics_path.parent}")
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)


def memory_probe(trainer, index: int, batch_size: int, backend: str = "hf") -> None:
    """One forward and backward pass on a full batch of one (the longest) training example; gradients
    are cleared after, so training is unchanged. Raises a clear error when it does not fit.

    It runs in the mode `train()` will use: unsloth's SFTTrainer init ends in `for_inference`, which
    turns gradient checkpointing off; `for_training` turns it back on, as `train()` itself does."""
    import torch

    model = trainer.model
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_training(model)
    batch = trainer.data_collator([trainer.train_dataset[index]] * batch_size)
    device = next(model.parameters()).device
    # Only the model's own inputs: a collator may add bookkeeping keys the forward does not take.
    inputs = ("input_ids", "attention_mask", "position_ids", "labels")
    batch = {k: v.to(device) for k, v in batch.items() if k in inputs}
    try:
        model.train()
        loss = model(**batch).loss
        loss.backward()
    except torch.cuda.OutOfMemoryError:
        raise UserError(f"the longest training example does not fit in GPU memory at --sft_batch_size {batch_size}: "
                        "lower it (and raise --sft_grad_accum), or --max_seq_length (--load_in_4bit saves memory too, but only "
                        "with --fast_inference false: vLLM has no 4-bit support)") from None
    finally:
        model.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# Rewrites that keep the value, as (argument, what we pass, what the trainer holds). unsloth writes TRL's "top_k
# off" (0) as vLLM's (-1) whenever vLLM generates (unsloth/models/rl_replacements.py grpo_config_fix_vllm_top_k,
# and the vLLM setter in models/rl.py). Measured on CPU (smoke runs on both backends, and SFTConfig/GRPOConfig
# built from the real run's config): TRL and transformers keep every other argument as we pass it, except the
# two cases of _same_value.
SAME_VALUE = (("top_k", 0, -1),)  # a tuple: compared by ==, values may be lists


def _held(value):
    return getattr(value, "value", value)  # enums (optim, lr_scheduler_type) compare and record as their names


def _same_value(name: str, ours, held) -> bool:
    if held == ours or (name, ours, held) in SAME_VALUE:
        return True
    if name == "output_dir" and isinstance(ours, str):
        # transformers expands ~ ("Expand ~ in paths so os.makedirs works correctly", TrainingArguments.__post_init__):
        # the same folder.
        return held == os.path.expanduser(ours)
    if name == "report_to" and isinstance(ours, list):
        # transformers adds its Kubeflow reporter inside a Kubeflow TrainJob (KUBEFLOW_TRAINER_SERVER_URL set,
        # "Auto-enable Kubeflow integration", same place): one more place the logs go, the run computes the same.
        return held == [*ours, "kubeflow"]
    return False


def check_trainer_args(trainer, passed: dict) -> None:
    """Stop, in one line, when the built trainer holds another value than one we passed to SFTConfig/GRPOConfig:
    unsloth's rewritten configs and trainers (and any future library change) must not change a run silently."""
    missing = object()
    changed = []
    for name, ours in passed.items():
        held = _held(getattr(trainer.args, name, missing))
        if held is missing:
            changed.append(f"{name} (we passed {ours!r}, the trainer has no such argument)")
        elif not _same_value(name, ours, held):
            changed.append(f"{name} (we passed {ours!r}, the trainer holds {held!r})")
    if changed:
        raise UserError(f"{type(trainer).__name__} changed arguments it was given: " + "; ".join(changed)
                        + ". Stopped before training: set them so that it keeps them, or report this as a bug")


def effective_trainer_args(trainer, names: Iterable[str]) -> dict:
    """The built trainer's own arguments (after unsloth and TRL have had their say), for run_info.json; an allowed
    other spelling of a value (SAME_VALUE: unsloth's top_k -1) is recorded as the config's (top_k 0)."""
    values = {}
    for name in names:
        value = _held(getattr(trainer.args, name, None))
        values[name] = next((ours for arg, ours, held in SAME_VALUE if arg == name and held == value), value)
    return values


def report_to(cfg: Config) -> list[str]:
    """wandb only when a key is set (in the environment or .env); otherwise no reporting at all."""
    if not os.environ.get("WANDB_API_KEY"):
        return []
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        print("warning: WANDB_API_KEY is set but wandb is not installed (pip install wandb); not logging to wandb",
              file=sys.stderr)
        return []
    os.environ.setdefault("WANDB_PROJECT", cfg.wandb_project)
    return ["wandb"]
