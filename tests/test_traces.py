"""SFT on reasoning traces (--reasoning true --sft_traces FILE) and the self-trace command (evaluate.py
--self_traces): the trace file is read, matched and verified by the reward's own rule on the real mini-Spider
databases; each trace is trained in the form its chat template renders. The loss mask on the real templates is
in test_chat_templates.py."""

import hashlib
import json
from pathlib import Path

import pytest

import utils
from config import parse_config
from conftest import run_script
from sql_rlvr import errors, traces
from sql_rlvr.execution_reward import score_completion
from sql_rlvr.extract import final_sql, split_reasoning

OPENER = "<think>\n"
# (opener, thinking): an instruct template, Qwen3's hybrid one with thinking on, one that opens <think> itself
TEMPLATES = {"instruct": ("", False), "hybrid": ("", True), "opens_think": (OPENER, True)}


def smoke_cfg(*argv: str):
    cfg, _ = parse_config(["--preset", "smoke", "--reasoning", "true", "--max_train_examples", "4", *argv])
    return cfg


@pytest.fixture(scope="module")
def train():
    """The 4 training questions of smoke_cfg(), with their datasets."""
    cfg = smoke_cfg()
    datasets = utils.open_training_datasets(cfg)
    return datasets, utils.training_examples(cfg, datasets)


def plain(ex, sql=None):
    return f"The question asks about {ex['db_id']}.\n\n```sql\n{sql or ex['query']}\n```"


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_answer_text_is_the_form_the_template_check_renders(template):
    opener, thinking = TEMPLATES[template]
    sql = "SELECT count(*) FROM singer"
    written = utils.check_answer(sql, opener, thinking and not opener)  # what check_chat_template proves verbatim
    assert traces.answer_text(opener + written, opener, thinking) == written  # a fixpoint: trained as generated
    assert traces.answer_text(f"\n{written}  \n", opener, thinking) == written  # a file that left the opener out
    moved = traces.answer_text("Count the singers.\n\n```sql\nSELECT count(*) FROM singer\n```", opener, thinking)
    if thinking:  # plain reasoning moves into the think block, the final block follows it
        assert moved == ("" if opener else "<think>\n") + f"Count the singers.\n</think>\n\n```sql\n{sql}\n```"
    else:
        assert moved == f"Count the singers.\n\n```sql\n{sql}\n```"
    assert final_sql(moved, True, opener) == sql
    # no final query, a cut block, a think block never closed, two think blocks: nothing to train
    for bad in ("I would count the singers.", "Count.\n```sql\nSELECT count(*) FROM", "<think>\nCount.\n```sql\nSELECT 1\n```",
                "<think>a</think><think>b</think>\n```sql\nSELECT 1\n```", "Hi <think>a</think>\n```sql\nSELECT 1\n```", ""):
        assert traces.answer_text(bad, opener, thinking) is None, bad
    assert split_reasoning("<think>\nWhy.\n</think>\n\nSELECT 1") == ("\nWhy.\n", "\n\nSELECT 1")


def write_traces(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_a_trace_file_keeps_only_the_verified_traces_with_the_right_counts(template, train, tmp_path):
    opener, thinking = TEMPLATES[template]
    datasets, examples = train
    a, b, c = examples[:3]
    right_a = plain(a)
    right_b = f"<think>\nAuthors from the UK.\n</think>\n\n```sql\n{b['query']}\n```"
    records = [
        {"db_id": a["db_id"], "question": a["question"], "completion": right_a, "model": "teacher"},  # kept
        {"db_id": b["db_id"], "question": " ".join(b["question"].split()) + " ", "completion": right_b},  # kept
        {"db_id": a["db_id"], "question": a["question"], "completion": right_a + "\n"},  # duplicate
        {"db_id": a["db_id"], "question": a["question"], "completion": "Or so.\n" + right_a},  # right, over the cap
        {"db_id": c["db_id"], "question": c["question"], "completion": plain(c, "SELECT 1")},  # wrong result
        {"db_id": c["db_id"], "question": c["question"], "completion": "Songs.\n```sql\nSELECT avg(Dur"},  # cut: unparseable
        {"db_id": c["db_id"], "question": c["question"], "completion": "I am not sure."},  # no query: unparseable
        {"db_id": "no_such_db", "question": a["question"], "completion": right_a},  # unmatched
        {"db_id": a["db_id"], "question": "What is not asked?", "completion": right_a},  # unmatched
    ]
    loaded, digest = traces.read_traces(write_traces(tmp_path / "t.jsonl", records))
    assert digest == hashlib.sha256((tmp_path / "t.jsonl").read_bytes()).hexdigest()
    reward = traces.trace_reward(smoke_cfg(), opener)
    try:
        chosen, counts = traces.select_traces(loaded, examples, datasets, reward, opener, thinking, per_question=1)
        assert counts == {"records": 9, "unmatched": 2, "duplicates": 1, "unparseable": 2, "wrong": 1, "over_cap": 1,
                          "kept": 2, "questions": 2}
        assert [(ex["question"], line) for ex, _, line in chosen] == [(a["question"], 1), (b["question"], 2)]
        for ex, text, _ in chosen:  # each kept text, scored again on its own, gives the gold result
            sql = final_sql(text, True, opener)
            assert sql == ex["query"]
            assert score_completion(f"```sql\n{sql}\n```", ex["query"], datasets["spider"].db_path(ex["db_id"]))[1] == "match"
            if thinking:  # one think block, opened by the template or by the answer itself
                assert text.count("</think>") == 1 and text.startswith("<think>\n") == (not opener)
        _, two = traces.select_traces(loaded, examples, datasets, reward, opener, thinking, per_question=2)
        assert (two["kept"], two["over_cap"]) == (3, 0)  # the cap was the only reason left
    finally:
        reward.close()


def test_a_bad_trace_file_is_one_line_naming_the_file_and_the_line(tmp_path):
    good = {"db_id": "d", "question": "q", "completion": "c"}
    cases = {
        "missing.jsonl": (None, "no such file"),
        "not_json.jsonl": ([good, "{not json"], "line 2: not JSON"),
        "list.jsonl": ([good, "", [1, 2]], "line 3: a JSON list"),
        "no_completion.jsonl": ([{"db_id": "d", "question": "q"}], "line 1: no completion"),
        "number.jsonl": ([{"db_id": 3, "question": "q", "completion": "c"}], "line 1: no db_id"),
        "empty.jsonl": ([], "holds no trace"),
    }
    for name, (records, expected) in cases.items():
        path = tmp_path / name
        if records is not None:
            write_traces(path, records)
        with pytest.raises(errors.DataError) as err:
            traces.read_traces(path)
        assert str(path) in str(err.value) and expected in str(err.value) and "\n" not in str(err.value), err.value
    # a JSON writer leaves U+2028 unescaped inside a string: still one record
    write_traces(tmp_path / "sep.jsonl", [json.dumps({**good, "completion": "a\u2028b"}, ensure_ascii=False)])
    assert traces.read_traces(tmp_path / "sep.jsonl")[0][0].completion == "a\u2028b"


@pytest.mark.parametrize("argv, expected", [
    (["--reasoning", "true"], "pass --sft_traces FILE"),
    (["--sft_traces", "x.jsonl"], "add --reasoning true"),
    (["--reasoning", "true", "--sft_traces", "x.jsonl", "--max_tool_calls", "2"], "no agentic mode"),
    (["--reasoning", "true", "--sft_traces", "{tmp}/missing.jsonl"], "missing.jsonl: no such file"),
    (["--reasoning", "true", "--sft_traces", "{tmp}/bad.jsonl"], "bad.jsonl line 2: not JSON"),
])
def test_sft_with_reasoning_stops_in_one_line_before_loading_a_model(argv, expected, tmp_path):
    write_traces(tmp_path / "bad.jsonl", [{"db_id": "d", "question": "q", "completion": "c"}, "oops"])
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    result = run_script("train_sft.py", "--preset", "smoke", "--output_dir", str(tmp_path / "out"), *argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0, result.stderr
    assert expected in result.stderr
    if argv == ["--reasoning", "true"]:  # it says what to do: the self-trace command, or a teacher's file
        assert "evaluate.py --self_traces" in result.stderr and "teacher" in result.stderr
    assert not (tmp_path / "out" / "sft").exists()  # nothing written


def test_verified_samples_are_exactly_the_answers_that_give_the_gold_result(train):
    datasets, examples = train
    a, b = examples[:2]
    samples = [(a, 0, plain(a)), (a, 1, plain(a, "SELECT 1")), (b, 0, "Authors.\n```sql\nSELECT Name FROM"),
               (b, 1, OPENER + f"UK authors.\n</think>\n\n```sql\n{b['query']}\n```"), (b, 2, "")]
    for template, (opener, thinking) in TEMPLATES.items():
        reward = traces.trace_reward(smoke_cfg(), opener)
        try:
            records, results = traces.verified_samples(samples, datasets, reward, opener, thinking)
        finally:
            reward.close()
        assert results[0] == "match" and results[1] in ("wrong", "partial") and results[2:5:2] == ["no_answer"] * 2
        assert results[3] == "match"
        assert [(r["question"], r["sample"], r["sql"]) for r in records] == [(a["question"], 0, a["query"]),
                                                                             (b["question"], 1, b["query"])], template
        assert [r["completion"] for r in records] == [samples[0][2], samples[3][2]]  # the whole answer, as sampled


@pytest.mark.slow
def test_the_self_trace_command_writes_exactly_the_samples_that_verify(tmp_path, train):
    out = tmp_path / "traces.jsonl"
    argv = ["--preset", "smoke", "--reasoning", "true", "--max_train_examples", "4", "--num_samples", "3",
            "--max_completion_length", "24", "--adapter", "none"]
    result = run_script("evaluate.py", "--self_traces", str(out), *argv)
    assert result.returncode == 0, result.stderr[-3000:]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    summary = next(line for line in result.stdout.splitlines() if "sampled answers verified" in line)
    assert summary.startswith(f"[traces] {len(written)} of 12 sampled answers verified")  # an empty yield: 0, empty file
    # The same samples again (the same seed), each scored on its own by the reward's function: the file holds
    # exactly those that give the gold result, in order, in the trace format train_sft.py reads.
    cfg, _ = parse_config(argv)
    datasets, examples = train
    samples, opener, _, _ = traces.sample_answers(cfg, None, datasets, examples)
    assert len(samples) == 12
    right = []
    for ex, j, completion in samples:
        sql = final_sql(completion, True, "")
        db = datasets["spider"].db_path(ex["db_id"])
        if sql and score_completion(f"```sql\n{sql}\n```", ex["query"], db)[1] == "match":
            right.append({"db_id": ex["db_id"], "question": ex["question"], "completion": completion, "sample": j})
    assert [{k: r[k] for k in ("db_id", "question", "completion", "sample")} for r in written] == right
    assert all(r["model"] == "tiny" and r["adapter"] is None and r["k"] == 3 for r in written)
    no_answer = sum(not final_sql(c, True, "") for _, _, c in samples)
    assert f" {no_answer} no answer (no final query)" in summary
    # an existing file is never replaced without --overwrite
    before = out.read_bytes()
    again = run_script("evaluate.py", "--self_traces", str(out), *argv)
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0 and "--overwrite" in again.stderr
    assert out.read_bytes() == before


@pytest.mark.hf_training
def test_sft_trains_on_the_verified_traces_and_records_the_file(tmp_path, train):
    datasets, examples = train
    a, b, c, _ = examples
    path = write_traces(tmp_path / "traces.jsonl", [
        {"db_id": a["db_id"], "question": a["question"], "completion": plain(a)},
        {"db_id": b["db_id"], "question": b["question"], "completion": plain(b)},
        {"db_id": b["db_id"], "question": b["question"], "completion": plain(b)},  # duplicate
        {"db_id": c["db_id"], "question": c["question"], "completion": plain(c, "SELECT 1")},  # wrong
        {"db_id": c["db_id"], "question": "Unknown?", "completion": plain(c)},  # unmatched
    ])
    argv = ["train_sft.py", "--preset", "smoke", "--reasoning", "true", "--max_train_examples", "4",
            "--sft_traces", str(path), "--sft_max_steps", "2", "--sft_batch_size", "2", "--output_dir", str(tmp_path)]
    result = run_script(*argv)
    assert result.returncode == 0, result.stderr[-3000:]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    line = next(x for x in result.stdout.splitlines() if x.startswith("[sft] traces"))
    assert f"(sha256 {digest[:12]}): 5 records: 2 kept for 2 of 4 training questions, 1 wrong, 0 unparseable" in line
    info = json.loads((tmp_path / "sft" / "run_info.json").read_text())
    assert info["sft_traces"] == {"path": str(path.resolve()), "sha256": digest, "traces_per_question": 1, "records": 5,
                                  "unmatched": 1, "duplicates": 1, "unparseable": 0, "wrong": 1, "over_cap": 0,
                                  "kept": 2, "questions": 2}
    assert info["sft_traces_sha256"] == digest and info["train_examples"] == 2 and info["global_step"] == 2
    run = json.loads((tmp_path / "sft" / "sql_rlvr_run.json").read_text())
    assert run["config"]["sft_traces_sha256"] == digest and run["config"]["traces_per_question"] == 1
    # The file's content is part of the run: a finished run resumed with another file says so in one line.
    assert run_script(*argv, "--resume").returncode == 0  # the same file: finished, exit 0
    path.write_text(path.read_text() + json.dumps({"db_id": c["db_id"], "question": c["question"], "completion": plain(c)}))
    changed = run_script(*argv, "--resume")
    assert changed.returncode == 2 and "another --sft_traces file" in changed.stderr, changed.stderr[-2000:]
    assert changed.stderr.strip().count("\n") == 0


def test_a_gold_query_that_fails_stops_the_self_trace_command_before_any_sampling(tmp_path):
    # Hours of sampling must not end in an error: every gold query runs first (here one is broken, as a missing
    # database would make it fail), and nothing is written.
    import shutil

    from config import MINI_SPIDER_DIR

    spider_dir = tmp_path / "spider"
    shutil.copytree(MINI_SPIDER_DIR, spider_dir)
    train = json.loads((spider_dir / "train_spider.json").read_text())
    train[0]["query"] = "SELECT no_such_column FROM student"
    (spider_dir / "train_spider.json").write_text(json.dumps(train))
    out = tmp_path / "traces.jsonl"
    result = run_script("evaluate.py", "--preset", "smoke", "--spider_dir", str(spider_dir), "--self_traces", str(out),
                        "--num_samples", "2", "--reasoning", "true", "--adapter", "none")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0 and "no_such_column" in result.stderr
    assert "gold query of 1 of 48 training questions fails" in result.stderr
    assert "[traces] backend=" not in result.stdout and not out.exists()  # no model loaded, nothing written
