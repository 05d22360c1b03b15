"""A stage's life in its folder: --overwrite, Ctrl-C, --resume (only into its own run), and the
docs/runs.md's rerun chain `train_sft.py --resume && train_grpo.py --resume && evaluate.py --resume`."""

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sql_rlvr import errors
from sql_rlvr import run_folders
from conftest import ROOT, default_sigint, run_script

SFT = ["train_sft.py", "--preset", "smoke"]


def folder_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))
            if p.is_file()}


def interrupt_when(args: list[str], ready, timeout: float = 300) -> subprocess.CompletedProcess:
    """Start `python args`, press Ctrl-C (SIGINT) as soon as ready() holds, return the finished process."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def logged_steps(stage: Path) -> list[int]:
    """Steps with a loss line in metrics.jsonl; a line being written while we poll is not counted yet."""
    path = stage / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    rows = [json.loads(line) for line in lines if line.endswith("\n") and line.strip()]
    return [r["step"] for r in rows if "loss" in r]


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.mark.hf_training
def test_overwrite_clears_the_old_run_and_resume_only_continues_its_own(tmp_path):
    # The scenario, scaled down: an old finished run (checkpoints 3 and 6), then an --overwrite
    # run with other settings stopped after its checkpoint-2. Before the fix the folder held both runs'
    # checkpoints and --resume continued the old run's checkpoint-6 under the new config.
    out = tmp_path / "sft"
    (tmp_path / "keep.txt").write_text("not sft's")
    old = run_script(*SFT, "--output_dir", str(tmp_path), "--sft_max_steps", "6", "--save_steps", "3")
    assert old.returncode == 0, old.stderr[-3000:]
    old_run = json.loads((out / run_folders.RUN_FILE).read_text())["run_id"]
    assert json.loads((out / "checkpoint-6" / run_folders.RUN_FILE).read_text())["run_id"] == old_run
    old_checkpoint = tmp_path / "old-checkpoint-6"
    shutil.copytree(out / "checkpoint-6", old_checkpoint)

    new_args = [*SFT, "--output_dir", str(tmp_path), "--sft_max_steps", "12", "--save_steps", "2"]

    def past_a_checkpoint() -> bool:  # a checkpoint exists and steps after it were logged
        done = run_folders.complete_checkpoints(out)
        return bool(done) and max(logged_steps(out), default=0) > int(done[-1].name.split("-")[1])

    stopped = interrupt_when([*new_args, "--overwrite"], past_a_checkpoint)
    assert stopped.returncode == 130
    assert "--overwrite: removed the earlier run's run_info.json" in stopped.stdout
    kept = run_folders.complete_checkpoints(out)[-1]
    assert f"interrupted: {kept} is kept; rerun the same command with --resume" in stopped.stderr

    # At overwrite time the old run's marker, adapter, checkpoints and metrics went; nothing outside sft/.
    new_run = json.loads((out / run_folders.RUN_FILE).read_text())["run_id"]
    assert new_run != old_run
    assert not (out / "run_info.json").exists() and not (out / "adapter_model.safetensors").exists()
    assert not (out / "checkpoint-3").exists()
    for checkpoint in out.glob("checkpoint-*"):
        assert json.loads((checkpoint / run_folders.RUN_FILE).read_text())["run_id"] == new_run
    assert logged_steps(out) == list(range(1, len(logged_steps(out)) + 1))  # the new run's lines only
    assert (tmp_path / "keep.txt").read_text() == "not sft's"

    # A checkpoint of another run (the old one, as a killed --overwrite used to leave it) is refused.
    shutil.copytree(old_checkpoint, out / "checkpoint-60")
    one_line_error(run_script(*new_args, "--resume"), "--resume: checkpoint-60 belongs to another run",
                   "--overwrite")
    shutil.rmtree(out / "checkpoint-60")
    # So is this run's checkpoint under settings that change the run.
    one_line_error(run_script(*new_args, "--resume", "--sft_learning_rate", "0.02"),
                   f"--resume: {kept.name} was trained with other settings (sft_learning_rate: 0.01 -> 0.02)")

    resumed = run_script(*new_args, "--resume", "--logging_steps", "1")  # logging settings may change
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    step = int(kept.name.split("-")[1])
    assert f"[sft] resuming from {kept.name} (step {step} of 12)" in resumed.stdout
    assert logged_steps(out) == list(range(1, 13))  # every step once: the lines past the checkpoint were dropped
    assert json.loads((out / "run_info.json").read_text())["global_step"] == 12
    # the summary counts what this run trained, from the checkpoint on
    assert f"[sft] done: {12 - step} steps ({step + 1} to 12, resumed from checkpoint-{step})" in resumed.stdout
    assert "loss" in resumed.stdout


@pytest.mark.hf_training
def test_interrupted_before_the_first_checkpoint_says_so_and_a_fresh_run_works(tmp_path):
    out = tmp_path / "sft"
    args = [*SFT, "--output_dir", str(tmp_path), "--save_steps", "100"]
    stopped = interrupt_when(args, lambda: len(logged_steps(out)) >= 2)
    assert stopped.returncode == 130
    assert "interrupted before the first checkpoint" in stopped.stderr
    assert "rerun without --resume" in stopped.stderr and "Traceback" not in stopped.stderr
    assert (out / "metrics.jsonl").exists() and not run_folders.complete_checkpoints(out)

    one_line_error(run_script(*args, "--resume"), "stopped before its first checkpoint", "rerun without --resume")

    fresh = run_script(*args, "--sft_max_steps", "3")  # leftover metrics.jsonl and run file do not block it
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert logged_steps(out) == [1, 2, 3]


@pytest.mark.hf_training
def test_the_rerun_chain_goes_through_finished_stages(tmp_path):
    out = tmp_path
    sft = run_script(*SFT, "--output_dir", str(out), "--sft_max_steps", "4", "--save_steps", "2")
    assert sft.returncode == 0, sft.stderr[-3000:]
    assert "[sft] done: 4 steps" in sft.stdout and len(sft.stdout.splitlines()) < 20  # no dict per log step
    # A finished GRPO stage, standing in for a real one (a 4-step SFT adapter cannot earn varied rewards).
    shutil.copytree(out / "sft", out / "grpo", ignore=shutil.ignore_patterns("checkpoint-*"))
    before = {stage: folder_digest(out / stage) for stage in ("sft", "grpo")}

    flags = f"--preset smoke --output_dir {out} --resume"
    chain = (f"{sys.executable} train_sft.py {flags} && {sys.executable} train_grpo.py {flags} && "
             f"{sys.executable} evaluate.py {flags} --adapter grpo")
    first = subprocess.run(["bash", "-c", chain], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"[sft] {out / 'sft'} is already finished: 4 steps (run_info.json); nothing to resume" in first.stdout
    assert f"[grpo] {out / 'grpo'} is already finished" in first.stdout
    assert (out / "eval" / "grpo" / "metrics.json").exists()  # nothing to resume there: it evaluated

    again = subprocess.run(["bash", "-c", chain], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "[eval] " in again.stdout and "already holds an evaluation" in again.stdout
    assert {stage: folder_digest(out / stage) for stage in ("sft", "grpo")} == before  # nothing touched

    redo = run_script(*SFT, "--output_dir", str(out), "--sft_max_steps", "4", "--save_steps", "2")
    one_line_error(redo, "already holds a finished adapter; pass --overwrite")


def test_overwrite_also_clears_the_earlier_grpo_runs_completion_logs(tmp_path):
    # TRL's completion log (grpo/completions/completions_NNNNN.parquet) is part of a run: a shorter new run
    # would otherwise leave the old run's later steps beside its own.
    from config import Config

    out = tmp_path / "grpo"
    (out / "completions").mkdir(parents=True)
    for step in (1, 40):
        (out / "completions" / f"completions_{step:05d}.parquet").write_bytes(b"old run")
    (out / "run_info.json").write_text("{}")
    (tmp_path / "keep.txt").write_text("not grpo's")
    assert run_folders.prepare_output_dir(out, Config(output_dir=str(tmp_path), overwrite=True), "run_info.json") is None
    assert not (out / "completions").exists() and not (out / "run_info.json").exists()
    assert (tmp_path / "keep.txt").read_text() == "not grpo's"


def test_resume_never_passes_off_an_evaluation_of_another_adapter_as_done(tmp_path):
    # After `train_grpo.py --overwrite`, the rerun chain's `evaluate.py --resume` must not call the old
    # adapter's evaluation finished: its numbers are not the new adapter's.
    grpo = tmp_path / "grpo"
    grpo.mkdir()
    (grpo / "adapter_model.safetensors").write_bytes(b"the new adapter")
    evaluation = tmp_path / "eval" / "grpo"
    evaluation.mkdir(parents=True)
    old = {"ex": 0.5, "adapter": str(grpo), "adapter_sha256": hashlib.sha256(b"the old adapter").hexdigest()}
    (evaluation / "metrics.json").write_text(json.dumps(old))
    args = ["evaluate.py", "--preset", "smoke", "--output_dir", str(tmp_path), "--adapter", "grpo", "--resume"]
    one_line_error(run_script(*args), "an evaluation of another adapter", "--overwrite")
    assert json.loads((evaluation / "metrics.json").read_text()) == old  # nothing touched

    same = {**old, "adapter_sha256": hashlib.sha256(b"the new adapter").hexdigest()}
    (evaluation / "metrics.json").write_text(json.dumps(same))
    done = run_script(*args)
    assert done.returncode == 0 and "already holds an evaluation" in done.stdout, done.stderr[-2000:]


def test_resume_never_calls_a_grpo_run_from_another_sft_adapter_finished(tmp_path):
    # `train_sft.py --overwrite`, then the rerun chain: the finished GRPO stage was trained from the old SFT
    # adapter, so "already finished" would hand evaluate.py a GRPO adapter of the old pipeline.
    import pytest
    from config import Config

    out = tmp_path / "grpo"
    out.mkdir()
    (out / "run_info.json").write_text(json.dumps({"global_step": 4, "sft_adapter_sha256": "a" * 64, "config": {}}))
    cfg = Config(output_dir=str(tmp_path), resume=True)
    with pytest.raises(errors.UserError, match="trained from another SFT adapter.*--overwrite"):
        run_folders.prepare_output_dir(out, cfg, "run_info.json", {"sft_adapter_sha256": "b" * 64})
    with pytest.raises(errors.StageFinished, match="already finished: 4 steps"):
        run_folders.prepare_output_dir(out, cfg, "run_info.json", {"sft_adapter_sha256": "a" * 64})


def test_resume_may_add_dev_ex_monitoring(tmp_path):
    # --eval_steps only watches the run (greedy, no sampling: the rewards and the adapter come out the same),
    # like the logging settings: a resumed GRPO run may turn it on. A field that no longer defines a run
    # (in the checkpoint's record, not in this version's identity) never blocks resuming either.
    from config import Config, run_defining_config

    out = tmp_path / "grpo"
    checkpoint = out / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2, "max_steps": 4}))
    identity = {**run_defining_config(Config(), "train_grpo.py"), "sft_adapter_sha256": "a" * 64, "retired_field": 1}
    run = {"run_id": "r1", "stage": "grpo", "config": identity}
    (out / run_folders.RUN_FILE).write_text(json.dumps(run))
    (checkpoint / run_folders.RUN_FILE).write_text(json.dumps({**run, "step": 2}))
    cfg = Config(output_dir=str(tmp_path), resume=True, eval_steps=2, eval_subset_size=50)
    assert run_folders.prepare_output_dir(out, cfg, "run_info.json", {"sft_adapter_sha256": "a" * 64}) == str(checkpoint)
    # A field added since the checkpoint was written (absent from its record) counts at its default.
    import pytest

    del identity["grpo_skip_empty_gold"]
    (checkpoint / run_folders.RUN_FILE).write_text(json.dumps({**run, "config": identity, "step": 2}))
    assert run_folders.prepare_output_dir(out, cfg, "run_info.json", {"sft_adapter_sha256": "a" * 64}) == str(checkpoint)
    with pytest.raises(errors.UserError, match=r"other settings \(grpo_skip_empty_gold: True -> False\)"):
        run_folders.prepare_output_dir(out, Config(output_dir=str(tmp_path), resume=True, grpo_skip_empty_gold=False),
                                "run_info.json", {"sft_adapter_sha256": "a" * 64})
