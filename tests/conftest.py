"""Fixtures on real parts: the shipped mini-Spider, the tiny local Qwen3, SQLite databases in tmp; and the
test lanes (docs/install.md, "Tests"):

  make test-fast   pytest -m "not slow": everything that trains no model end to end, in about a minute
  make test        both lanes at once (CI), every test in at least one: the GPU set's Python (trl 1.15,
                   as users install it) runs all but the hf training steps, which trl 1.15 runs only on
                   a GPU; the CPU set (trl 1.16) runs those, and the `both_lanes` checks again
"""

import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sql_rlvr import benchmarks
import utils  # noqa: E402
from config import MINI_SPIDER_DIR  # noqa: E402


MARKERS = {
    "slow": "trains a model or runs a pipeline stage end to end: left out of `make test-fast`",
    "hf_training": "takes a training step on the hf backend. trl 1.15 (the GPU set) computes its log-probs "
                   "with a Triton kernel (trl/kernels/chunked_logprob.py) that needs a GPU: skipped there on CPU",
    "unsloth": "runs the unsloth backend (its CPU backend): in the GPU set's lane, on the trl that unsloth "
               "2026.10.9 accepts (<= 1.15)",
    "both_lanes": "checks what differs between TRL versions without training (the API check, the real trainer "
                  "configs, TRL's templates, parser and tool-loop tokens): the CPU set's lane runs it too",
}
# Fixtures that train with the hf backend: every test that uses one (directly or through another) trains.
HF_TRAINING_FIXTURES = {"smoke_sft", "agentic", "bird_smoke", "folder_smoke"}


def pytest_configure(config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def trl_trains_on_cpu() -> bool:
    """trl >= 1.16 has a plain-torch log-prob path; 1.15 needs CUDA for it (unsloth reroutes it on CPU)."""
    import importlib.metadata

    from packaging.version import Version

    if Version(importlib.metadata.version("trl")) >= Version("1.16.0"):
        return True
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if HF_TRAINING_FIXTURES & set(item.fixturenames):
            item.add_marker("hf_training")
        if item.get_closest_marker("hf_training") or item.get_closest_marker("unsloth"):
            item.add_marker("slow")
    if not trl_trains_on_cpu():
        skip = pytest.mark.skip(reason="an hf training step: trl 1.15's log-probs need a GPU (Triton kernel)")
        for item in items:
            if item.get_closest_marker("hf_training"):
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def spider() -> benchmarks.Spider:
    # Autouse: opening the mini-Spider builds its databases from the shipped .sql, which tests that
    # only name data/mini_spider/database (score-only runs, --compare) rely on in a fresh checkout.
    return benchmarks.Spider.open(MINI_SPIDER_DIR)


@pytest.fixture(scope="session")
def tiny_model_dir() -> str:
    return utils.resolve_model_name("tiny")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def make_db(tmp_path):
    """Build a SQLite file from a script; returns its path."""

    def make(script: str, name: str = "test.sqlite") -> Path:
        path = tmp_path / name
        conn = sqlite3.connect(path)
        conn.executescript(script)
        conn.commit()
        conn.close()
        return path

    return make


def default_sigint() -> None:
    """preexec_fn of a child a test presses Ctrl-C in: SIGINT back to its default. A suite started in the
    background (`pytest &` from a script) runs with SIGINT ignored, children inherit that, and Python
    then never raises KeyboardInterrupt in them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_script(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run an entry script as a user would: `python <script> <args>` from the repo root."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def assert_trainer_args_follow_config(run_info: dict, mapping: dict[str, str]) -> None:
    """Every config field that sets a trainer argument reached the built trainer unchanged."""
    got, cfg = run_info["trainer_args"], run_info["config"]
    mismatched = {field: (cfg[field], got[arg]) for field, arg in mapping.items() if got[arg] != cfg[field]}
    assert not mismatched, f"config value vs the trainer's own argument: {mismatched}"


@pytest.fixture(scope="session")
def smoke_sft(tmp_path_factory) -> Path:
    """The `sft` folder of one finished `train_sft.py --preset smoke` run, trained once per session (the
    slowest step of the suite). Tests that only need a finished SFT adapter copy it (copy_sft); never
    write into it."""
    import fcntl
    import os

    # One run for all pytest-xdist workers of this session (their base folders share a parent): the first
    # to get here trains, the others wait for it and read the same folder.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "smoke-sft"
    with open(shared / "smoke-sft.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "sft" / "run_info.json").exists():
            result = run_script("train_sft.py", "--preset", "smoke", "--output_dir", str(out), "--overwrite")
            assert result.returncode == 0, f"sft failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out / "sft"


def copy_sft(sft: Path, output_dir: Path) -> Path:
    """A copy of a finished SFT run as <output_dir>/sft (its checkpoints left out), for train_grpo.py."""
    target = Path(output_dir) / "sft"
    shutil.copytree(sft, target, ignore=shutil.ignore_patterns("checkpoint-*"))
    return target


def assert_official_files_pair(ev: Path, dev: list[dict]) -> list[str]:
    """pred.txt and gold.txt of an evaluation folder pair line by line with dev, in the official formats;
    returns the predictions."""
    preds = (ev / "pred.txt").read_text().splitlines()
    golds = (ev / "gold.txt").read_text().splitlines()
    assert len(preds) == len(golds) == len(dev)
    assert all(p.strip() and "\t" not in p for p in preds)
    assert [g.split("\t") for g in golds] == [[" ".join(ex["query"].split()), ex["db_id"]] for ex in dev]
    return preds
