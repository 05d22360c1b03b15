"""The agentic mode (--max_tool_calls N): the model may run SQL on the question's own database
(sql_tool.py) up to N times before its final answer, whose SQL is what is rewarded, scored and voted.

  protocol     the tool schema the chat template renders; calls read out of a turn by TRL's own parser
               (parse_response), so GRPO and evaluation read them alike; check_tool_template
  tokens       built as TRL's GRPO tool loop builds them: prompt + the model's turn + the tool results'
               suffix (tool_suffix_ids), so SFT, GRPO and evaluation see the same tokens for the same calls
  SFT          sft_trajectory: a call that runs the gold query, its real result, then the answer; the
               loss on the model's turns only
  GRPO         SQLEnvironment, one per rollout (TRL's environment_factory), bound to the row's database
  evaluation   answer_with_tools: batched multi-turn generation for greedy and sampled answers, hf and
               vLLM (utils.generate_ids), also used by --eval_steps and the pass-rate filter
  either mode  where the direct and the agentic mode part, for every caller: checked_template_kwargs (the
               template checks), model_prompts (a chat as the model is prompted with it, its length, which
               fit) and answers (the answer texts)

A call beyond the budget is not run (its result says so); the result of the call that uses up the
budget ends with sql_tool.LAST_CALL_NOTE, so the turn after it is the answer. A malformed call (unknown
tool, wrong arguments) uses none of the budget, in GRPO and evaluation alike. Imports config, errors,
progress, sql_tool and utils; TRL and transformers inside functions only (unsloth comes first when used).
"""

from __future__ import annotations

import copy
import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any

import utils
from sql_rlvr.extract import opens_tool_call
from sql_rlvr.errors import UserError
from sql_rlvr.progress import Report, as_report, duration, lines_wanted
from sql_rlvr.sql_tool import LAST_CALL_NOTE, TOOL_NAME, SQLTool, ToolCall


class SQLEnvironment:
    """One conversation's database and its calls (TRL's environment_factory makes one per rollout:
    reset(**row) binds it to the row's `db_path`). Its only public method is the tool."""

    def __init__(self, tool: SQLTool | None, max_calls: int) -> None:
        self._tool, self._max_calls = tool, max_calls
        self.db_path: str | None = None
        self.calls: list[ToolCall] = []  # every call, malformed ones included (run_tool_call records those)
        # Calls that used the budget: only those that reached this tool well formed. TRL's loop answers a
        # malformed call itself, before any environment sees it; evaluation must count alike.
        self.budget_used = 0

    def reset(self, db_path: str | None = None, **_row: Any) -> None:
        self.db_path, self.calls, self.budget_used = db_path, [], 0

    def execute_sql(self, query: str) -> str:
        """Run one read-only SQLite query on the question's database and see its result: the column names and the first rows, or the error message.

        Args:
            query: One SQLite SELECT query.
        """
        if not isinstance(query, str):  # a malformed call: the caller's handler answers it, as TRL's does
            raise TypeError(f"execute_sql: query must be a string, not {type(query).__name__}")
        if self.budget_used >= self._max_calls:
            call = ToolCall(query, "budget", None, 0, f"error: {LAST_CALL_NOTE}")
        else:
            self.budget_used += 1
            if self._tool is None or self.db_path is None:
                call = ToolCall(query, "error", None, 0, "error: no database")
            else:
                call = self._tool.run([(self.db_path, query)])[0]
            if self.budget_used == self._max_calls:
                call.text += "\n" + LAST_CALL_NOTE
        self.calls.append(call)
        return call.text


@functools.cache
def _tool_schema() -> dict:
    from transformers.utils import get_json_schema

    return get_json_schema(SQLEnvironment(None, 0).execute_sql)


def tool_schemas() -> list[dict]:
    """The tools as the chat template renders them: exactly what GRPOTrainer derives from SQLEnvironment.
    Read from the docstring once (every prompt and every turn renders them); each caller gets its own copy."""
    return [copy.deepcopy(_tool_schema())]


def run_tool_call(env: SQLEnvironment, call: dict) -> str:
    """One parsed call as TRL's tool loop runs it: the tool's text, or {'error': ...} for a call it cannot make.
    Such a call is recorded in env.calls (bad_call) but uses none of the budget: in TRL's loop it never
    reaches the environment."""
    try:
        if call.get("type") != "function":
            raise ValueError(f"Unsupported tool call type: {call.get('type')}")
        function = call["function"]
        if function.get("name") != TOOL_NAME:
            raise ValueError(f"Tool {function.get('name')} not found.")
        return str(env.execute_sql(**function["arguments"]))  # as TRL calls it: the same errors, the same texts
    except Exception as exc:  # TRL's loop turns the same failures into this text
        env.calls.append(ToolCall(str(call)[:200], "bad_call", None, 0, str({"error": str(exc)})))
        return str({"error": str(exc)})


# ======================================================================
# protocol and tokens


def check_tool_template(tokenizer, model_name: str, template_kwargs: dict | None = None) -> None:
    """--max_tool_calls needs a chat template that renders tool calls and results, whose calls TRL's parser
    reads, and which renders a conversation as a prefix of its continuation: one line naming the model
    otherwise."""
    from trl.chat_template_utils import (add_response_schema, is_chat_template_prefix_preserving,
                                         supports_tool_calling)

    where = f"the chat template of {model_name}"
    if not supports_tool_calling(tokenizer):
        raise UserError(f"--max_tool_calls: {where} cannot render tool calls and tool results (no tool support); "
                        "use a model with a tool-calling template (Qwen2.5/Qwen3, Llama 3.1/3.2, ...) or "
                        "--max_tool_calls 0")
    if getattr(tokenizer, "response_template", None) is None and getattr(tokenizer, "response_schema", None) is None:
        try:
            add_response_schema(tokenizer)
        except ValueError:
            raise UserError(f"--max_tool_calls: TRL cannot read tool calls in {where} (it parses only the "
                            "templates it knows: Qwen2.5, Qwen3, Qwen3-Instruct-2507, Llama 3.1/3.2, GLM-4, "
                            "GPT-OSS, ...); use such a model or --max_tool_calls 0") from None
    if not is_chat_template_prefix_preserving(tokenizer):
        raise UserError(f"--max_tool_calls: {where} renders a conversation differently once it goes on (not "
                        "prefix-preserving), so a multi-turn rollout could not be built by appending turns")
    probe, before = "SELECT count(*) FROM singer", [{"role": "user", "content": "How many singers?"}]
    ids = assistant_turn_ids(tokenizer, before, call_message(probe), template_kwargs or {}, tools=tool_schemas())
    parsed = parse_turn(tokenizer, ids, prefix=prompt_ids(tokenizer, before, template_kwargs or {}))
    calls = parsed.get("tool_calls") or []
    if len(calls) != 1 or (calls[0].get("function") or {}).get("arguments", {}).get("query") != probe:
        raise UserError(f"--max_tool_calls: TRL's parser does not read back the tool call {where} renders "
                        f"(read {parsed!r:.200})")


def call_message(sql: str) -> dict:
    """An assistant turn that calls the tool with `sql`."""
    return {"role": "assistant", "content": "",
            "tool_calls": [{"type": "function", "function": {"name": TOOL_NAME, "arguments": {"query": sql}}}]}


def prompt_ids(tokenizer, messages: list[dict], template_kwargs: dict) -> list[int]:
    """The first prompt with the tool offered, tokenized as GRPOTrainer tokenizes it."""
    out = tokenizer.apply_chat_template(messages, tools=tool_schemas(), add_generation_prompt=True, tokenize=True,
                                        return_dict=True, **template_kwargs)
    return list(out["input_ids"])


def _eos_trimmed(tokenizer, ids: list[int]) -> list[int]:
    """`ids` up to and including its last end-of-sequence token (the template's '\\n' after it is not the
    model's: generation stops at the token)."""
    last = max((i for i, t in enumerate(ids) if t == tokenizer.eos_token_id), default=None)
    return ids if last is None else ids[:last + 1]


def tool_suffix_ids(tokenizer, tool_messages: list[dict], template_kwargs: dict) -> list[int]:
    """The tokens after a calling turn's end-of-turn token up to the next generation prompt: the tool
    results as the template renders them. TRL's tool loop computes the same suffix the same way (a
    dummy call, rendered with and without the results, the first trimmed to its last EOS)."""
    dummy = [{"role": "user", "content": "dummy"},
             {"role": "assistant", "content": "",
              "tool_calls": [{"type": "function", "function": {"name": tool_messages[0].get("name", TOOL_NAME),
                                                                 "arguments": {}}}]}]
    before = tokenizer.apply_chat_template(dummy, add_generation_prompt=False, tokenize=True, return_dict=True,
                                           **template_kwargs)["input_ids"]
    after = tokenizer.apply_chat_template(dummy + tool_messages, add_generation_prompt=True, tokenize=True,
                                          return_dict=True, **template_kwargs)["input_ids"]
    before = _eos_trimmed(tokenizer, list(before))
    after = list(after)
    if after[:len(before)] != before:
        raise UserError("the chat template renders a tool result so that the calling turn changes: "
                        "--max_tool_calls cannot append results to a conversation")
    return after[len(before):]


def assistant_turn_ids(tokenizer, before: list[dict], message: dict, template_kwargs: dict,
                       tools: list[dict] | None = None) -> list[int]:
    """The tokens of one assistant turn as the model generates them after the generation prompt of
    `before`: the template's rendering of `message`, through its end-of-turn token."""
    prompt = tokenizer.apply_chat_template(before, tools=tools, add_generation_prompt=True, tokenize=False,
                                           **template_kwargs)
    full = tokenizer.apply_chat_template(before + [message], tools=tools, tokenize=False, **template_kwargs)
    if not full.startswith(prompt):
        raise UserError("the chat template renders the assistant turn's prompt differently from the generation prompt")
    ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    return _eos_trimmed(tokenizer, ids)


@functools.cache
def _parser_takes_tools() -> bool:
    """trl 1.16's parse_response takes the tools (to type their arguments) and its GRPO loop passes them;
    trl 1.15's (the GPU set's) has no such argument."""
    import inspect

    from trl.chat_template_utils import parse_response

    return "tools" in inspect.signature(parse_response).parameters


def parse_turn(tokenizer, ids: list[int], prefix: list[int]) -> dict:
    """A generated turn as the installed TRL's tool loop reads it: {'role', 'content', ['tool_calls']}; a
    malformed call falls back to plain text (TRL's rule). `prefix`: the tokens before the turn (the parser
    needs them). Called as that TRL version's GRPOTrainer calls it: with the tools where it takes them."""
    from trl.chat_template_utils import parse_response

    tools = {"tools": tool_schemas()} if _parser_takes_tools() else {}
    return parse_response(tokenizer, list(ids), prefix=prefix, **tools)


# ======================================================================
# SFT: a trajectory per training example


def sft_trajectory(tokenizer, messages: list[dict], gold_sql: str, db_path: str | os.PathLike, tool: SQLTool,
                   max_calls: int, template_kwargs: dict) -> tuple[list[int], list[int], list[ToolCall]]:
    """(input_ids, completion_mask, calls) of one SFT example in the agentic mode: the prompt with the tool
    offered, a call that runs the gold query, its real result from the database (through the same tool
    and budget as GRPO and evaluation), and the final answer. The mask is 1 on the model's own turns (the
    call and the answer, each through its end-of-turn token) and 0 on the prompt and the tool results."""
    env = SQLEnvironment(tool, max_calls)
    env.reset(db_path=os.fspath(db_path))
    ids = prompt_ids(tokenizer, messages, template_kwargs)
    mask = [0] * len(ids)
    call = call_message(gold_sql.strip())
    turn = assistant_turn_ids(tokenizer, messages, call, template_kwargs, tools=tool_schemas())
    result = run_tool_call(env, call["tool_calls"][0])
    suffix = tool_suffix_ids(tokenizer, [{"role": "tool", "name": TOOL_NAME, "content": result}], template_kwargs)
    answer = assistant_turn_ids(tokenizer, messages + [call, {"role": "tool", "name": TOOL_NAME, "content": result}],
                                {"role": "assistant", "content": gold_sql.strip()}, template_kwargs, tools=tool_schemas())
    ids += turn + suffix + answer
    mask += [1] * len(turn) + [0] * len(suffix) + [1] * len(answer)
    return ids, mask, env.calls


# ======================================================================
# evaluation: batched multi-turn generation


@dataclass
class Trajectory:
    """One conversation of the agentic mode: its final answer text and the calls made on the way."""

    answer: str = ""  # the final turn's text ("" when it ended on a call: no answer)
    calls: list[ToolCall] = field(default_factory=list)
    # answer | calls_exhausted (its last turn still called) | length (no room left) | unfinished_call (its
    # last turn opened a call that does not parse: cut at the length limit or malformed)
    ended: str = "answer"
    completion_tokens: int = 0  # turns + tool results, as GRPO counts max_completion_length

    def call_records(self) -> list[dict]:
        return [c.record() for c in self.calls]


def answer_with_tools(model, tokenizer, backend: str, messages: list[list[dict]], db_paths: list[str], *,
                      tool: SQLTool, max_calls: int, template_kwargs: dict, adapter_dir, max_new_tokens: int,
                      max_seq_length: int, temperature: float = 0.0, num_return_sequences: int = 1,
                      top_p: float = 1.0, top_k: int = 0, seed: int | None = None, batch_size: int = 16,
                      fast_inference: bool = True, progress: bool | Report = False) -> list[Trajectory]:
    """The trajectories of each prompt (prompt-major, `num_return_sequences` per prompt), generated as
    GRPO's rollouts are: every turn of every open conversation in one batch, a turn's calls run on its
    own database, their results appended as tokens, and the next turn generated; at most `max_calls`
    calling turns, then one last turn. `max_new_tokens` bounds all turns and results together (GRPO's
    max_completion_length); a conversation whose results would pass it, or `max_seq_length`, ends
    there without an answer, as in TRL's loop. `progress` (a progress.Report): each turn's generation
    reports as utils.generate_ids does, labelled with the turn, and in a log, once the conversations
    have run that long, a line after each turn (how many ended, how many query on)."""
    n = num_return_sequences
    report, start = as_report(progress), time.time()
    # The parser needs the template's response format on the tokenizer (TRL's GRPOTrainer sets it too).
    check_tool_template(tokenizer, getattr(tokenizer, "name_or_path", "") or "the model", template_kwargs)
    stop = utils.stop_token_ids(model, tokenizer)
    first = [prompt_ids(tokenizer, m, template_kwargs) for m in messages]
    options = dict(adapter_dir=adapter_dir, batch_size=batch_size, fast_inference=fast_inference, top_p=top_p,
                   top_k=top_k, temperature=temperature)
    turns = utils.generate_ids(model, tokenizer, first, backend, max_new_tokens=max_new_tokens, num_return_sequences=n,
                               seed=None if seed is None else [turn_seed(seed, 0, q * n) for q in range(len(first))],
                               progress=report.sub(", turn 1") if report else False, **options)
    trajectories = [Trajectory() for _ in turns]
    envs = [SQLEnvironment(tool, max_calls) for _ in turns]
    contexts = [list(first[i // n]) for i in range(len(turns))]  # prompt + everything after it so far
    for i, env in enumerate(envs):
        env.reset(db_path=db_paths[i // n])
    open_ = list(range(len(turns)))
    latest = {i: turns[i] for i in open_}
    round_ = 0
    while open_:
        calling = []
        for i in open_:
            ids, traj = latest[i], trajectories[i]
            parsed = parse_turn(tokenizer, ids, prefix=contexts[i])
            traj.completion_tokens += len(ids)
            if not parsed.get("tool_calls") and opens_tool_call(parsed.get("content"), TOOL_NAME):
                traj.answer, traj.ended = "", "unfinished_call"  # no answer, as GRPO's reward reads it
            elif not parsed.get("tool_calls"):  # the answer, as GRPO's reward reads it (the parsed content)
                traj.answer, traj.ended = parsed.get("content") or "", "answer"
            elif round_ >= max_calls:
                traj.answer, traj.ended = "", "calls_exhausted"
            elif not ids or ids[-1] not in stop:  # cut at the length limit inside a call
                traj.answer, traj.ended = "", "length"
            else:
                calling.append((i, parsed["tool_calls"]))
        next_prompts, next_open, budgets = [], [], []
        for i, calls in calling:
            results = [{"role": "tool", "name": TOOL_NAME, "content": run_tool_call(envs[i], c)} for c in calls]
            suffix = tool_suffix_ids(tokenizer, results, template_kwargs)
            context = contexts[i] + latest[i] + suffix
            used = trajectories[i].completion_tokens + len(suffix)
            if used >= max_new_tokens or len(context) >= max_seq_length:
                trajectories[i].answer, trajectories[i].ended = "", "length"
                continue
            contexts[i], trajectories[i].completion_tokens = context, used
            next_prompts.append(context)
            next_open.append(i)
            budgets.append(max_new_tokens - used)
        if next_prompts:
            # One continuation per conversation; the longest budget for the batch, each cut to its own after.
            # Each conversation its own seed: vLLM seeds each request's sampler with it, so siblings whose turns
            # so far coincide would otherwise sample the same continuation from here on.
            if report and lines_wanted() and time.time() - start >= report.every_s:
                print(f"{report.label}: after turn {round_ + 1}, {len(turns) - len(next_open)}/{len(turns)} "
                      f"conversations ended, {len(next_open)} query on ({duration(time.time() - start)} so far)",
                      flush=True)
            more = utils.generate_ids(model, tokenizer, next_prompts, backend, max_new_tokens=max(budgets),
                                      seed=None if seed is None else [turn_seed(seed, round_ + 1, i) for i in next_open],
                                      progress=report.sub(f", turn {round_ + 2}", "conversations") if report else False,
                                      **options)
            latest = {i: ids[:budget] for i, ids, budget in zip(next_open, more, budgets)}
        open_ = next_open
        round_ += 1
    for traj, env in zip(trajectories, envs):
        traj.calls = env.calls
    return trajectories


def turn_seed(seed: int, round_: int, conversation: int) -> int:
    """The sampling seed of one conversation's turn: distinct for every (round, conversation), reproducible
    from --seed. In round 0 a prompt's n samples are one vLLM request, whose children vLLM seeds seed + j:
    the prompt's seed is that of its first conversation (q * n), so the children get their own."""
    return (seed * 1_000_003 + round_ * 100_003 + conversation) % 2**31


def call_stats(trajectories: list[Trajectory]) -> dict[str, float]:
    """tool_calls_mean (calls per answer) and answered_after_call (the fraction of answers given, not
    empty, after at least one call; the reward counts them alike): the mode's two numbers in
    metrics.json, GRPO's log and --compare."""
    if not trajectories:
        return {"tool_calls_mean": 0.0, "answered_after_call": 0.0}
    return {"tool_calls_mean": sum(len(t.calls) for t in trajectories) / len(trajectories),
            "answered_after_call": sum(bool(t.calls) and t.ended == "answer" and bool(t.answer.strip())
                                       for t in trajectories) / len(trajectories)}


# ======================================================================
# either mode: the one place where the direct mode (--max_tool_calls 0) and the agentic mode part


def checked_template_kwargs(model, tokenizer, model_name: str, agentic: bool, reasoning: bool = False) -> dict:
    """The chat template kwargs every stage renders with, once the model's template is checked: the chat
    (utils.check_chat_template, against the model's stop tokens; with `reasoning`, reasoned answers) and in
    the agentic mode its tool calls (check_tool_template)."""
    template_kwargs = utils.check_chat_template(tokenizer, model_name, utils.stop_token_ids(model, tokenizer),
                                                reasoning=reasoning)
    if agentic:
        check_tool_template(tokenizer, model_name, template_kwargs)
    return template_kwargs


def model_prompt(tokenizer, chat: list[dict], template_kwargs: dict, agentic: bool) -> tuple[str | list[dict], int]:
    """One chat as the model is prompted with it, and its length in tokens. Direct: the text of the chat
    template with the generation prompt (utils.render_prompt), as utils.generate takes it. Agentic: the
    chat itself, fitted to the template, as answer_with_tools and TRL's tool loop take it; its length
    counts the tool's description, which the template renders into the prompt."""
    if agentic:
        chat = utils.fit_to_template(tokenizer, chat)
        return chat, len(prompt_ids(tokenizer, chat, template_kwargs))
    text = utils.render_prompt(tokenizer, chat, template_kwargs)
    return text, len(tokenizer(text, add_special_tokens=False)["input_ids"])


def model_prompts(tokenizer, chats: list[list[dict]], template_kwargs: dict, agentic: bool,
                  limit: int) -> tuple[list, list[int], list[int]]:
    """model_prompt of each chat (evaluation, GRPO's rows, --eval_steps, the pass-rate filter): (prompts,
    their lengths in tokens, the indices of those within `limit` tokens: the rest get no answer)."""
    prompts, lengths = [], []
    for chat in chats:
        prompt, n_tokens = model_prompt(tokenizer, chat, template_kwargs, agentic)
        prompts.append(prompt)
        lengths.append(n_tokens)
    return prompts, lengths, [i for i, n in enumerate(lengths) if n <= limit]


def answers(model, tokenizer, backend: str, prompts: list, db_paths: list[str], *, tool: SQLTool | None,
            max_calls: int, template_kwargs: dict, max_seq_length: int, **generation: Any) -> list[str]:
    """The answer texts of prompts made by model_prompts (`num_return_sequences` per prompt, prompt-major).
    Direct (no `tool`): utils.generate on the rendered texts. Agentic: the final answer of each conversation
    of answer_with_tools, its calls run by `tool` on the prompt's database (`db_paths`). `generation`:
    adapter_dir, max_new_tokens, temperature, sampling and batching, as both take them."""
    if tool is None:
        return utils.generate(model, tokenizer, prompts, backend, **generation)
    return [t.answer for t in answer_with_tools(model, tokenizer, backend, prompts, db_paths, tool=tool,
                                                max_calls=max_calls, template_kwargs=template_kwargs,
                                                max_seq_length=max_seq_length, **generation)]
