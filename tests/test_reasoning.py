"""The reasoning mode (--reasoning true): the prompt, the final query of a reasoned answer, no answer, the
lengths, and evaluation's numbers; the default mode's prompts unchanged."""

import json

import pytest

import utils
from config import REASONING_TOKENS, parse_config
from conftest import copy_sft, run_script
from sql_rlvr import execution_reward
from sql_rlvr.extract import final_sql


@pytest.fixture
def db(make_db):
    return make_db("CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);\n"
                   "INSERT INTO singer VALUES (1, 'Ann', 30), (2, 'Bob', 41), (3, 'Cid', 25);")


def test_the_default_prompt_is_unchanged_byte_for_byte():
    # What every earlier run trained and evaluated on: --reasoning false must keep it exactly.
    assert utils.build_messages("CREATE TABLE t (a INT)", " How many? ") == [
        {"role": "system", "content": "You are an expert SQLite developer. Given a database schema and a question, "
                                      "answer with one SQLite query that answers the question, and nothing else."},
        {"role": "user", "content": "Database schema:\nCREATE TABLE t (a INT)\n\nQuestion: How many?"}]
    cfg, _ = parse_config([])
    assert (cfg.reasoning, cfg.max_completion_length, cfg.max_seq_length) == (False, 256, 2048)


def test_reasoning_asks_for_reasoning_then_a_sql_block():
    messages = utils.build_messages("CREATE TABLE t (a INT)", "How many?", reasoning=True)
    assert messages[0]["content"] == utils.REASONING_SYSTEM_PROMPT and "```sql" in messages[0]["content"]
    assert messages[1] == utils.build_messages("CREATE TABLE t (a INT)", "How many?")[1]  # the same user turn


def test_reasoning_grows_the_default_lengths_unless_given():
    cfg, _ = parse_config(["--reasoning", "true"])
    assert (cfg.max_completion_length, cfg.max_seq_length) == (256 + REASONING_TOKENS, 2048 + REASONING_TOKENS)
    cfg, _ = parse_config(["--reasoning", "true", "--max_completion_length", "300"])
    assert (cfg.max_completion_length, cfg.max_seq_length) == (300, 2048 + REASONING_TOKENS)
    cfg, _ = parse_config(["--reasoning", "true", "--max_tool_calls", "1"])  # both rooms add up
    assert cfg.max_completion_length == 256 + REASONING_TOKENS + 256


@pytest.mark.parametrize("answer, sql", [
    ("One table.\n```sql\nSELECT count(*) FROM singer;\n```\nThis counts them.", "SELECT count(*) FROM singer"),
    # a draft, then the final block: the final one
    ("Try:\n```sql\nSELECT 1\n```\nBetter:\n```sql\nSELECT name FROM singer\n```", "SELECT name FROM singer"),
    # cut at the length limit inside the final block: no answer, not the draft before it
    ("Try:\n```sql\nSELECT 1\n```\nBetter:\n```sql\nSELECT name FROM sin", None),
    ("I would select the names from singer, ordered by age.", None),  # never gave a query
    ("SELECT name FROM singer", None),  # not the asked-for shape: no final block
    ("<think>\nOne table.\n</think>\n\nSELECT count(*) FROM singer", "SELECT count(*) FROM singer"),
    ("<think>\nOne table.\n</think>\n\n```sql\nSELECT count(*) FROM singer\n```", "SELECT count(*) FROM singer"),
    ("<think>\nOne table: ```sql\nSELECT count(*) FROM singer\n```", None),  # its think block never ended
    ("<think>\nOne table.\n</think>\n\nThe count of singers.", None),
    ("   ", ""),  # empty stays empty (-2.0 as before)
])
def test_final_sql_is_the_final_query_or_no_answer(answer, sql):
    assert final_sql(answer, reasoning=True) == sql


def test_an_answer_inside_a_think_block_the_template_opened():
    # Qwen3-Thinking-style templates end the generation prompt with "<think>\n": the answer starts inside it.
    assert final_sql("One table.\n</think>\n\nSELECT a FROM t", True, "<think>\n") == "SELECT a FROM t"
    assert final_sql("One table: ```sql\nSELECT a FROM t\n```", True, "<think>\n") is None  # still thinking
    assert final_sql("One table: ```sql\nSELECT a FROM t\n```", True) == "SELECT a FROM t"  # an instruct answer


def test_the_reward_scores_the_final_query_and_no_answer_as_empty(db):
    reward = execution_reward.SQLExecutionReward(workers=0, reasoning=True)
    gold = "SELECT count(*) FROM singer"
    answers = ["Count them.\n```sql\nSELECT count(*) FROM singer\n```",
               "Draft:\n```sql\nSELECT count(*) FROM singer\n```\nFinal:\n```sql\nSELECT count(*) FROM sing",
               "SELECT count(*) FROM singer",  # bare SQL: not the reasoning mode's answer
               "",
               "Count them.\n```sql\nSELECT count(*) FROM nowhere\n```"]
    scored = reward.score(answers, [gold] * len(answers), [str(db)] * len(answers))
    assert [(r, o) for r, o, _ in scored] == [(5.0, "match"), (-2.0, "no_answer"), (-2.0, "no_answer"),
                                             (-2.0, "empty"), (-1.0, "invalid")]
    rewards = reward([None] * 2, answers[:2], gold_sql=[gold] * 2, db_path=[str(db)] * 2)
    assert rewards == [5.0, -2.0] and reward.pop_metrics()["outcome/no_answer"] == 0.5
    reward.think_opener = "<think>\n"  # a thinking template: the completions start inside the think block
    assert [o for _, o, _ in reward.score(["Count.\n</think>\n\nSELECT count(*) FROM singer", answers[0]],
                                          [gold] * 2, [str(db)] * 2)] == ["match", "no_answer"]
    # the default mode is unchanged: the bare query is the answer
    plain = execution_reward.SQLExecutionReward(workers=0)
    assert plain.score([answers[2]], [gold], [str(db)])[0][:2] == (5.0, "match")


@pytest.mark.slow
def test_evaluation_counts_no_answer_and_answer_lengths(tmp_path):
    # The tiny model never writes a closed ```sql block: every greedy answer is "no answer", scored wrong.
    out = tmp_path / "reasoning"
    args = ["--preset", "smoke", "--adapter", "none", "--max_eval_examples", "4", "--max_completion_length", "24"]
    result = run_script("evaluate.py", *args, "--reasoning", "true", "--output_dir", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    ev = out / "eval" / "base"
    metrics = json.loads((ev / "metrics.json").read_text())
    records = [json.loads(line) for line in (ev / "predictions.jsonl").read_text().splitlines()]
    assert metrics["reasoning"] is True and metrics["config"]["max_seq_length"] == 1024 + REASONING_TOKENS
    assert metrics["no_answer"] == sum(r["no_answer"] for r in records) == 4
    assert not any(r["exec_match"] for r in records)
    assert all(r["answer"] and final_sql(r["answer"], True) is None for r in records)  # the full text is kept
    tokens = metrics["completion_tokens"]
    assert 0 < tokens["median"] <= tokens["p95"] <= 24
    assert "no final query (wrong): 4" in result.stdout
    plain = run_script("evaluate.py", *args, "--output_dir", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr[-3000:]
    compared = run_script("evaluate.py", "--compare", str(tmp_path / "plain" / "eval" / "base"), str(ev))
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert "no answer" in compared.stdout and "tokens p95" in compared.stdout


def test_grpo_prompts_for_reasoning_and_scores_no_answer(tmp_path, smoke_sft):
    # The tiny SFT adapter answers with bare SQL, never a closed ```sql block: under --reasoning true every
    # answer is "no answer" (-2.0), a group that all scores the same teaches nothing, and the run says so.
    import pandas

    copy_sft(smoke_sft, tmp_path)
    result = run_script("train_grpo.py", "--preset", "smoke", "--output_dir", str(tmp_path), "--reasoning", "true",
                        "--grpo_max_steps", "1", "--max_completion_length", "24")
    assert result.returncode == 2 and "identical to the SFT adapter" in result.stderr, result.stderr[-3000:]
    steps = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    logged = [s for s in steps if "outcome/no_answer" in s]
    assert logged and all(s["outcome/no_answer"] == 1.0 and s["reward"] == -2.0 for s in logged)
    completions = pandas.concat(pandas.read_parquet(p) for p in (tmp_path / "grpo" / "completions").glob("*.parquet"))
    assert set(completions["outcome"]) == {"no_answer"}
    assert all(utils.REASONING_SYSTEM_PROMPT in str(prompt) for prompt in completions["prompt"])
