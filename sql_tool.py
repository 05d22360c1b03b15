"""The one tool of the agentic mode (--max_tool_calls N): `execute_sql(query)` on the question's own
database, and the compact text of its result that the model reads.

Every call runs in the same sandbox as the reward (sandbox.execute_sql: read-only, time-limited,
bounded rows and values), inside WorkerPool processes that make the time limit hard; the model sees
the column names and the first `max_rows` rows (within MAX_RESULT_CHARS), or the error message,
never a traceback. Imports sandbox only: its worker processes import this module and must start fast.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from sandbox import WorkerPool, execute_sql

TOOL_NAME = "execute_sql"
MAX_VALUE_CHARS = 60  # one value shown to the model; longer ones end in "..."
# The rows shown stop before the text passes this many characters: a wide SELECT * (10 rows of 20
# columns) or digit-heavy dates would otherwise cost 500-1000 tokens per call (bench/agentic.py).
MAX_RESULT_CHARS = 800
# The note after the result of the call that uses up the budget: the next turn must be the answer.
LAST_CALL_NOTE = "(no queries left: answer now with your final SQL query)"


@dataclass
class ToolCall:
    """One call of the tool, as predictions.jsonl and candidates.jsonl record it."""

    sql: str
    outcome: str  # ok | error | refused | timeout | too_large | budget (not run: no calls left) | bad_call
    rows: int | None  # rows the query returned (None: it failed)
    rows_shown: int  # rows the model saw
    text: str  # exactly what the model was shown
    seconds: float = 0.0

    def record(self) -> dict:
        return asdict(self)


def _value_text(value: Any) -> str:
    if isinstance(value, bytes):
        value = f"<{len(value)} bytes>"
    text = "NULL" if value is None else str(value)
    text = " ".join(text.split())  # one line per row, whatever the data holds
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 3] + "..."


def result_lines(columns: list[str], rows: list[tuple], max_rows: int) -> list[str]:
    """A result as the model reads it, a line each: the column names, then up to `max_rows` rows (fewer when
    they would pass MAX_RESULT_CHARS, the first always shown), values separated by " | ", and a count
    line ("(3 rows)", "(10 of 57 rows shown)")."""
    lines = [" | ".join(columns)] if columns else []
    size, shown = len(lines[0]) if lines else 0, 0
    for row in rows[:max_rows]:
        line = " | ".join(_value_text(v) for v in row)
        if shown and size + len(line) + 1 > MAX_RESULT_CHARS:
            break
        lines.append(line)
        size, shown = size + len(line) + 1, shown + 1
    count = len(rows)
    lines.append(f"({count} row{'s' * (count != 1)})" if shown == count else f"({shown} of {count} rows shown)")
    return lines


def result_text(columns: list[str], rows: list[tuple], max_rows: int) -> str:
    """result_lines as one text (what the tool returns)."""
    return "\n".join(result_lines(columns, rows, max_rows))


def run_call(db_path: str | os.PathLike, sql: str, timeout_s: float, max_rows: int) -> ToolCall:
    """Execute one tool call in this process (the workers' job; also the fallback without workers)."""
    start = time.monotonic()
    if not sql.strip():
        return ToolCall(sql, "bad_call", None, 0, "error: empty query", 0.0)
    result = execute_sql(db_path, sql, timeout_s)
    seconds = time.monotonic() - start
    if not result.ok:
        return ToolCall(sql, result.kind, None, 0, f"error: {result.error}", round(seconds, 4))
    rows = result.rows or []
    lines = result_lines(result.columns or [], rows, max_rows)
    shown = len(lines) - 1 - bool(result.columns)  # less the count line and the header
    return ToolCall(sql, "ok", len(rows), shown, "\n".join(lines), round(seconds, 4))


def _run_calls(items: list[tuple[str, str]], args: tuple[float, int], emit: Callable[[ToolCall], None]) -> None:
    """WorkerPool job: run each (db_path, sql) and emit its ToolCall."""
    timeout_s, max_rows = args
    for db_path, sql in items:
        emit(run_call(db_path, sql, timeout_s, max_rows))


class SQLTool:
    """Runs the model's tool calls in worker processes with a hard time limit (as the reward's queries):
    a call stalled inside one SQLite function is stopped with its worker, and reads as a time-out.
    `workers=0`: in this process (the sandbox's own time limit only)."""

    def __init__(self, timeout_s: float, max_rows: int, workers: int = 1) -> None:
        self.timeout_s, self.max_rows, self.workers = timeout_s, max_rows, workers
        self._pool: WorkerPool | None = None

    def run(self, calls: list[tuple[str, str]]) -> list[ToolCall]:
        """The ToolCall of each (db_path, sql), in order; never raises for bad SQL."""
        if not calls:
            return []
        if self.workers <= 0:
            return [run_call(db, sql, self.timeout_s, self.max_rows) for db, sql in calls]
        if self._pool is None:
            self._pool = WorkerPool(_run_calls, self.workers)
        size = -(-len(calls) // self.workers)
        batches = [list(calls[i:i + size]) for i in range(0, len(calls), size)]
        hard = 2 * self.timeout_s + 2.0  # the reward's hard limit: well past the sandbox's own

        def failed(call: tuple[str, str], error: str) -> ToolCall:
            kind = "timeout" if error.startswith("timeout") else "error"
            return ToolCall(call[1], kind, None, 0, f"error: over the {self.timeout_s:g} s limit"
                            if kind == "timeout" else "error: the query could not be run", self.timeout_s)

        return [c for batch in self._pool.run(batches, (self.timeout_s, self.max_rows), lambda _: hard, failed)
                for c in batch]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
