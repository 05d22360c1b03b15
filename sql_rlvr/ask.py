"""evaluate.py --ask "QUESTION" --db PATH.sqlite: one question on any SQLite database, answered by the model
(--adapter sft | grpo | none | PATH), its SQL run in the sandbox and the first rows of the result printed as
a small table; with --max_tool_calls N, first the queries the model ran before it answered.

The prompt is evaluation's, its schema read from the database as the folder benchmark reads it
(benchmarks.Folder.for_database): a model trained with --benchmark folder sees the same text here.
A database that does not open, an answer with no SQL, SQL that fails: one line (a UserError), exit 2.
Imports agent, benchmarks, config, errors, extract, sandbox, sql_tool and utils; the model stack inside
functions only.
"""

from __future__ import annotations

import os
from pathlib import Path

import utils
from config import Config
from sql_rlvr import agent
from sql_rlvr.benchmarks import Folder
from sql_rlvr.errors import UserError
from sql_rlvr.extract import final_sql
from sql_rlvr.sandbox import execute_sql
from sql_rlvr.sql_tool import COUNT_LIMIT, SQLTool, ToolCall

SHOWN_ROWS = 10  # rows of the answer's result printed
VALUE_CHARS = 40  # one printed value; longer ones end in "..."
CALL_LINES = 6  # lines of a tool call's result printed (the model read all of it)


def _cell(value) -> str:
    if isinstance(value, bytes):
        value = f"<{len(value)} bytes>"
    text = " ".join(("NULL" if value is None else str(value)).split())
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS - 3] + "..."


def format_rows(columns: list[str], rows: list[tuple], count: int | None = None) -> str:
    """A result as a small table: the column names, a rule, the rows (values cut to VALUE_CHARS), and a count
    line ("(3 rows)", "(10 of 57 rows shown)", "(10 of more than 10000 rows shown)" past COUNT_LIMIT)."""
    count = len(rows) if count is None else count
    head = [_cell(c) for c in columns]
    body = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in [head] + body) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(head, widths)).rstrip(),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in body]
    if count == len(rows):
        lines.append(f"({count} row{'s' * (count != 1)})")
    else:
        total = f"more than {COUNT_LIMIT}" if count > COUNT_LIMIT else str(count)
        lines.append(f"({len(rows)} of {total} rows shown)")
    return "\n".join(lines)


def call_lines(calls: list[ToolCall]) -> list[str]:
    """What the model did before it answered, briefly: each query it ran and the start of what it read."""
    lines = []
    for n, call in enumerate(calls, 1):
        lines.append(f"[ask] query {n} ({call.outcome}): {' '.join(call.sql.split())}")
        shown = call.text.splitlines()
        lines += [f"    {line}" for line in shown[:CALL_LINES]]
        if len(shown) > CALL_LINES:
            lines.append(f"    ... ({len(shown) - CALL_LINES} more lines)")
    return lines


def show_answer(answer: str, db_path: str | os.PathLike, timeout_s: float, rows: int = SHOWN_ROWS,
                reasoning: bool = False, think_opener: str = "") -> str:
    """Print the SQL in a model's answer and the first `rows` rows of its result on the database (in the
    sandbox, within `timeout_s`); the model's words too when the answer holds more than the SQL (reasoning,
    prose). With `reasoning` (--reasoning true) the SQL is the answer's final query (extract.final_sql).
    Returns the SQL; a UserError when there is none or it fails (nothing was answered)."""
    sql = final_sql(answer, reasoning, think_opener) or ""
    if answer.strip() and " ".join(answer.split()) != " ".join(sql.split()):
        shown = "".join(c if c.isprintable() or c == "\n" else "?" for c in answer.strip())
        print("[ask] the model's answer:\n    " + "\n    ".join(shown.splitlines()))
    if not sql:
        final = "reaches no final query (cut at --max_completion_length, or none given)" if reasoning else "holds no SQL"
        raise UserError(f"the model's answer (above) {final}" if answer.strip() else "the model's answer is empty")
    print(f"SQL: {' '.join(sql.split())}")
    result = execute_sql(db_path, sql, timeout_s, max_rows=COUNT_LIMIT, keep_rows=rows)
    if not result.ok:
        raise UserError(f"the SQL fails on {db_path} ({result.kind}): {' '.join(str(result.error).split())[:300]}")
    print(format_rows(result.columns or [], result.rows or [], result.row_count))
    return sql


def open_database(db: str | None) -> tuple[Folder, str]:
    """The one-database folder of --db and its db_id; one line when it is not a SQLite database with a table."""
    if not db:
        raise UserError('--ask needs --db PATH.sqlite: the SQLite database the question is about')
    dataset = Folder.for_database(db)
    db_id = Path(db).stem
    if not dataset.schema_tables(db_id):  # reads the schema: a damaged file fails here, in one line
        raise UserError(f"{db} holds no table: nothing to ask about")
    return dataset, db_id


def ask(cfg: Config, question: str, db: str | None, adapter: Path | None) -> str:
    """Answer `question` on the database `db` with the model (and `adapter`), print the SQL and its first rows
    (and, in the agentic mode, the queries before it). Returns the SQL; a UserError when nothing was answered."""
    if not question.strip():
        raise UserError('--ask needs a question: --ask "How many singers are older than 30?"')
    dataset, db_id = open_database(db)  # before the model loads: a wrong path costs a second, not a load
    example = {"db_id": db_id, "question": question}
    chat = utils.render_prompt_for(dataset, example, cfg)
    backend = utils.pick_backend(cfg)
    fast = backend == "unsloth" and cfg.fast_inference
    model, tokenizer = utils.load_model(cfg, backend, adapter=adapter, trainable=False, fast_inference=fast)
    agentic = cfg.max_tool_calls > 0
    template_kwargs = agent.checked_template_kwargs(model, tokenizer, cfg.model_name, agentic, cfg.reasoning)
    limit = cfg.max_seq_length - cfg.max_completion_length
    prompts, lengths, fits = agent.model_prompts(tokenizer, [chat], template_kwargs, agentic, limit)
    if not fits:
        raise UserError(f"the prompt is {lengths[0]} tokens, over the {limit}-token limit (--max_seq_length less "
                        "--max_completion_length): raise --max_seq_length")
    mode = f"; agentic, up to {cfg.max_tool_calls} queries" if agentic else ""
    print(f"[ask] backend={backend} adapter={adapter or 'none (base model)'} database={db} "
          f"({len(dataset.schema_tables(db_id))} tables); prompt {lengths[0]} tokens{mode}")
    options = dict(adapter_dir=adapter, max_new_tokens=cfg.max_completion_length, temperature=cfg.eval_temperature,
                   batch_size=1, fast_inference=cfg.fast_inference, progress=False)
    if agentic:
        tool = SQLTool.from_config(cfg)
        try:
            trajectory = agent.answer_with_tools(model, tokenizer, backend, prompts, [str(dataset.db_path(db_id))],
                                                 tool=tool, max_calls=cfg.max_tool_calls, template_kwargs=template_kwargs,
                                                 max_seq_length=cfg.max_seq_length, **options)[0]
        finally:
            tool.close()
        for line in call_lines(trajectory.calls):
            print(line)
        if trajectory.ended != "answer":
            raise UserError(f"no answer after {len(trajectory.calls)} queries ({trajectory.ended.replace('_', ' ')}): "
                            "raise --max_tool_calls or --max_completion_length")
        answer = trajectory.answer
    else:
        answer = utils.generate(model, tokenizer, prompts, backend, **options)[0]
    opener = utils.think_opener(tokenizer, template_kwargs) if cfg.reasoning else ""
    return show_answer(answer, dataset.db_path(db_id), cfg.sql_timeout_s, reasoning=cfg.reasoning, think_opener=opener)
