"""Reasoning traces (--reasoning true): the answers SFT trains on (train_sft.py --sft_traces FILE), each kept
only when its final query gives the gold result, and the self-trace command that samples them from a model
and writes the verified ones (evaluate.py --self_traces OUT.jsonl): rejection sampling, as in STaR and ExCoT.

A trace file is JSONL, one trace a line: {"db_id": ..., "question": ..., "completion": ...}: the question's
database and text as the training set has them, and the whole answer (reasoning, then the final query in a
closing ```sql block, or a think block and the answer after it). Other fields are allowed and ignored.
Each record is counted once, by the first of these that applies, in this order:

  unmatched    no training question of the run (utils.training_examples) has its db_id and question
  duplicates   the same completion (surrounding whitespace aside) for the same question came earlier
  unparseable  no final query (extract.final_sql: none given, or cut off), or more than one think block
  wrong        its final query does not give the gold result (the reward's rule: SQLExecutionReward.score)
  over_cap     the question has --traces_per_question verified traces from earlier lines already
  kept         trained on

Under a thinking template (one whose generation prompt opens <think>, or Qwen3's hybrid with thinking on) a
trace is rewritten as the template renders it (answer_text), so that the tokens trained are the ones
generation produces and verification judges that text.

Imports agent, benchmarks, config, errors, execution_reward, extract, run_folders and utils.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import utils
from config import Config
from sql_rlvr import agent, benchmarks, run_folders
from sql_rlvr.errors import DataError, UserError
from sql_rlvr.execution_reward import RewardValues, SQLExecutionReward
from sql_rlvr.extract import final_sql, split_reasoning

TRACE_FIELDS = ("db_id", "question", "completion")  # what every record of a trace file holds
COUNTS = ("unmatched", "duplicates", "unparseable", "wrong", "over_cap", "kept")  # each record is one of these


@dataclass(frozen=True)
class Trace:
    """One record of a trace file, with its line number (for messages)."""

    line: int
    db_id: str
    question: str
    completion: str


def read_traces(path: str | os.PathLike) -> tuple[list[Trace], str]:
    """The traces of a JSONL file and the file's sha256. A missing or unreadable file, a line that is not a
    JSON object with text db_id, question and completion, or no trace at all: one line naming the file (and
    the line), as a DataError."""
    path = Path(path)
    howto = "make traces with `python evaluate.py --self_traces FILE --num_samples 8 --reasoning true`"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"--sft_traces {path}: no such file ({howto}, or bring a teacher's in that format)") from None
    except OSError as exc:
        raise DataError(f"--sft_traces {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); a trace file is JSONL") from None
    traces = []
    # "\n" only: str.splitlines would also cut at U+2028, which JSON writers leave unescaped inside strings.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number}: not JSON ({exc.msg}, column {exc.colno}); a trace file holds "
                            "one JSON object a line with db_id, question and completion") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number}: a JSON {type(record).__name__}, not an object with db_id, "
                            "question and completion")
        missing = [name for name in TRACE_FIELDS if not isinstance(record.get(name), str)]
        if missing:
            raise DataError(f"{path} line {number}: no {', '.join(missing)} (text); every trace needs db_id, "
                            "question and completion")
        traces.append(Trace(number, record["db_id"], record["question"], record["completion"]))
    if not traces:
        raise DataError(f"{path} holds no trace ({howto})")
    return traces, hashlib.sha256(data).hexdigest()


def question_key(db_id: str, question: str) -> tuple[str, str]:
    """How a trace names its training question: the db_id, and the question with its spacing collapsed."""
    return db_id.strip(), " ".join(question.split())


def answer_text(completion: str, opener: str, thinking: bool) -> str | None:
    """What SFT trains for a trace: the text that follows the generation prompt when the model gives this
    answer under its chat template. An instruct template: the completion as written (stripped). A thinking
    template (`thinking`): the reasoning in the think block, the answer after it, as utils.check_answer
    writes them ("<think>\\n" + reasoning + "\\n</think>\\n\\n" + answer), without the "<think>\\n" that the
    generation prompt already ends with when the template opens the block itself (`opener`). A completion
    without a think block has everything before its final ```sql block moved into one. None: no final
    query (extract.split_reasoning)."""
    text = completion.strip()
    parts = split_reasoning(text)
    if parts is None:
        return None
    if not thinking:
        return text
    reasoning, answer = (part.strip() for part in parts)
    body = f"{reasoning}\n</think>\n\n{answer}"
    return body if opener else f"<think>\n{body}"


def trace_reward(cfg: Config, opener: str) -> SQLExecutionReward:
    """The reward that judges traces: GRPO's, with --reasoning true (its final query alone), its workers started."""
    reward = SQLExecutionReward(cfg.sql_timeout_s, cfg.reward_workers, RewardValues.from_config(cfg),
                                rule=benchmarks.get(cfg.benchmark).rule, reasoning=True)
    reward.think_opener = opener
    reward.start()
    return reward


def check_golds(reward: SQLExecutionReward, datasets: dict[str, Any], examples: list[dict], what: str) -> None:
    """Run the gold query of each example once, in the reward's workers (which keep the results for scoring):
    one that fails on its database (a missing database, a broken query) stops `what` in one line now, before
    any model is loaded or any answer sampled, as GRPO's gold checks do."""
    checks = reward.check_golds([(ex["query"], str(datasets[ex["benchmark"]].db_path(ex["db_id"])),
                                  benchmarks.get(ex["benchmark"]).rule) for ex in examples])
    failed = [(ex, check) for ex, check in zip(examples, checks) if not check.ok]
    if failed:
        ex, check = failed[0]
        raise UserError(f"{what}: the gold query of {len(failed)} of {len(examples)} training questions fails on its "
                        f"database, so no answer to it can be verified; the first: {ex['db_id']}: {check.error}: "
                        f"{ex['query'][:120]} (the training split's databases must be there, e.g. Spider's "
                        "database/<db_id>/ for train_spider.json)")


def outcomes(reward: SQLExecutionReward, datasets: dict[str, Any], pairs: list[tuple[dict, str]]) -> list[str]:
    """The reward's outcome (match, wrong, no_answer, ...) of each (training example, answer text), judged on
    the example's own database by its own benchmark's rule."""
    if not pairs:
        return []
    scored = reward.score([text for _, text in pairs], [ex["query"] for ex, _ in pairs],
                          [str(datasets[ex["benchmark"]].db_path(ex["db_id"])) for ex, _ in pairs],
                          [benchmarks.get(ex["benchmark"]).rule for ex, _ in pairs])
    return [outcome for _, outcome, _ in scored]


def select_traces(traces: list[Trace], examples: list[dict], datasets: dict[str, Any], reward: SQLExecutionReward,
                  opener: str, thinking: bool, per_question: int) -> tuple[list[tuple[dict, str, int]], dict[str, int]]:
    """The traces SFT trains on, as (training example, answer_text, line), in file order, and the count of
    each kind of record (COUNTS, see the module's docstring; `questions`: training questions with a kept trace).
    Every trace that reaches the reward is scored in one batch, before any training."""
    by_key: dict[tuple[str, str], dict] = {}
    for ex in examples:  # a question asked twice on one database: its first example
        by_key.setdefault(question_key(ex["db_id"], ex["question"]), ex)
    counts = dict.fromkeys(COUNTS, 0)
    seen: set = set()
    candidates = []
    for trace in traces:
        key = question_key(trace.db_id, trace.question)
        if key not in by_key:
            counts["unmatched"] += 1
        elif (key, trace.completion.strip()) in seen:
            counts["duplicates"] += 1
        else:
            seen.add((key, trace.completion.strip()))
            text = answer_text(trace.completion, opener, thinking)
            if text is None:
                counts["unparseable"] += 1
            else:
                candidates.append((key, by_key[key], text, trace.line))
    check_golds(reward, datasets, list({id(c[1]): c[1] for c in candidates}.values()), "--sft_traces")
    per_key: collections.Counter = collections.Counter()
    chosen = []
    judged = outcomes(reward, datasets, [(ex, text) for _, ex, text, _ in candidates])
    for (key, ex, text, line), outcome in zip(candidates, judged):
        if outcome == "no_answer":
            counts["unparseable"] += 1
        elif outcome != "match":
            counts["wrong"] += 1
        elif per_key[key] >= per_question:
            counts["over_cap"] += 1
        else:
            per_key[key] += 1
            chosen.append((ex, text, line))
    counts["kept"] = len(chosen)
    return chosen, {"records": len(traces), **counts, "questions": len(per_key)}


def verified_traces(cfg: Config, traces: list[Trace], digest: str, examples: list[dict], datasets: dict[str, Any],
                    opener: str, thinking: bool) -> tuple[list[tuple[dict, str, int]], dict]:
    """select_traces for SFT (--sft_traces, --traces_per_question), with the log line and run_info.json's
    record (the file, its sha256, the counts); no trace kept: one line saying why."""
    reward = trace_reward(cfg, opener)
    try:
        chosen, counts = select_traces(traces, examples, datasets, reward, opener, thinking, cfg.traces_per_question)
    finally:
        reward.close()
    record = {"path": str(Path(cfg.sft_traces).resolve()), "sha256": digest,
              "traces_per_question": cfg.traces_per_question, **counts}
    summary = (f"{counts['records']} records: {counts['kept']} kept for {counts['questions']} of {len(examples)} "
               f"training questions, {counts['wrong']} wrong, {counts['unparseable']} unparseable (no final query), "
               f"{counts['unmatched']} unmatched (no such training question), {counts['duplicates']} duplicates, "
               f"{counts['over_cap']} over --traces_per_question {cfg.traces_per_question}")
    print(f"[sft] traces {cfg.sft_traces} (sha256 {digest[:12]}): {summary}; questions without a kept trace are "
          "not trained on")
    if not chosen:
        raise UserError(f"no trace of {cfg.sft_traces} can be trained on ({summary}): check that it answers this "
                        "run's training questions (--train_benchmarks, --max_train_examples) and that its final "
                        "queries are right")
    return chosen, record


# ======================================================================
# evaluate.py --self_traces OUT.jsonl: sample, verify, write


def verified_samples(samples: list[tuple[dict, int, str]], datasets: dict[str, Any], reward: SQLExecutionReward,
                     opener: str, thinking: bool) -> tuple[list[dict], list[str]]:
    """Of sampled answers (training example, sample index, the whole completion), the trace records of those
    whose final query gives the gold result, in order, and each sample's outcome (no_answer: no final query).
    Judged exactly as select_traces judges a trace file, so SFT keeps what this writes."""
    texts = [answer_text(completion, opener, thinking) for _, _, completion in samples]
    parsed = [i for i, text in enumerate(texts) if text is not None]
    found = dict(zip(parsed, outcomes(reward, datasets, [(samples[i][0], texts[i]) for i in parsed])))
    results = [found.get(i, "no_answer") for i in range(len(samples))]
    records = [{"db_id": ex["db_id"], "question": ex["question"], "completion": completion,
                "sql": final_sql(text, True, opener), "sample": j, "benchmark": ex["benchmark"]}
               for (ex, j, completion), text, result in zip(samples, texts, results) if result == "match"]
    return records, results


def sample_answers(cfg: Config, adapter: Path | None, datasets: dict[str, Any],
                   examples: list[dict]) -> tuple[list[tuple[dict, int, str]], str, bool, dict]:
    """--num_samples K answers with reasoning to each example from the model (`adapter`: None = the base model),
    sampled as evaluation samples its candidates (--sample_temperature, top_p 0.95, --seed): (training example,
    sample index, the whole completion) of each, prompt-major; the template's think opener and whether it is
    a thinking one (answer_text); and what the log and the yield report need."""
    k = cfg.num_samples
    backend = utils.pick_backend(cfg)
    model, tokenizer = utils.load_model(cfg, backend, adapter=adapter, trainable=False,
                                        fast_inference=backend == "unsloth" and cfg.fast_inference)
    template_kwargs = agent.checked_template_kwargs(model, tokenizer, cfg.model_name, agentic=False, reasoning=True)
    opener = utils.think_opener(tokenizer, template_kwargs)
    limit = cfg.max_seq_length - cfg.max_completion_length
    chats = [utils.render_prompt_for(datasets[ex["benchmark"]], ex, cfg) for ex in examples]
    prompts, lengths, fits = agent.model_prompts(tokenizer, chats, template_kwargs, False, limit)
    print(f"[traces] backend={backend} adapter={adapter or 'none (base model)'} training questions={len(examples)}, "
          f"{k} answers each at T={cfg.sample_temperature:g}; {utils.length_report(lengths)}; over the {limit}-token "
          f"prompt limit (no answers): {len(examples) - len(fits)}")
    texts = utils.generate(model, tokenizer, [prompts[i] for i in fits], backend, adapter_dir=adapter,
                           max_new_tokens=cfg.max_completion_length, temperature=cfg.sample_temperature,
                           num_return_sequences=k, top_p=0.95, seed=cfg.seed, batch_size=cfg.eval_batch_size,
                           fast_inference=cfg.fast_inference)
    # The whole answer: under a template that opens the think block in the prompt, the model starts inside it.
    samples = [(examples[i], j, opener + texts[n * k + j]) for n, i in enumerate(fits) for j in range(k)]
    thinking = bool(opener) or bool(template_kwargs.get("enable_thinking"))
    return samples, opener, thinking, {"backend": backend, "prompts_over_limit": len(examples) - len(fits)}


def write_self_traces(cfg: Config, out: Path, adapter: Path | None) -> dict:
    """evaluate.py --self_traces OUT: --num_samples K answers with reasoning to every training question
    (utils.training_examples: --max_train_examples subsets them) from the model (--adapter), each verified by
    execution (verified_samples); the verified ones are written to OUT in the trace format, and nothing else
    (an empty file when none verifies). Returns the yield, which it prints."""
    k = cfg.num_samples
    if not cfg.reasoning:
        raise UserError("--self_traces samples answers with reasoning: add --reasoning true")
    if k < 1:
        raise UserError("--self_traces needs --num_samples K, the answers sampled per training question (e.g. 8)")
    if cfg.max_tool_calls > 0:
        raise UserError("--self_traces samples direct answers: SFT on reasoning traces has no agentic mode "
                        "(train_sft.py refuses --reasoning true with --max_tool_calls); drop --max_tool_calls")
    if out.is_dir():
        raise UserError(f"--self_traces {out} is a folder: name the JSONL file to write")
    if out.exists() and not cfg.overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it, or name another file")
    datasets = utils.open_training_datasets(cfg)
    examples = utils.training_examples(cfg, datasets)
    start = time.time()
    reward = trace_reward(cfg, "")
    try:  # every gold query first: sampling takes hours, and an answer to a question without one cannot be judged
        check_golds(reward, datasets, examples, "--self_traces")
        samples, opener, thinking, info = sample_answers(cfg, adapter, datasets, examples)
        reward.think_opener = opener  # answer_text starts inside the think block such a prompt opened
        records, results = verified_samples(samples, datasets, reward, opener, thinking)
    finally:
        reward.close()
    source = {"model": cfg.model_name, "adapter": str(adapter) if adapter else None, "k": k}
    run_folders.write_jsonl(out, [{**record, **source} for record in records])
    per_question = collections.Counter(question_key(r["db_id"], r["question"]) for r in records)
    verified = [per_question[question_key(ex["db_id"], ex["question"])] for ex in examples]
    histogram = [verified.count(n) for n in range(k + 1)]
    summary = {"questions": len(examples), "k": k, "samples": len(samples), "verified": len(records),
               "questions_with_trace": sum(n > 0 for n in verified),
               "verified_per_question_mean": round(len(records) / max(1, len(examples)), 3),
               "questions_by_verified": histogram, "no_answer": results.count("no_answer"),
               "wrong": len(results) - len(records) - results.count("no_answer"), **info,
               "seconds": round(time.time() - start, 1)}
    print(f"[traces] {summary['verified']} of {summary['samples']} sampled answers verified (gold result), "
          f"{summary['wrong']} wrong, {summary['no_answer']} no answer (no final query); questions with a verified "
          f"trace: {summary['questions_with_trace']} of {len(examples)}; verified per question: mean "
          f"{summary['verified_per_question_mean']:g}, questions by verified answers 0..{k}: {histogram} "
          f"({summary['seconds']:.0f} s)")
    print(f"[traces] wrote {len(records)} traces to {out}; " + (
        f"train on them with `python train_sft.py --reasoning true --sft_traces {out}`" if records else
        "none to train on: sample more (--num_samples), from a stronger adapter, or bring a teacher's traces"))
    return summary
