"""The one tool of the agentic mode (--max_tool_calls N): `execute_sql(query)` on the question's own
database, and the compact text of its result that the model reads.

Every call runs in the same sandbox as the reward (sandbox.execute_sql: read-only, time-limited,
bounded rows and values), inside WorkerPool processes that make the time limit hard; the model sees
the column names and the first `max_rows` rows (within MAX_RESULT_CHARS), or the error message,
never a traceback; the whole text stays within MAX_RESULT_CHARS. Only the rows shown are fetched (the
rest counted up to COUNT_LIMIT), and the time limit is the tool's own (--tool_timeout_s), not the
reward's. Imports sandbox only: its worker processes import this module and must start fast.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from sql_rlvr.sandbox import WorkerPool, execute_sql

TOOL_NAME = "execute_sql"
MAX_VALUE_CHARS = 60  # one value shown to the model; longer ones end in "..."
MAX_NAME_CHARS = 120  # one column name (an expression names its column: keep most of it)
# A hard cap on the whole text the model reads for one call: the column names, the rows, the count line
# and the last call's note. A wide SELECT * (10 rows of 20 columns) or digit-heavy dates would otherwise
# cost 500-1000 tokens per call (bench/agentic.py), and a 50-column row alone passed 800 characters.
MAX_RESULT_CHARS = 800
# The note after the result of the call that uses up the budget: the next turn must be the answer.
LAST_CALL_NOTE = "(no queries left: answer now with your final SQL query)"
# Every result leaves room for that note, so a result reads the same whichever call it answers.
RESULT_CHARS = MAX_RESULT_CHARS - len(LAST_CALL_NOTE) - 1
# Rows past those shown are counted, not held, up to this many: "(10 of more than 10000 rows shown)".
# Counting 10,000 rows of 50 text columns takes ~0.1 s; 100,000 took over a second (docs/agentic.md).
COUNT_LIMIT = 10_000
MORE_COLUMNS = "(+{} columns)"  # the header's last cell when columns are left out; each row's is "..."


@dataclass
class ToolCall:
    """One call of the tool, as predictions.jsonl and candidates.jsonl record it."""

    sql: str
    outcome: str  # ok | error | refused | timeout | too_large | budget (not run: no calls left) | bad_call
    rows: int | None  # rows the query returned, counted up to COUNT_LIMIT + 1 (= more) (None: it failed)
    rows_shown: int  # rows the model saw
    text: str  # exactly what the model was shown
    seconds: float = 0.0

    def record(self) -> dict:
        return asdict(self)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _value_text(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    if isinstance(value, bytes):
        value = f"<{len(value)} bytes>"
    text = "NULL" if value is None else str(value)
    return _cut(" ".join(text.split()), limit)  # one line per row, whatever the data holds


def _count_line(shown: int, count: int) -> str:
    if shown == count:
        return f"({count} row{'s' * (count != 1)})"
    total = f"more than {COUNT_LIMIT}" if count > COUNT_LIMIT else str(count)
    return f"({shown} of {total} rows shown)"


def _joined(cells: list[str], k: int, last: str) -> str:
    """The first k cells joined, and `last` after them when cells are left out."""
    return " | ".join(cells[:k] + ([last] if k < len(cells) else []))


def result_lines(columns: list[str], rows: list[tuple], max_rows: int, count: int | None = None) -> list[str]:
    """A result as the model reads it, a line each: the column names, up to `max_rows` rows, values
    separated by " | ", and a count line ("(3 rows)", "(10 of 57 rows shown)"). `count`: the rows the
    query returned when `rows` holds only the first ones (more than COUNT_LIMIT: "of more than N").

    The lines stay within RESULT_CHARS, newlines included: as many leading columns as let the header, the
    first row and the count line fit (the header then ends in "(+N columns)", each row in "..."), then
    the rows that fit. Cut names and values end in "..."; the first column always fits."""
    count = len(rows) if count is None else count
    head = [_value_text(c, MAX_NAME_CHARS) for c in columns]
    body = [[_value_text(v) for v in row] for row in rows[:max_rows]]
    width = len(head) or (len(body[0]) if body else 0)

    def header(k: int) -> list[str]:
        return [_joined(head, k, MORE_COLUMNS.format(width - k))] if head else []

    # Each cell takes 4 characters or more with its separator, so no more than RESULT_CHARS // 4 fit.
    k = min(width, RESULT_CHARS // 4)
    while k > 1:  # leave out trailing columns until the header, the first row and the count line fit
        first = header(k) + [_joined(r, k, "...") for r in body[:1]]
        if sum(len(line) + 1 for line in first) + len(_count_line(len(body[:1]), count)) <= RESULT_CHARS:
            break
        k -= 1
    lines = header(k)
    size, shown = sum(len(line) + 1 for line in lines), 0
    for row in body:
        line = _joined(row, k, "...")
        if shown and size + len(line) + 1 + len(_count_line(shown + 1, count)) > RESULT_CHARS:
            break
        lines.append(line)
        size, shown = size + len(line) + 1, shown + 1
    lines.append(_count_line(shown, count))
    return lines


def result_text(columns: list[str], rows: list[tuple], max_rows: int, count: int | None = None) -> str:
    """result_lines as one text (what the tool returns)."""
    return "\n".join(result_lines(columns, rows, max_rows, count))


def run_call(db_path: str | os.PathLike, sql: str, timeout_s: float, max_rows: int) -> ToolCall:
    """Execute one tool call in this process (the workers' job; also the fallback without workers).
    Only the rows shown are held; the rest are counted up to COUNT_LIMIT + 1 (sandbox's keep_rows)."""
    start = time.monotonic()
    if not sql.strip():
        return ToolCall(sql, "bad_call", None, 0, "error: empty query", 0.0)
    keep = min(max_rows, RESULT_CHARS // 2)  # a row takes 2 characters or more: no more could ever be shown
    result = execute_sql(db_path, sql, timeout_s, max_rows=COUNT_LIMIT, keep_rows=keep)
    seconds = time.monotonic() - start
    if not result.ok:
        return ToolCall(sql, result.kind, None, 0, _cut(f"error: {result.error}", RESULT_CHARS), round(seconds, 4))
    lines = result_lines(result.columns or [], result.rows or [], max_rows, result.row_count)
    shown = len(lines) - 1 - bool(result.columns)  # less the count line and the header
    return ToolCall(sql, "ok", result.row_count, shown, "\n".join(lines), round(seconds, 4))


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

    @classmethod
    def from_config(cls, cfg: Any, workers: int = 1) -> SQLTool:
        """The tool every stage builds: --tool_timeout_s (not the reward's --sql_timeout_s: TRL runs calls
        one at a time, so a slow call stalls the whole batch) and --tool_max_rows."""
        return cls(cfg.tool_timeout_s, cfg.tool_max_rows, workers=workers)

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
