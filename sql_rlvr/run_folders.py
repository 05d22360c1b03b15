"""Run bookkeeping: a stage's output folder (new, --overwrite, --resume and the run identity that
guards it), the finished marker, the adapter's digest, JSON-lines files, and how an entry script
turns errors and Ctrl-C into one line.

Imports config and errors only (transformers inside the callbacks that need it): evaluate.py's
--compare and --score_only use it without loading anything heavy.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from config import Config, ConfigError, run_defining_config
from sql_rlvr.errors import StageFinished, UserError

_ACTIVE_STAGE: dict[str, Any] = {}  # the stage folder being trained (prepare_output_dir), for the Ctrl-C message


def run_main(main) -> None:
    """Run an entry script's main(); user errors become one line on stderr and exit code 2."""
    try:
        main()
    except StageFinished as exc:  # exit 0: a chain `train_sft.py --resume && train_grpo.py --resume && ...` goes on
        if int(os.environ.get("RANK", "0")) == 0:
            print(exc)
    except (UserError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(interrupted_message(), file=sys.stderr)
        sys.exit(130)


def interrupted_message() -> str:
    """What is true after Ctrl-C: the checkpoint to --resume from, or that none was written yet."""
    stage = _ACTIVE_STAGE.get("path")
    if stage is None:
        return "interrupted before anything was saved; rerun the same command"
    checkpoints = complete_checkpoints(stage)
    if checkpoints:
        return (f"interrupted: {checkpoints[-1]} is kept; rerun the same command with --resume to continue from "
                f"step {checkpoints[-1].name.split('-')[-1]}")
    return (f"interrupted before the first checkpoint (one every --save_steps {_ACTIVE_STAGE['save_steps']} steps): "
            f"nothing to resume in {stage}; rerun without --resume to start again")


RUN_FILE = "sql_rlvr_run.json"  # a run's id and run-defining config: in its stage folder and in each checkpoint
PASS_RATES_FILE = "prompt_pass_rates.jsonl"  # GRPO --grpo_filter_samples: each prompt's passes, kept for --resume
_STAGE_SCRIPTS = {"sft": "train_sft.py", "grpo": "train_grpo.py"}
# A stage's inputs besides its config (prepare_output_dir's `inputs`), as its messages name them.
_INPUT_NAMES = {"sft_adapter_sha256": "another SFT adapter", "sft_traces_sha256": "another --sft_traces file"}


def complete_checkpoints(path: Path) -> list[Path]:
    """checkpoint-N folders, oldest first, whose trainer_state.json (written after the weights and the
    optimizer state) exists: a run killed while saving leaves a partial one, which is skipped."""
    return sorted((p for p in Path(path).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
                   and (p / "trainer_state.json").exists()), key=lambda p: int(p.name.split("-")[-1]))


def checkpoint_step(checkpoint: str | os.PathLike | None) -> int:
    """The step a checkpoint-N folder was saved at (0 for None: a run from the start)."""
    return int(Path(checkpoint).name.split("-")[-1]) if checkpoint else 0


def _read_json_or_empty(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _config_changes(old: dict, new: dict) -> list[str]:
    """'field: old -> new' for each run-defining field that differs (JSON round trip: lists, floats)."""
    new = json.loads(json.dumps(new, default=str))
    return [f"{k}: {old.get(k, 'unset')} -> {new.get(k, 'unset')}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def _clear_stage(path: Path, finished_marker: str) -> list[str]:
    """Delete what an earlier run left in its stage folder, and nothing else: the finished marker first
    (a half-cleared folder never looks finished), the adapter, checkpoints, metrics, curves, run file,
    GRPO's pass rates (PASS_RATES_FILE) and its completion log (completions/, TRL's parquet files)."""
    removed = []
    for name in (finished_marker, f".{finished_marker}.tmp", "adapter_model.safetensors", "adapter_config.json",
                 "metrics.jsonl", "curves.png", RUN_FILE, PASS_RATES_FILE, f"{PASS_RATES_FILE}.tmp"):
        if (path / name).is_file():
            (path / name).unlink()
            removed.append(name)
    import shutil

    for checkpoint in sorted(path.glob("checkpoint-*")):
        if checkpoint.is_dir() and checkpoint.name.split("-")[-1].isdigit():
            shutil.rmtree(checkpoint)
            removed.append(checkpoint.name)
    if (path / "completions").is_dir():
        shutil.rmtree(path / "completions")
        removed.append("completions/")
    return removed


def prepare_output_dir(path: Path, cfg: Config, finished_marker: str, inputs: dict | None = None) -> str | None:
    """How a training stage starts in `path`: returns the checkpoint to resume from, or None for a new run.

    - finished (marker present): --overwrite redoes it; --resume says it is done (StageFinished: exit 0);
      neither: error.
    - --overwrite: the earlier run's checkpoints, metrics.jsonl, marker and adapter are deleted first.
    - --resume: the newest complete checkpoint, refused (one line) unless it belongs to this folder's run
      and was trained under the same run-defining config (config.run_defining_config plus `inputs`,
      e.g. GRPO's SFT adapter hash, SFT's trace file hash). A run stopped before its first checkpoint:
      error, rerun without --resume; a stage never started: a new run.
    - checkpoints and neither flag: error (never silently restart at step 1).
    A new run gets a run id in <path>/sql_rlvr_run.json; run_identity_callback copies it into each checkpoint.
    """
    stage = path.name
    identity = {**run_defining_config(cfg, _STAGE_SCRIPTS.get(stage, "")), **(inputs or {})}
    rank0 = int(os.environ.get("RANK", "0")) == 0
    checkpoints = complete_checkpoints(path)
    marker = path / finished_marker
    _ACTIVE_STAGE.update(path=path, save_steps=cfg.save_steps)
    if marker.exists() and not cfg.overwrite:
        if cfg.resume:
            info = _read_json_or_empty(marker)
            stale = [k for k, v in (inputs or {}).items() if k in info and info[k] != v]
            if stale:  # e.g. GRPO finished from an SFT adapter that has since been retrained
                source = _INPUT_NAMES.get(stale[0], "other inputs")
                raise UserError(f"{path} is finished but was trained from {source} ({stale[0]} "
                                f"{str(info[stale[0]])[:12]}, now {str(inputs[stale[0]])[:12]}): pass --overwrite "
                                "to train it again from the current one")
            changed = _config_changes({k: v for k, v in info.get("config", {}).items() if k in identity},
                                      {k: v for k, v in identity.items() if k in info.get("config", {})})
            note = f" (this command's settings differ: {'; '.join(changed)})" if changed else ""
            raise StageFinished(f"[{stage}] {path} is already finished: {info.get('global_step', '?')} steps "
                                f"({marker.name}); nothing to resume{note}. Pass --overwrite to train it again.")
        raise UserError(f"{path} already holds a finished adapter; pass --overwrite to replace it, "
                        "or choose another --output_dir")
    if cfg.resume and checkpoints:
        return _resumable(path, checkpoints[-1], identity, rank0)
    if cfg.resume and ((path / RUN_FILE).exists() or (path / "metrics.jsonl").exists()):
        raise UserError(f"--resume: the run in {path} stopped before its first checkpoint (every --save_steps "
                        f"{cfg.save_steps} steps), so there is nothing to resume; rerun without --resume to start again")
    if checkpoints and not cfg.overwrite:
        raise UserError(f"{path} has checkpoints of an unfinished run ({checkpoints[-1].name}); pass --resume to "
                        "continue it or --overwrite to start again")
    if rank0:  # one process writes; the others only read (accelerate launch)
        removed = _clear_stage(path, finished_marker) if path.is_dir() else []
        if removed and cfg.overwrite:
            print(f"[{stage}] --overwrite: removed the earlier run's {', '.join(removed)} from {path}")
        if cfg.resume:
            print(f"[{stage}] --resume: no run to resume in {path}; starting a new one")
        path.mkdir(parents=True, exist_ok=True)
        import uuid

        run = {"run_id": uuid.uuid4().hex, "stage": stage, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "config_hash": hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16],
               "config": identity}
        (path / RUN_FILE).write_text(json.dumps(run, indent=2, default=str))
    return None


def _recorded_identity(recorded: dict, identity: dict) -> dict:
    """A checkpoint's recorded run-defining config, read as this version defines a run: a field retired
    from the identity since never blocks resuming, and a Config field added since (absent from an older
    record) counts at its default, which keeps the behaviour the run had (e.g. --value_hints 0)."""
    defaults = json.loads(json.dumps(Config().to_dict(), default=str))
    return {k: recorded[k] if k in recorded else defaults[k] for k in identity if k in recorded or k in defaults}


def _resumable(path: Path, checkpoint: Path, identity: dict, rank0: bool) -> str:
    """`checkpoint` if it belongs to the run of `path` and to this config; else a one-line refusal."""
    run = _read_json_or_empty(path / RUN_FILE)
    mark = _read_json_or_empty(checkpoint / RUN_FILE)
    if not mark.get("run_id"):
        raise UserError(f"--resume: {checkpoint} does not say which run wrote it (no {RUN_FILE}; an older "
                        "sql-rlvr?): pass --overwrite to start again")
    if run.get("run_id") and mark["run_id"] != run["run_id"]:
        raise UserError(f"--resume: {checkpoint.name} belongs to another run (run id {mark['run_id'][:8]}, not "
                        f"{run['run_id'][:8]} of {path / RUN_FILE}): pass --overwrite to start again")
    changed = _config_changes(_recorded_identity(mark.get("config", {}), identity), identity)
    if changed:
        raise UserError(f"--resume: {checkpoint.name} was trained with other settings ({'; '.join(changed)}): "
                        "rerun with the checkpoint's settings, or pass --overwrite to start again")
    state = _read_json_or_empty(checkpoint / "trainer_state.json")
    if rank0:
        if not run:  # keep the run file: the checkpoints saved from here on carry the same run id
            (path / RUN_FILE).write_text(json.dumps({k: v for k, v in mark.items() if k != "step"}, indent=2))
        print(f"[{path.name}] resuming from {checkpoint.name} (step {state.get('global_step', '?')} of "
              f"{state.get('max_steps', '?')})")
    return str(checkpoint)


def run_identity_callback(path: Path):
    """A TrainerCallback that writes the run file of stage folder `path` into each checkpoint-N.

    It writes when the trainer is about to save (on_step_end with should_save, after transformers'
    DefaultFlowCallback set it), before the checkpoint's own files: a complete checkpoint
    (trainer_state.json present) always carries its run's id.
    """
    from transformers import TrainerCallback

    class RunIdentity(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save and state.is_world_process_zero:
                run = _read_json_or_empty(path / RUN_FILE)
                checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                checkpoint.mkdir(parents=True, exist_ok=True)
                (checkpoint / RUN_FILE).write_text(json.dumps({**run, "step": state.global_step}, indent=2, default=str))

    return RunIdentity()


def save_adapter(trainer, path: Path, info: dict, check: Callable[[Path], None] | None = None) -> None:
    """Save adapter + tokenizer, then the `run_info.json` marker last: its presence means 'finished'.

    `check(path)` runs on the saved adapter before the marker is written (rank 0); raising there leaves
    the run unfinished (train_grpo.py refuses an adapter identical to the SFT one this way).
    """
    if trainer.is_world_process_zero():  # the adapter is about to change: an old marker would vouch for it
        (path / "run_info.json").unlink(missing_ok=True)
    trainer.save_model(str(path))  # collective under DeepSpeed/FSDP: every process calls it
    if not trainer.is_world_process_zero():
        return
    tokenizer = getattr(trainer, "processing_class", None)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
    if check is not None:
        check(path)
    tmp = path / ".run_info.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, default=str))
    os.replace(tmp, path / "run_info.json")


def adapter_digest(path: str | os.PathLike) -> str:
    """sha256 of a LoRA adapter's weights (adapter_model.safetensors in the folder `path`): what GRPO
    starts from, what an evaluation evaluated, and whether GRPO changed anything."""
    return hashlib.sha256((Path(path) / "adapter_model.safetensors").read_bytes()).hexdigest()


def write_jsonl(path: Path, records: list[dict]) -> None:
    """One JSON object a line, written aside and renamed into place (a half-written file never appears)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
