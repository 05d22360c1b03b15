"""Progress that a log file shows. On a terminal, tqdm's bar (on stderr); where stdout goes to a file
(`nohup python evaluate.py ... > eval.log`), where a bar writes nothing a person can read, a plain line
at a steady pace instead: what is done of how many, the rate, the time left. Used by evaluation's
generation (both modes, each turn of the agentic mode), GRPO's pass-rate filter and its --eval_steps
check, through utils.generate_ids and agent.answer_with_tools.

A phase shorter than the pace prints no line at all; a longer one prints one every `every_s` seconds
and a last one when it ends.

Imports nothing of ours (tqdm only): utils and agent, low in the layers, use it.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from tqdm import tqdm

EVERY_S = 30.0  # default pace of the lines (--progress_every_s)


@dataclass(frozen=True)
class Report:
    """How one phase reports its progress: the label its lines start with ("[eval] syn: greedy answers"),
    the pace of its lines (seconds), whether a terminal gets tqdm's bar as well (not while a trainer's
    own bar runs: GRPO's filter and --eval_steps check), and the unit counted."""

    label: str
    every_s: float = EVERY_S
    bar: bool = True
    unit: str = "questions"

    def sub(self, suffix: str, unit: str | None = None) -> "Report":
        """The same report for a part of the phase (an agentic turn): the label gains `suffix`."""
        return replace(self, label=f"{self.label}{suffix}", unit=unit or self.unit)


def as_report(progress: bool | Report | None, label: str = "generating") -> Report | None:
    """A generation function's `progress` argument: False/None = silent, True = `label` at the default
    pace, or a Report as it is."""
    if isinstance(progress, Report):
        return progress
    return Report(label) if progress else None


def lines_wanted() -> bool:
    """Lines when stdout is not a terminal (a file, a pipe): there the bar shows nothing readable."""
    return not sys.stdout.isatty()


def duration(seconds: float) -> str:
    """45 s, 3 min 05 s, 2 h 07 min."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_line(label: str, done: int, total: int, elapsed: float, unit: str = "questions",
                  final: bool = False) -> str:
    """`label: done/total unit (pct), rate, about T left (T so far)`, or at the end `..., rate, done in T`;
    the rate per minute when slow."""
    rate = done / elapsed if elapsed > 0 else 0.0
    speed = f"{rate:.2f}/s" if rate >= 1 else f"{rate * 60:.1f}/min"
    if final:
        return f"{label}: {done}/{total} {unit}, {speed}, done in {duration(elapsed)}"
    pct = f" ({100 * done / total:.0f}%)" if total else ""
    left = f", about {duration((total - done) / rate)} left" if rate > 0 and done < total else ""
    return f"{label}: {done}/{total} {unit}{pct}, {speed}{left} ({duration(elapsed)} so far)"


class _Nowhere:
    """A file for a bar nobody sees (tqdm still counts and times)."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class ProgressBar(tqdm):
    """tqdm's bar where `report.bar` asks for it and stderr is a terminal, and `report`'s lines where stdout
    is not one. A tqdm in every other way, so vLLM's LLM.generate takes it as its `use_tqdm` (see
    vllm_tqdm). `per_item`: counts per question (vLLM counts each of a request's n outputs)."""

    def __init__(self, *args: Any, report: Report, per_item: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("desc", report.label)
        kwargs["disable"] = False  # a disabled tqdm counts nothing (and vLLM divides by its elapsed time)
        if not (report.bar and sys.stderr.isatty()):
            kwargs["file"] = _Nowhere()
        self.report, self.per_item = report, max(1, per_item)
        self.lines = lines_wanted()
        self.last_line, self.printed, self.ended = time.time(), False, False
        super().__init__(*args, **kwargs)

    def done(self) -> int:
        return int(self.n // self.per_item) if not self.total else min(int(self.total), int(self.n // self.per_item))

    def say(self, final: bool = False) -> None:
        done = self.done()
        print(progress_line(self.report.label, done, int(self.total or done), time.time() - self.start_t,
                            self.report.unit, final), flush=True)
        self.last_line, self.printed = time.time(), True

    def update(self, n: float = 1) -> bool | None:
        shown = super().update(n)
        if self.lines and time.time() - self.last_line >= self.report.every_s and self.done() < (self.total or 0):
            self.say()
        return shown

    def close(self) -> None:
        # The end of a phase that printed lines, or lasted as long as their pace.
        if (getattr(self, "lines", False) and not self.ended
                and (self.printed or time.time() - self.start_t >= self.report.every_s)):
            self.ended = True
            self.say(final=True)
        super().close()


def bar(report: Report | None, total: int) -> ProgressBar | None:
    """A ProgressBar over `total` questions, or None without a report."""
    return ProgressBar(total=total, report=report) if report else None


def vllm_tqdm(report: Report | None, per_request: int = 1) -> bool | Callable[..., tqdm]:
    """vLLM's `use_tqdm` for a report: False without one, else a ProgressBar factory (vLLM's LLM.generate
    takes a callable since 0.6; its bar counts the n outputs of each finished request)."""
    return functools.partial(ProgressBar, report=report, per_item=per_request) if report else False
