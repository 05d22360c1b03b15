"""The agentic mode's tool within its limits, on real SQLite databases: its own time limit
(--tool_timeout_s), results fetched only as far as they are shown and counted, the whole text within
MAX_RESULT_CHARS, and a malformed call counted alike in TRL's GRPO tool loop and in evaluation."""

import os
import time
import tracemalloc

import pytest

from sql_rlvr import agent
import utils
from config import BENCHMARK_DEFAULTS, ConfigError, fields_for, parse_config
from conftest import ROOT
from sql_rlvr.sandbox import MAX_RESULT_ROWS, execute_sql
from sql_rlvr.sql_tool import COUNT_LIMIT, LAST_CALL_NOTE, MAX_RESULT_CHARS, SQLTool, run_call


RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def numbers_db(make_db, rows: int):
    """A table t(n, name) of `rows` rows, built inside SQLite."""
    return make_db("CREATE TABLE t (n INTEGER, name TEXT);"
                   f"INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {rows}) "
                   "SELECT x, 'name number ' || x FROM c;")


# ---------------------------------------------------------------- time limit and rows fetched


def test_a_result_of_500k_rows_is_shown_and_counted_without_being_held(make_db):
    db = numbers_db(make_db, 500_000)
    assert 500_000 > MAX_RESULT_ROWS  # the reward's sandbox would refuse it as too large
    tracemalloc.start()
    try:
        start = time.monotonic()
        call = run_call(db, "SELECT * FROM t", timeout_s=2.0, max_rows=10)
        seconds = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert call.outcome == "ok" and seconds < 2.0
    lines = call.text.splitlines()
    assert lines[:3] == ["n | name", "1 | name number 1", "2 | name number 2"] and len(lines) == 12
    assert lines[-1] == f"(10 of more than {COUNT_LIMIT} rows shown)"
    assert call.rows == COUNT_LIMIT + 1 and call.rows_shown == 10
    assert peak < 1_000_000, f"{peak} bytes held"  # 100,000 rows held took ~10 MB
    # The sandbox holds the rows shown only, and counts the rest up to the limit.
    result = execute_sql(db, "SELECT * FROM t", 2.0, max_rows=COUNT_LIMIT, keep_rows=10)
    assert result.ok and len(result.rows) == 10 and result.row_count == COUNT_LIMIT + 1


def test_the_count_is_exact_up_to_the_limit(make_db):
    db = numbers_db(make_db, COUNT_LIMIT + 1)
    exact = run_call(db, f"SELECT n FROM t LIMIT {COUNT_LIMIT}", 2.0, 10)
    more = run_call(db, "SELECT n FROM t", 2.0, 10)
    few = run_call(db, "SELECT n FROM t LIMIT 3", 2.0, 10)
    assert exact.text.splitlines()[-1] == f"(10 of {COUNT_LIMIT} rows shown)" and exact.rows == COUNT_LIMIT
    assert more.text.splitlines()[-1] == f"(10 of more than {COUNT_LIMIT} rows shown)"
    assert few.text == "n\n1\n2\n3\n(3 rows)" and few.rows == 3


def test_a_runaway_call_stops_at_tool_timeout_s_not_sql_timeout_s(make_db):
    cfg, _ = parse_config(["--preset", "smoke", "--max_tool_calls", "1", "--sql_timeout_s", "30",
                           "--tool_timeout_s", "0.5"])
    db = numbers_db(make_db, 10)
    tool = SQLTool.from_config(cfg)  # a worker process, as every stage runs the tool
    try:
        tool.run([(str(db), "SELECT 1")])  # the worker's start is not the call's time
        start = time.monotonic()
        [call] = tool.run([(str(db), RUNAWAY)])
        seconds = time.monotonic() - start
    finally:
        tool.close()
    assert call.outcome == "timeout" and call.text == "error: over the 0.5 s limit"
    assert seconds < 3.0, seconds


def test_every_stage_builds_the_tool_with_tool_timeout_s():
    for script in ("train_sft.py", "train_grpo.py", "evaluate.py"):
        source = (ROOT / script).read_text()
        assert "SQLTool.from_config(cfg)" in source and "SQLTool(" not in source, script
    bird, _ = parse_config(["--benchmark", "bird"])
    assert bird.sql_timeout_s == BENCHMARK_DEFAULTS["bird"]["sql_timeout_s"] and bird.tool_timeout_s == 5.0
    assert SQLTool.from_config(bird, workers=0).timeout_s == 5.0
    for value in ("0", "-1"):
        with pytest.raises(ConfigError, match="^--tool_timeout_s must be positive$"):
            parse_config(["--tool_timeout_s", value])
    for script in ("train_sft.py", "train_grpo.py", "evaluate.py"):  # listed in each script's --help
        assert "tool_timeout_s" in fields_for(script)


# ---------------------------------------------------------------- the size of the text


def test_a_50_column_result_stays_within_max_result_chars_with_its_count_line(make_db):
    names = [f"column_with_a_long_name_{i}" for i in range(50)]
    values = ", ".join(f"'{'w' * 70} ' || x" for _ in names)
    db = make_db(f"CREATE TABLE wide ({', '.join(n + ' TEXT' for n in names)});"
                 f"INSERT INTO wide WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 20) "
                 f"SELECT {values} FROM c;")
    env = agent.SQLEnvironment(SQLTool(2.0, 10, workers=0), max_calls=1)
    env.reset(db_path=str(db))
    text = env.execute_sql("SELECT * FROM wide")  # the last call: its note is part of the text too
    lines = text.splitlines()
    assert len(text) <= MAX_RESULT_CHARS and lines[-1] == LAST_CALL_NOTE
    header, first, count = lines[0], lines[1], lines[-2]
    shown = header.split(" | ")[:-1]
    assert shown == names[:len(shown)] and header.endswith(f" | (+{50 - len(shown)} columns)")
    assert first.split(" | ")[:-1] == ["w" * 57 + "..."] * len(shown) and first.endswith(" | ...")
    assert count == f"({len(lines) - 3} of 20 rows shown)" and env.calls[0].rows == 20

    # Whatever the names, values and error messages: one column name of 5,000 characters, a syntax error
    # quoting a long literal.
    long_name = run_call(db, f"SELECT 1 AS \"{'n' * 5000}\", 2 AS b", 2.0, 10)
    long_error = run_call(db, f"SELECT 1 FROM wide WHERE 'a' '{'b' * 5000}'", 2.0, 10)
    assert long_name.text.endswith("\n(1 row)") and long_error.outcome == "error"
    for call in (long_name, long_error):
        assert len(call.text) + 1 + len(LAST_CALL_NOTE) <= MAX_RESULT_CHARS


# ---------------------------------------------------------------- malformed calls and the budget


def five_calls(good: str) -> list[dict]:
    """An unknown tool, a wrong argument name, a query that is no string, then two good calls."""
    return [{"type": "function", "function": {"name": name, "arguments": arguments}} for name, arguments in (
        ("run_sql", {"query": good}), ("execute_sql", {"sql": good}), ("execute_sql", {"query": [good]}),
        ("execute_sql", {"query": good}), ("execute_sql", {"query": good + " LIMIT 1"}))]


def test_a_malformed_call_counts_alike_in_trls_loop_and_in_evaluation(tiny_model_dir, tiny_tokenizer, spider,
                                                                      tmp_path):
    """One turn makes the five calls of five_calls with a budget of 2. In GRPO, TRL's own tool loop runs
    them (the model's turn stands in for generation; the tool is real); in evaluation run_tool_call does.
    Both give the same texts, use the same budget (the two good calls), and only evaluation's record
    holds the calls TRL answered itself."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    agent.check_tool_template(tiny_tokenizer, "tiny")  # sets the parser's response format, as every stage does
    ex = spider.examples("train")[0]
    messages = utils.build_messages(spider.schema(ex["db_id"]), ex["question"])
    db = str(spider.db_path(ex["db_id"]))
    calls = five_calls(ex["query"])
    tool = SQLTool(2.0, 10, workers=0)
    turn = agent.assistant_turn_ids(tiny_tokenizer, messages, {"role": "assistant", "content": "", "tool_calls": calls},
                                    {}, tools=agent.tool_schemas())
    answer = agent.assistant_turn_ids(tiny_tokenizer, messages, {"role": "assistant", "content": ex["query"]}, {},
                                      tools=agent.tool_schemas())

    # Evaluation's way.
    env = agent.SQLEnvironment(tool, max_calls=2)
    env.reset(db_path=db)
    parsed = agent.parse_turn(tiny_tokenizer, turn, prefix=agent.prompt_ids(tiny_tokenizer, messages, {}))
    assert [c["function"] for c in parsed["tool_calls"]] == [c["function"] for c in calls]
    evaluation = [agent.run_tool_call(env, c) for c in parsed["tool_calls"]]

    # GRPO's way: TRL's loop, the same turn.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
        args=GRPOConfig(output_dir=str(tmp_path), bf16=False, per_device_train_batch_size=2, num_generations=2,
                        max_steps=1, max_completion_length=1024, max_tool_calling_iterations=2, report_to=[],
                        use_cpu=True),
        train_dataset=Dataset.from_list([{"prompt": messages, "db_path": db}] * 2), processing_class=tiny_tokenizer,
        environment_factory=lambda: agent.SQLEnvironment(tool, 2))
    turns = iter([turn, answer])
    trainer._generate_single_turn = lambda prompt_ids, *_, **__: ([list(next(turns))] * len(prompt_ids), None)
    loop, seen = trainer._tool_call_loop, []

    def watched(*args):
        out = loop(*args)
        seen.append(out[1])  # the conversations, tool messages included
        return out

    trainer._tool_call_loop = watched
    trainer._generate_and_score_completions([{"prompt": messages, "db_path": db}] * 2)
    grpo = [m["content"] for m in seen[0][0] if m["role"] == "tool"]

    assert grpo == evaluation
    assert evaluation[:3] == [str({"error": "Tool run_sql not found."}),
                              str({"error": "SQLEnvironment.execute_sql() got an unexpected keyword argument 'sql'"}),
                              str({"error": "execute_sql: query must be a string, not list"})]
    assert not evaluation[3].endswith(LAST_CALL_NOTE) and evaluation[4].endswith("\n" + LAST_CALL_NOTE)
    grpo_env = trainer.environments[0]
    assert grpo_env.budget_used == env.budget_used == 2
    assert [c.outcome for c in grpo_env.calls] == ["ok", "ok"]
    assert [c.outcome for c in env.calls] == ["bad_call"] * 3 + ["ok", "ok"]  # predictions.jsonl keeps them all
    assert [c.text for c in env.calls[3:]] == [c.text for c in grpo_env.calls]
