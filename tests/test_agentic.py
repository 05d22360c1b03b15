"""The agentic mode (--max_tool_calls N) on real parts: the tool on the shipped mini-Spider's SQLite
databases, the tiny Qwen3 on Qwen3-4B-Instruct-2507's own chat template, TRL's tool loop and parser,
the SFT and GRPO trainers, and evaluation end to end (hf here; the unsloth CPU backend at the end)."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sql_rlvr import agent
import utils
from config import parse_config
from conftest import ROOT, run_script
from sql_rlvr.errors import UserError
from sql_rlvr.sandbox import execute_sql
from sql_rlvr.sql_tool import LAST_CALL_NOTE, SQLTool, result_text

# The project's chat as the tiny model's former plain ChatML template rendered it (before it took Qwen's).
PLAIN_CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
AGENTIC = ["--preset", "smoke", "--max_tool_calls", "2"]


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def first_example(spider, split="train"):
    ex = spider.examples(split)[0]
    return ex, utils.build_messages(spider.schema(ex["db_id"]), ex["question"]), str(spider.db_path(ex["db_id"]))


# ---------------------------------------------------------------- the tool


def test_the_tool_shows_columns_and_the_first_rows_and_never_a_traceback(spider):
    db = spider.db_path(spider.examples("dev")[0]["db_id"])
    before = sha(db)
    tool = SQLTool(timeout_s=0.5, max_rows=3, workers=1)
    try:
        ok, many, bad, drop, attach, stall, empty = tool.run([
            (str(db), "SELECT count(*) AS n FROM department"),
            (str(db), "SELECT name FROM sqlite_master"),
            (str(db), "SELECT nope FROM department"),
            (str(db), "DROP TABLE department"),
            (str(db), "ATTACH DATABASE '/tmp/x.sqlite' AS x"),
            # runs until the time limit: the tool answers with the sandbox's own text, within it
            (str(db), "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"),
            (str(db), "   "),
        ])
    finally:
        tool.close()
    n = execute_sql(db, "SELECT count(*) FROM department").rows[0][0]
    assert ok.outcome == "ok" and ok.text == f"n\n{n}\n(1 row)" and ok.rows == 1 and ok.rows_shown == 1
    tables = execute_sql(db, "SELECT name FROM sqlite_master").rows
    assert len(tables) > 3 and many.rows == len(tables) and many.rows_shown == 3
    assert many.text.splitlines() == ["name"] + [t[0] for t in tables[:3]] + [f"(3 of {len(tables)} rows shown)"]
    assert bad.outcome == "error" and bad.text == "error: no such column: nope"
    assert drop.outcome == "refused" and attach.outcome == "refused" and drop.text.startswith("error: ")
    assert stall.outcome == "timeout" and stall.text.startswith("error: ") and stall.seconds < 5
    assert empty.outcome == "bad_call"
    for call in (ok, many, bad, drop, attach, stall, empty):
        assert "Traceback" not in call.text
    assert sha(db) == before  # nothing is ever written


def test_result_text_is_compact_and_bounded():
    text = result_text(["a", "b"], [(1, "x" * 500), (None, "two\nlines")], 10)
    assert text.splitlines() == ["a | b", "1 | " + "x" * 57 + "...", "NULL | two lines", "(2 rows)"]


def test_the_budget_ends_with_a_last_turn_and_later_calls_are_not_run(spider):
    ex, _, db = first_example(spider)
    env = agent.SQLEnvironment(SQLTool(2.0, 10, workers=0), max_calls=2)
    env.reset(db_path=db, gold_sql=ex["query"], prompt=[])  # TRL passes the whole row
    first = env.execute_sql(ex["query"])
    second = env.execute_sql(ex["query"])
    third = env.execute_sql("SELECT 1")
    assert not first.endswith(LAST_CALL_NOTE) and second.endswith("\n" + LAST_CALL_NOTE)
    assert third == f"error: {LAST_CALL_NOTE}"
    assert [c.outcome for c in env.calls] == ["ok", "ok", "budget"]
    # A call TRL's parser reads with the wrong argument gets TRL's own error text, not a traceback.
    text = agent.run_tool_call(env, {"type": "function", "function": {"name": "execute_sql", "arguments": {"sql": "x"}}})
    assert text.startswith("{'error':") and "sql" in text


# ---------------------------------------------------------------- the chat template


def test_without_tools_the_qwen_template_renders_the_chat_as_before(tiny_tokenizer, spider):
    """--max_tool_calls 0: the tiny model's new template (Qwen3-Instruct-2507's) renders every stage's
    chat exactly as the plain ChatML template it replaces."""
    for ex in spider.examples("dev")[:5]:
        chat = utils.build_messages(spider.schema(ex["db_id"]), ex["question"], ex["query"])
        for kwargs in (dict(tokenize=False), dict(tokenize=False, add_generation_prompt=True)):
            msgs = chat if "add_generation_prompt" not in kwargs else chat[:-1]
            assert (tiny_tokenizer.apply_chat_template(msgs, **kwargs)
                    == tiny_tokenizer.apply_chat_template(msgs, chat_template=PLAIN_CHATML, **kwargs))
            assert "<tools>" not in tiny_tokenizer.apply_chat_template(msgs, **kwargs)


def test_a_template_without_tool_support_is_one_line_naming_the_model(tiny_model_dir):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(tiny_model_dir)
    plain.chat_template = PLAIN_CHATML
    with pytest.raises(UserError, match="chat template of some/model cannot render tool calls"):
        agent.check_tool_template(plain, "some/model")
    # Renders tools, but TRL's parser does not know the template: also one line, naming the model.
    unknown = AutoTokenizer.from_pretrained(tiny_model_dir)
    unknown.chat_template = unknown.chat_template.replace("# Tools", "# Functions")
    with pytest.raises(UserError, match="TRL cannot read tool calls in the chat template of other/model"):
        agent.check_tool_template(unknown, "other/model")


def test_sft_trajectory_learns_the_call_and_the_answer_never_the_tool_result(tiny_tokenizer, spider):
    ex, messages, db = first_example(spider)
    tool = SQLTool(2.0, 10, workers=0)
    ids, mask, calls = agent.sft_trajectory(tiny_tokenizer, messages, ex["query"], db, tool, 2, {})
    learned = tiny_tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert learned == ('<tool_call>\n{"name": "execute_sql", "arguments": {"query": ' + json.dumps(ex["query"])
                       + '}}\n</tool_call><|im_end|>' + ex["query"] + "<|im_end|>")
    masked = tiny_tokenizer.decode([t for t, m in zip(ids, mask) if not m])
    gold = execute_sql(db, ex["query"])
    assert calls[0].outcome == "ok" and calls[0].rows == len(gold.rows)
    assert f"<tool_response>\n{calls[0].text}\n</tool_response>" in masked  # the real result, with no loss
    assert str(gold.rows[0][0]) in calls[0].text


@pytest.mark.both_lanes
def test_training_and_rollouts_and_evaluation_build_the_same_tokens(tiny_model_dir, tiny_tokenizer, spider, tmp_path):
    """TRL's GRPO tool loop tokenizes the first prompt and appends tool results with its own code: for the
    same calls it must give exactly the tokens SFT trains on and evaluation generates from."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    ex, messages, db = first_example(spider)
    tool = SQLTool(2.0, 10, workers=0)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
        args=GRPOConfig(output_dir=str(tmp_path), bf16=False, per_device_train_batch_size=2, num_generations=2,
                        max_steps=1, max_completion_length=64, max_tool_calling_iterations=2, report_to=[]),
        train_dataset=Dataset.from_list([{"prompt": messages, "db_path": db}] * 2), processing_class=tiny_tokenizer,
        environment_factory=lambda: agent.SQLEnvironment(tool, 2))
    trainer._batch_environments = [None]
    trl_prompt = trainer._tokenize_prompts([messages])[0][0]
    assert list(trl_prompt) == agent.prompt_ids(tiny_tokenizer, messages, {})
    result = [{"role": "tool", "name": "execute_sql", "content": "n\n3\n(1 row)"}]
    assert trainer._get_tool_suffix_ids(result) == agent.tool_suffix_ids(tiny_tokenizer, result, {})
    # SFT's trajectory is the prompt + the call turn + TRL's suffix + the answer turn, token for token.
    ids, mask, calls = agent.sft_trajectory(tiny_tokenizer, messages, ex["query"], db, tool, 2, {})
    call_turn = agent.assistant_turn_ids(tiny_tokenizer, messages, agent.call_message(ex["query"]), {},
                                         tools=agent.tool_schemas())
    suffix = trainer._get_tool_suffix_ids([{"role": "tool", "name": "execute_sql", "content": calls[0].text}])
    assert ids[:len(trl_prompt) + len(call_turn) + len(suffix)] == list(trl_prompt) + call_turn + suffix
    # TRL's parser reads the call turn back as the call SFT taught.
    parsed = agent.parse_turn(tiny_tokenizer, call_turn, prefix=list(trl_prompt))
    assert parsed["tool_calls"][0]["function"]["arguments"] == {"query": ex["query"]}


def test_tool_mode_sizes_its_lengths_and_zero_leaves_every_default():
    base, _ = parse_config(["--preset", "smoke"])
    plain, _ = parse_config(["--preset", "smoke", "--max_tool_calls", "0"])
    assert plain == base
    from config import TOOL_CALL_TOKENS

    two, _ = parse_config(AGENTIC)
    assert two.max_completion_length == base.max_completion_length + 2 * TOOL_CALL_TOKENS
    assert two.max_seq_length == base.max_seq_length + 2 * TOOL_CALL_TOKENS
    given, _ = parse_config(AGENTIC + ["--max_completion_length", "300"])
    assert given.max_completion_length == 300


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.both_lanes
def test_evaluation_in_the_agentic_mode_runs_on_the_installed_trl(tmp_path):
    """The command that died on trl 1.15 (the GPU set) at its first question, with parse_response's `tools`
    argument that only trl 1.16 has: both lanes of `make test` run it."""
    result = run_script("evaluate.py", "--preset", "smoke", "--max_tool_calls", "1", "--adapter", "none",
                        "--max_eval_examples", "2", "--output_dir", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    metrics = json.loads(next((tmp_path / "eval").rglob("metrics.json")).read_text())
    assert metrics["max_tool_calls"] == 1 and metrics["examples"] == 2


@pytest.fixture(scope="module")
def agentic(tmp_path_factory):
    """SFT with --max_tool_calls 2, then evaluation (greedy + 2 sampled, voted) and GRPO with --eval_steps."""
    out = tmp_path_factory.mktemp("agentic")
    # Batches of 4: a trajectory is about twice a direct answer's length (820 tokens). 300 steps of 4 (75% of the
    # preset's 200 of 8) leave 14 of 17 dev answers calling the database; the test needs 9 (240 steps: 10; measured).
    stages = {
        "sft": ["train_sft.py", *AGENTIC, "--sft_batch_size", "4", "--sft_max_steps", "300", "--output_dir", str(out)],
        "eval": ["evaluate.py", "--adapter", "sft", "--num_samples", "2", *AGENTIC, "--output_dir", str(out)],
        "grpo": ["train_grpo.py", "--eval_steps", "2", *AGENTIC, "--output_dir", str(out)],
        # the same adapter answering directly (--max_tool_calls 0), for --compare
        "direct": ["evaluate.py", "--adapter", str(out / "sft"), "--preset", "smoke", "--output_dir", str(out / "direct")],
    }
    runs, seconds = {}, {}
    for stage, args in stages.items():
        start = time.time()
        runs[stage] = run_script(*args, timeout=900)
        seconds[stage] = round(time.time() - start, 1)
        assert runs[stage].returncode == 0, f"{stage} failed:\n{runs[stage].stdout[-3000:]}\n{runs[stage].stderr[-3000:]}"
    print(f"\nagentic smoke stages, seconds: {seconds}")
    return out, runs


def test_after_the_smoke_sft_the_tiny_model_queries_the_database_on_most_dev_questions(agentic, spider):
    out, runs = agentic
    records = [json.loads(line) for line in (out / "eval" / "sft" / "predictions.jsonl").read_text().splitlines()]
    executed = [r for r in records if any(c["outcome"] not in ("bad_call", "budget") for c in r["tool_calls"])]
    assert len(executed) > len(records) / 2, [r["answer"][:80] for r in records]
    dev = {ex["question"]: ex for ex in spider.examples("dev")}
    for record in executed:
        for call in record["tool_calls"]:
            assert set(call) >= {"sql", "outcome", "rows", "rows_shown", "text"}
            if call["outcome"] == "ok":  # what the model saw is the real database's answer to its query
                real = execute_sql(spider.db_path(dev[record["question"]]["db_id"]), call["sql"])
                assert call["rows"] == len(real.rows) and call["rows_shown"] == min(10, len(real.rows))
    metrics = json.loads((out / "eval" / "sft" / "metrics.json").read_text())
    assert metrics["max_tool_calls"] == 2
    assert metrics["tool_calls_mean"] == sum(len(r["tool_calls"]) for r in records) / len(records)
    assert 0 < metrics["answered_after_call"] <= 1 and "candidates_tool_calls_mean" in metrics
    # pred.txt holds the SQL of the final answers, as today
    assert len((out / "eval" / "sft" / "pred.txt").read_text().splitlines()) == len(records)
    candidates = [json.loads(line) for line in (out / "eval" / "sft" / "candidates.jsonl").read_text().splitlines()]
    assert all("tool_calls" in c for q in candidates for c in q["candidates"])
    assert [q["candidates"][0]["tool_calls"] for q in candidates] == [r["tool_calls"] for r in records]


def test_grpo_rollouts_run_real_calls_and_log_the_tool_numbers(agentic, spider):
    out, runs = agentic
    import pandas as pd

    metrics = [json.loads(line) for line in (out / "grpo" / "metrics.jsonl").read_text().splitlines()]
    logged = [m for m in metrics if "tool_calls_mean" in m]
    assert logged and all("answered_after_call" in m for m in logged)
    assert any(m["tool_calls_mean"] > 0 for m in logged)
    assert "tool_calls_mean" in runs["grpo"].stdout and "eval/ex" in runs["grpo"].stdout
    assert any("eval/ex" in m for m in metrics)
    questions = {ex["question"]: ex for ex in spider.examples("train")}
    checked = 0
    for path in sorted((out / "grpo" / "completions").glob("*.parquet")):
        for _, row in pd.read_parquet(path).iterrows():
            user = next(m["content"] for m in row["prompt"] if m["role"] == "user")
            ex = questions[user.split("Question: ", 1)[1].split("\n")[0].strip()]
            turns = list(row["completion"])
            for call_turn, result in zip(turns, turns[1:]):
                if result["role"] != "tool" or call_turn["role"] != "assistant" or call_turn.get("tool_calls") is None:
                    continue
                sql = call_turn["tool_calls"][0]["function"]["arguments"]["query"]
                real = SQLTool(2.0, 10, workers=0).run([(str(spider.db_path(ex["db_id"])), sql)])[0]
                assert result["content"].split("\n" + LAST_CALL_NOTE)[0] == real.text
                checked += 1
    assert checked > 0  # some rollouts ran calls, answered from the real database


def test_compare_shows_the_tool_numbers(agentic):
    out, _ = agentic
    direct = next((out / "direct" / "eval").rglob("metrics.json"))
    result = run_script("evaluate.py", "--compare", str(direct), str(out / "eval" / "sft"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "calls/question" in result.stdout and "after a call" in result.stdout


def test_grpo_loss_mask_leaves_out_the_tool_results(agentic, spider, tmp_path):
    """A real rollout batch of TRL's GRPOTrainer with our environment and reward: the tool-result tokens
    are in the completion but out of the loss (tool_mask 0); the model's own turns are in it."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from sql_rlvr import execution_reward

    out, _ = agentic
    cfg, _ = parse_config(AGENTIC + ["--output_dir", str(out)])
    model, tokenizer = utils.load_model(cfg, "hf", adapter=out / "sft", trainable=True)
    tool = SQLTool(2.0, 10, workers=0)
    rows = [{"prompt": utils.build_messages(spider.schema(ex["db_id"]), ex["question"]), "gold_sql": ex["query"],
             "db_path": str(spider.db_path(ex["db_id"]))} for ex in spider.examples("train")[:2]]
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    trainer = GRPOTrainer(
        model=model, reward_funcs=[execution_reward.SQLExecutionReward(2.0, 0, tool_calls=True)],
        args=GRPOConfig(output_dir=str(tmp_path), bf16=False, per_device_train_batch_size=8, num_generations=4,
                        max_steps=1, max_completion_length=cfg.max_completion_length, temperature=0.7,
                        max_tool_calling_iterations=2, report_to=[], use_cpu=True),
        train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        environment_factory=lambda: agent.SQLEnvironment(tool, 2))
    batch = trainer._generate_and_score_completions([rows[0]] * 4 + [rows[1]] * 4)
    open_id, close_id = tokenizer.convert_tokens_to_ids(["<tool_response>", "</tool_response>"])
    results = 0
    for ids, mask, loss_mask in zip(batch["completion_ids"].tolist(), batch["tool_mask"].tolist(),
                                    batch["completion_mask"].tolist()):
        inside = False
        for token, in_loss, real in zip(ids, mask, loss_mask):
            if token == open_id:
                inside, results = True, results + 1
            if inside:
                assert in_loss == 0  # a tool result never carries loss
            if token == close_id:
                inside = False
        assert any(m and r for m, r in zip(mask, loss_mask))  # the model's own tokens do
    assert results > 0, "no rollout called the tool"


@pytest.mark.skipif(importlib.util.find_spec("unsloth") is None, reason="unsloth is not installed")
def test_unsloth_cpu_backend_runs_the_agentic_mode(agentic, tmp_path):
    """SFT (a few steps, pre-tokenized trajectories through unsloth's SFTTrainer), GRPO on TRL's tool loop
    inside unsloth's trainer, and evaluation, on unsloth's CPU backend with --fast_inference false. It
    needs the hf-trained agentic adapter (one that makes calls), so it runs in the CPU set's lane."""
    out, _ = agentic
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UNSLOTH_")}
    unsloth = AGENTIC + ["--backend", "unsloth", "--fast_inference", "false", "--output_dir", str(tmp_path)]

    def run(*args):
        return subprocess.run([sys.executable, *args, *unsloth], cwd=ROOT, capture_output=True, text=True,
                              timeout=900, env=clean)

    sft = run("train_sft.py", "--sft_max_steps", "4")
    assert sft.returncode == 0, sft.stdout[-2000:] + sft.stderr[-3000:]
    assert "no GPU found, training on CPU" in sft.stdout + sft.stderr
    # GRPO and evaluation from the hf-trained agentic adapter (which makes calls), copied in.
    import shutil

    shutil.rmtree(tmp_path / "sft")
    shutil.copytree(out / "sft", tmp_path / "sft", ignore=shutil.ignore_patterns("checkpoint-*"))
    grpo = run("train_grpo.py", "--grpo_max_steps", "2")  # two steps and 8 questions: the mode runs, fewer seconds
    assert grpo.returncode == 0, grpo.stdout[-2000:] + grpo.stderr[-3000:]
    assert "tool_calls_mean" in grpo.stdout
    ev = run("evaluate.py", "--adapter", "grpo", "--max_eval_examples", "8")
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "grpo" / "metrics.json").read_text())
    assert metrics["backend"] == "unsloth" and metrics["tool_calls_mean"] > 0


class VLLMStandIn:
    """vLLM needs CUDA: a stand-in for unsloth's `fast_generate` and `load_lora` that records every request
    (the prompt's token ids, its SamplingParams, the LoRA request) and answers with `respond(prompt_ids,
    params) -> (token ids, finish_reason)`. Like vLLM it leaves the stop token out of the ids."""

    def __init__(self, tokenizer, respond):
        from transformers import GenerationConfig

        self.generation_config = GenerationConfig(eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>")])
        self.respond = respond
        self.requests: list[tuple[list[int], dict, object]] = []  # one per prompt, as vLLM receives them
        self.loras: list[str] = []

    def load_lora(self, path):
        self.loras.append(path)
        return ("lora_request", len(self.loras), path)  # unsloth_zoo: a new request id on every call

    def fast_generate(self, prompts, sampling_params, lora_request, use_tqdm=True):
        import types

        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        assert len(params) == len(prompts)
        outs = []
        for prompt, p in zip(prompts, params):
            self.requests.append((prompt["prompt_token_ids"], p, lora_request))
            children = []
            for j in range(p["n"]):  # vLLM seeds the n children of a request seed + j
                child = dict(p, n=1, seed=None if p["seed"] is None else p["seed"] + j)
                ids, reason = self.respond(prompt["prompt_token_ids"], child)
                children.append(types.SimpleNamespace(token_ids=ids, finish_reason=reason, stop_reason=None))
            outs.append(types.SimpleNamespace(outputs=children))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    """`vllm.SamplingParams` as a plain dict maker (the real module needs CUDA)."""
    import types

    import trl.chat_template_utils  # noqa: F401  (before the stand-in: TRL probes for vllm when imported)

    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", vllm)


def call_turn(tokenizer, sql: str) -> list[int]:
    """A turn that calls the tool with `sql`, as the model generates it (without the stop token)."""
    return agent.assistant_turn_ids(tokenizer, [{"role": "user", "content": "x"}], agent.call_message(sql), {},
                                    agent.tool_schemas())[:-1]


def dev_chats(spider, n=3):
    examples = spider.examples("dev")[:n]
    return (examples, [utils.build_messages(spider.schema(ex["db_id"]), ex["question"]) for ex in examples],
            [str(spider.db_path(ex["db_id"])) for ex in examples])


def test_the_vllm_path_batches_each_turn_with_the_adapter(tiny_tokenizer, spider, fake_vllm, tmp_path):
    """What the loop hands vLLM each turn (every open conversation's token ids, the adapter's LoRA request)
    and how it reads the outputs (a stop token vLLM leaves out of the ids is put back, so the next turn's
    prefix is right)."""
    examples, messages, dbs = dev_chats(spider)
    response = tiny_tokenizer.convert_tokens_to_ids("<tool_response>")

    def respond(prompt, params):
        if response in prompt:
            return tiny_tokenizer(examples[0]["query"], add_special_tokens=False)["input_ids"], "stop"
        return call_turn(tiny_tokenizer, examples[0]["query"]), "stop"

    model = VLLMStandIn(tiny_tokenizer, respond)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"x")
    tool = SQLTool(2.0, 10, workers=0)
    trajectories = agent.answer_with_tools(model, tiny_tokenizer, "unsloth", messages, dbs, tool=tool, max_calls=2,
                                           template_kwargs={}, adapter_dir=str(tmp_path), max_new_tokens=600,
                                           max_seq_length=4096, fast_inference=True)
    assert len(model.requests) == 6 and model.loras == [str(tmp_path)]
    assert all(lora == ("lora_request", 1, str(tmp_path)) for _, _, lora in model.requests)
    first, second = [r[0] for r in model.requests[:3]], [r[0] for r in model.requests[3:]]
    assert first == [agent.prompt_ids(tiny_tokenizer, m, {}) for m in messages]  # one batch: every question
    for prompt, prefix, t in zip(second, first, trajectories):  # the next turn: prompt + call + result, as tokens
        assert prompt[:len(prefix)] == prefix
        assert tiny_tokenizer.decode(prompt[len(prefix):]).startswith("<tool_call>")
        assert f"<tool_response>\n{t.calls[0].text}\n</tool_response>" in tiny_tokenizer.decode(prompt)
        assert t.answer == examples[0]["query"] and t.ended == "answer" and len(t.calls) == 1
    assert agent.call_stats(trajectories) == {"tool_calls_mean": 1.0, "answered_after_call": 1.0}


def test_one_lora_request_serves_every_turn_until_the_adapter_changes(tiny_tokenizer, spider, fake_vllm, tmp_path):
    """unsloth_zoo's load_lora makes a new request (new id) per call, and vLLM's prefix cache keys include
    the LoRA: one request for all turns of greedy and sampled answers, a new one when the adapter is rewritten."""
    examples, messages, dbs = dev_chats(spider, 2)
    response = tiny_tokenizer.convert_tokens_to_ids("<tool_response>")
    model = VLLMStandIn(tiny_tokenizer, lambda prompt, p: (
        tiny_tokenizer("SELECT 1", add_special_tokens=False)["input_ids"] if response in prompt
        else call_turn(tiny_tokenizer, "SELECT 1"), "stop"))
    adapter = tmp_path / "adapter_model.safetensors"
    adapter.write_bytes(b"weights v1")
    options = dict(tool=SQLTool(2.0, 10, workers=0), max_calls=2, template_kwargs={}, adapter_dir=str(tmp_path),
                   max_new_tokens=600, max_seq_length=4096, fast_inference=True)
    agent.answer_with_tools(model, tiny_tokenizer, "unsloth", messages, dbs, **options)
    agent.answer_with_tools(model, tiny_tokenizer, "unsloth", messages, dbs, temperature=1.0, num_return_sequences=2,
                            seed=3, **options)
    assert len(model.requests) == 2 * 2 + 2 * 1 + 4 and len(model.loras) == 1
    assert len({lora for _, _, lora in model.requests}) == 1
    adapter.write_bytes(b"weights v2, retrained")  # --eval_steps saves the live adapter into the same folder
    agent.answer_with_tools(model, tiny_tokenizer, "unsloth", messages, dbs, **options)
    assert len(model.loras) == 2 and model.requests[-1][2] == ("lora_request", 2, str(tmp_path))


def test_sampled_conversations_stay_independent_after_their_first_turn(tiny_tokenizer, spider, fake_vllm):
    """Sibling candidates whose first turns coincide (the same call, the same result) must still sample their
    own continuations: vLLM seeds each request's sampler with its SamplingParams seed, so every conversation
    gets its own seed in every round, reproducibly from --seed."""
    examples, messages, dbs = dev_chats(spider, 2)
    response = tiny_tokenizer.convert_tokens_to_ids("<tool_response>")

    def respond(prompt, params):  # a seeded sampler: the same seed and prompt give the same tokens, as vLLM's
        if response in prompt:
            return tiny_tokenizer(f"SELECT {params['seed']}", add_special_tokens=False)["input_ids"], "stop"
        return call_turn(tiny_tokenizer, "SELECT count(*) FROM department"), "stop"  # every sibling: the same call

    def candidates(seed):
        model = VLLMStandIn(tiny_tokenizer, respond)
        trajectories = agent.answer_with_tools(model, tiny_tokenizer, "unsloth", messages, dbs,
                                               tool=SQLTool(2.0, 10, workers=0), max_calls=2, template_kwargs={},
                                               adapter_dir=None, max_new_tokens=600, max_seq_length=4096,
                                               temperature=1.0, num_return_sequences=4, seed=seed, fast_inference=True)
        return [t.answer for t in trajectories], model.requests

    answers, requests = candidates(7)
    assert len(set(answers)) == 8, answers  # 2 questions x 4 candidates, each its own continuation
    later = [p["seed"] for prompt, p, _ in requests if response in prompt]
    assert len(later) == 8 and len(set(later)) == 8
    assert candidates(7)[0] == answers and candidates(8)[0] != answers  # reproducible from --seed


def test_a_final_turn_cut_off_inside_a_call_is_no_answer(tiny_tokenizer, spider, fake_vllm):
    """TRL's parser hands a call that does not parse back as plain text; a final turn that opened a call and
    did not end it is no answer (-2.0 in GRPO, wrong in evaluation), never its query scored as the SQL."""
    from sql_rlvr import execution_reward

    examples, messages, dbs = dev_chats(spider, 1)
    whole = call_turn(tiny_tokenizer, "SELECT count(*) FROM department")
    cut = next(whole[:k] for k in range(len(whole))  # the length limit, mid-call: the query written, the call open
               if "FROM department" in tiny_tokenizer.decode(whole[:k]))
    prefix = agent.prompt_ids(tiny_tokenizer, messages[0], {})
    parsed = agent.parse_turn(tiny_tokenizer, cut, prefix=prefix)
    assert not parsed.get("tool_calls") and "SELECT count(*) FROM department" in parsed["content"]  # TRL's fallback
    model = VLLMStandIn(tiny_tokenizer, lambda prompt, p: (cut, "length"))
    [trajectory] = agent.answer_with_tools(model, tiny_tokenizer, "unsloth", messages, dbs,
                                           tool=SQLTool(2.0, 10, workers=0), max_calls=2, template_kwargs={},
                                           adapter_dir=None, max_new_tokens=600, max_seq_length=4096,
                                           fast_inference=True)
    assert trajectory.answer == "" and trajectory.ended == "unfinished_call" and not trajectory.calls
    # GRPO: the same turn as TRL's loop hands it to the reward, after a real call, is the empty answer's -2.0.
    db = dbs[0]
    reward = execution_reward.SQLExecutionReward(2.0, 0, tool_calls=True)
    gold = "SELECT count(*) FROM department"
    completion = [{"role": "assistant", "content": "", "tool_calls": [agent.call_message(gold)["tool_calls"][0]]},
                  {"role": "tool", "name": "execute_sql", "content": "count(*)\n15\n(1 row)"},
                  {"role": "assistant", "content": parsed["content"]}]
    answered = [{"role": "assistant", "content": gold}]
    assert reward([None, None], [completion, answered], [gold, gold], [db, db]) == [-2.0, 5.0]
    assert reward.pop_metrics()["outcome/empty"] == 0.5
