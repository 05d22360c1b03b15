"""The execution reward: what one model answer earns (sql_reward, score_completion) and GRPO's batched
reward function (SQLExecutionReward), with the gold checks before training (checked_gold_rows).

It executes through sandbox.py (read-only, time-limited; WorkerPool makes the limit hard) and judges
with scoring.py's match rules, so reward and metric never disagree on a match. Imports extract,
config, errors, sandbox and scoring only: its worker processes import this module and must start fast.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from typing import Any, Callable

from config import Config
from sql_rlvr.extract import extract_sql, final_sql, opens_tool_call
from sql_rlvr.errors import UserError
from sql_rlvr.sandbox import ExecResult, WorkerPool, execute_sql
from sql_rlvr.scoring import GOLD_TIMEOUT_S, MatchRule, match_rule, order_matters, unordered_rows

# What one model answer can come to (the reward's). no_answer: --reasoning true, reasoning that never reached a
# final query (extract.final_sql): scored as an empty answer.
OUTCOMES = ("match", "partial", "wrong", "invalid", "empty", "no_answer")


def result_f1(gold: list[tuple], pred: list[tuple]) -> float:
    """F1 of predicted vs gold rows as multisets, each row's values taken in any column order.

    precision = |pred ∩ gold| / |pred|, recall = |pred ∩ gold| / |gold| (multiset intersection);
    0 when either side is empty or nothing overlaps.
    """
    if not gold or not pred:
        return 0.0
    g = collections.Counter(unordered_rows(gold))
    p = collections.Counter(unordered_rows(pred))
    overlap = sum((g & p).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class RewardValues:
    exact: float = 5.0
    invalid: float = -1.0
    empty: float = -2.0
    partial_max: float = 2.5

    @classmethod
    def from_config(cls, cfg: Config) -> "RewardValues":
        return cls(cfg.reward_exact, cfg.reward_invalid, cfg.reward_empty, cfg.reward_partial_max)


DEFAULT_REWARD_VALUES = RewardValues()  # the defaults of --reward_exact etc. (frozen: safe to share)


def judge_prediction(pred_sql: str, gold_sql: str, gold: ExecResult, db_path: str | os.PathLike,
                     timeout_s: float, rule: str | MatchRule = "spider") -> tuple[str, float, str | None]:
    """Execute a prediction and compare it with an executed gold: (outcome, F1, error).

    outcome is match / partial / wrong / invalid (no SQL, error, refusal, timeout). The comparison
    is the official evaluator's of the benchmark (`rule`), so reward and metric can never disagree on a match.
    """
    if not pred_sql.strip():
        return "invalid", 0.0, "no SQL"
    comparison = match_rule(rule)
    result = execute_sql(db_path, comparison.prepare(pred_sql, True), timeout_s)
    if not result.ok:
        return "invalid", 0.0, f"{result.kind}: {result.error}"
    if comparison.result_error(result):
        return "invalid", 0.0, comparison.result_error(result)
    assert gold.rows is not None
    if not comparison.result_error(gold) and comparison.rows_match(gold.rows, result.rows, order_matters(gold_sql)):
        return "match", 1.0, None
    f1 = result_f1(gold.rows, result.rows)
    return ("partial" if f1 > 0 else "wrong"), f1, None


def execute_gold(db_path: str | os.PathLike, gold_sql: str, timeout_s: float, rule: str | MatchRule = "spider") -> ExecResult:
    # Gold gets a generous limit: a slow gold query is the dataset's cost, not the model's fault.
    return execute_sql(db_path, match_rule(rule).prepare(gold_sql, False), max(timeout_s, GOLD_TIMEOUT_S))


def score_completion(completion: str, gold_sql: str, db_path: str | os.PathLike, *,
                     gold: ExecResult | None = None, timeout_s: float = 2.0,
                     values: RewardValues = DEFAULT_REWARD_VALUES, rule: str | MatchRule = "spider") -> tuple[float, str, str | None]:
    """(reward, outcome, error) for one raw model answer under the benchmark's match rule. See sql_reward."""
    if not completion or not completion.strip():
        return values.empty, "empty", "empty answer"
    if gold is None:
        gold = execute_gold(db_path, gold_sql, timeout_s, rule)
    if not gold.ok:
        raise UserError(f"gold query fails on {db_path}: {gold.error}: {gold_sql[:200]}")
    sql = extract_sql(completion)
    outcome, f1, error = judge_prediction(sql, gold_sql, gold, db_path, timeout_s, rule)
    reward = {"match": values.exact, "invalid": values.invalid}.get(outcome, values.partial_max * f1)
    return reward, outcome, error


def sql_reward(completion: str, gold_sql: str, db_path: str | os.PathLike, *, timeout_s: float = 2.0,
               values: RewardValues = DEFAULT_REWARD_VALUES, rule: str | MatchRule = "spider") -> float:
    """Execution reward for one raw model answer.

    +5.0 (exact)   the predicted result equals the gold result under the official comparison of the
                   benchmark (`rule`: "spider" or "bird", scoring.MATCH_RULES)
    -2.0 (empty)   the answer is empty or whitespace
    -1.0 (invalid) no SQL in the answer, or it errors, is refused, or exceeds the time limit
    partial_max x F1 (2.5 x F1 by default) for a valid query with a different result, where F1 is
                   over result rows as multisets (result_f1): 0 when nothing overlaps, at most 2.5,
                   always strictly below the exact-match reward.
    """
    return score_completion(completion, gold_sql, db_path, timeout_s=timeout_s, values=values, rule=rule)[0]


def _completion_text(completion: Any, tool_calls: bool = False) -> str:
    """The answer in a completion as TRL passes it: plain text, or conversational, a list of messages whose
    last assistant turn is the answer (in the agentic mode the earlier turns are tool calls and their
    results). A conversation that ends on a call has no answer: "". With `tool_calls` (the agentic mode),
    neither has one whose last turn opens a call that TRL's parser could not read (cut off at the length
    limit, or malformed): TRL hands that turn over as plain text, with the call's query in it."""
    if not isinstance(completion, list):
        text = completion or ""
    else:
        turns = [m for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
        text = "" if not turns or turns[-1].get("tool_calls") else turns[-1].get("content") or ""
    return "" if tool_calls and opens_tool_call(text) else text


def tool_call_counts(completion: Any) -> tuple[int, bool]:
    """(tool results in a completion, whether it still ends with an answer after at least one of them)."""
    if not isinstance(completion, list):
        return 0, False
    calls = sum(isinstance(m, dict) and m.get("role") == "tool" for m in completion)
    return calls, calls > 0 and bool(_completion_text(completion, tool_calls=True).strip())


# Gold results of this process, per (rule, database, gold SQL, limit). In GRPO this process is one of the
# reward's workers: each keeps the results of the gold queries it ran, so a batch sent to it carries only
# the gold SQL, and the trainer process holds no result rows (workers=0: the trainer's own cache).
_GOLD_RESULTS: dict[tuple[str, str, str, float], ExecResult] = {}


def cached_gold(db_path: str | os.PathLike, gold_sql: str, timeout_s: float,
                rule: str | MatchRule = "spider") -> ExecResult:
    """execute_gold, once per process for each gold query (a time-out, which depends on the machine's
    load, is tried again next time)."""
    rule = match_rule(rule)
    key = (rule.name, os.fspath(db_path), gold_sql, max(timeout_s, GOLD_TIMEOUT_S))
    if key in _GOLD_RESULTS:
        return _GOLD_RESULTS[key]
    result = execute_gold(db_path, gold_sql, timeout_s, rule)
    if result.kind != "timeout":
        _GOLD_RESULTS[key] = result
    return result


@dataclass(frozen=True)
class GoldCheck:
    """What the trainer keeps of one gold query: whether it ran, its row count and time (the rows stay in
    the worker that ran it)."""

    ok: bool
    rows: int = 0
    error: str | None = None
    seconds: float = 0.0


def _score_jobs(jobs: list[tuple], args: tuple, emit: Callable | None = None) -> list:
    """Run jobs of SQLExecutionReward in a WorkerPool process (or in this one), emitting each result as it
    comes. ("gold", gold_sql, db_path, rule) runs a gold query into this process's cache -> GoldCheck;
    ("answer", completion, gold_sql, db_path, rule, gold_checked) scores an answer -> (reward, outcome,
    error); gold_checked: its gold query ran within its limit before. args = (timeout_s, RewardValues)."""
    timeout_s, values = args
    results: list = []
    for kind, *job in jobs:
        if kind == "gold":
            gold_sql, db_path, rule = job
            gold = cached_gold(db_path, gold_sql, timeout_s, rule)
            results.append(GoldCheck(gold.ok, len(gold.rows or ()), gold.error, gold.seconds))
        else:
            completion, gold_sql, db_path, rule, gold_checked = job
            # An empty answer needs no gold (score_completion returns before using it).
            gold = cached_gold(db_path, gold_sql, timeout_s, rule) if completion.strip() else None
            if gold is not None and gold.kind == "timeout" and gold_checked:
                # It ran within its limit before (in another worker), so this is the machine's load, not a broken
                # gold query: the answer cannot be judged now, which is not worth stopping a run for.
                results.append((values.invalid, "invalid", f"timeout: the gold query ran past its limit here ({gold.error})"))
            else:
                results.append(score_completion(completion, gold_sql, db_path, gold=gold, timeout_s=timeout_s,
                                                values=values, rule=rule))
        if emit is not None:
            emit(results[-1])
    return results


class SQLExecutionReward:
    """The GRPO reward: TRL calls it as reward(prompts, completions, gold_sql=[...], db_path=[...], ...).

    Everything runs in a WorkerPool: each gold query once (check_golds: before training, or when a
    call brings a new one), under its own hard limit (`gold_hard_limit_s`), and the answers in
    batches. A worker keeps the result of each gold query it ran (cached_gold), so a batch carries only
    the gold SQL and this process only a GoldCheck per gold query; a worker that has not run an
    answer's gold query yet runs it first. Each query runs under its time limit (`timeout_s`) and each
    answer under a hard one (`hard_limit_s`, plus twice its gold query's time: past it, its worker is
    killed and replaced and the answer scored as a time-out), so one slow query never stalls the
    batch. Outcome counts (and worker failures) are accumulated for logging (pop_metrics) together
    with a few sample completions. workers=0 runs everything in this process, with no hard limit.
    """

    __name__ = "sql_execution"  # TRL logs rewards under the function's name

    def __init__(self, timeout_s: float = 2.0, workers: int = 2, values: RewardValues = DEFAULT_REWARD_VALUES,
                 num_samples: int = 2, rule: str | MatchRule = "spider", tool_calls: bool = False,
                 reasoning: bool = False) -> None:
        self.tool_calls = tool_calls  # the agentic mode: also log tool_calls_mean and answered_after_call
        # --reasoning true: only the final query counts (extract.final_sql); `think_opener` is the "<think>" a
        # thinking template's generation prompt ends with, so the completions start inside the think block.
        self.reasoning = reasoning
        self.think_opener = ""
        self.rule = match_rule(rule)  # the benchmark's match rule decides the +5 (scoring.MATCH_RULES)
        self.timeout_s = timeout_s
        # A query stops itself at timeout_s; the rest is margin for comparing results and for a busy machine.
        self.hard_limit_s = 2 * timeout_s + 2.0
        self.gold_hard_limit_s = 2 * max(timeout_s, GOLD_TIMEOUT_S) + 2.0  # the same margin on the gold's own limit
        self.workers = workers
        self.values = values
        self.num_samples = num_samples
        self._gold: dict[tuple[str, str, str], GoldCheck] = {}  # (rule, database, gold SQL) -> what its first run gave
        self._pool: WorkerPool | None = None
        self._counts: collections.Counter = collections.Counter()
        self.samples: list[dict] = []

    def _executor(self) -> WorkerPool | None:
        if self._pool is None and self.workers > 0:
            # spawn: never fork a process that holds CUDA state or tokenizer threads
            self._pool = WorkerPool(_score_jobs, self.workers, "spawn")
        return self._pool

    def start(self) -> None:
        """Start the worker processes now, so that their start overlaps other work (train_grpo.py: the
        model's loading) rather than adding to the gold checks."""
        pool = self._executor()
        if pool is not None:
            pool.start()

    def _run(self, batches: list[list[tuple]]) -> list[list]:
        """Each batch's results, from the worker processes (or this process with workers=0)."""
        args = (self.timeout_s, self.values)
        pool = self._executor()
        if pool is None:
            return [_score_jobs(batch, args) for batch in batches]

        def limit(job: tuple) -> float:
            if job[0] == "gold":
                return self.gold_hard_limit_s
            # A worker that has not run this answer's gold query yet runs it first (about as long as its check
            # took), within the answer's hard limit: that time is added, with the same factor 2 for a busy machine.
            _, _, gold_sql, db_path, rule, _ = job
            return self.hard_limit_s + 2 * self._gold[(rule, db_path, gold_sql)].seconds

        def failed(job: tuple, error: str) -> GoldCheck | tuple[float, str, str | None]:
            return GoldCheck(False, error=error) if job[0] == "gold" else (self.values.invalid, "invalid", error)

        return pool.run(batches, args, limit, failed)

    def _batches(self, jobs: list[tuple]) -> list[list[tuple]]:
        # A few batches per worker: one message per job costs more in pickling than these sub-millisecond
        # queries, and a slow query still leaves the other workers busy.
        size = max(1, -(-len(jobs) // (max(1, self.workers) * 4)))
        return [jobs[i:i + size] for i in range(0, len(jobs), size)]

    def check_golds(self, golds: list[tuple[str, str, str | MatchRule | None]]) -> list[GoldCheck]:
        """Run each gold query (gold_sql, db_path, rule; None = the reward's own) once, in the workers,
        where its result stays; return what each gave, in order. A query run before is not run again."""
        todo: dict[tuple, tuple] = {}
        for gold_sql, db_path, rule in golds:
            key = (match_rule(rule or self.rule).name, str(db_path), gold_sql)
            if key not in self._gold:
                todo[key] = ("gold", gold_sql, str(db_path), key[0])
        batches = self._batches(sorted(todo.values(), key=lambda job: (job[2], job[1])))  # by database: each worker opens a few
        for batch, checks in zip(batches, self._run(batches)):
            for (_, gold_sql, db_path, rule), check in zip(batch, checks):
                self._gold[(rule, db_path, gold_sql)] = check
        return [self._gold[(match_rule(rule or self.rule).name, str(db_path), gold_sql)]
                for gold_sql, db_path, rule in golds]

    def score(self, completions: list[str], gold_sqls: list[str], db_paths: list[str],
              rules: list[str | None] | None = None) -> list[tuple[float, str, str | None]]:
        """(reward, outcome, error) of each answer; `rules`: each row's match rule (None: the reward's own)."""
        rules = [match_rule(r or self.rule).name for r in (rules or [None] * len(completions))]
        if self.reasoning:  # the final query alone, as a block extract_sql reads back as it is; None: no answer
            finals = [final_sql(c, True, self.think_opener) for c in completions]
            completions = [f"```sql\n{sql}\n```" if sql else "" for sql in finals]
        checks = self.check_golds(list(zip(gold_sqls, map(str, db_paths), rules)))  # new ones only (GRPO: none)
        jobs = [("answer", c, g, str(d), r, check.ok)
                for c, g, d, r, check in zip(completions, gold_sqls, db_paths, rules, checks)]
        scored = [r for batch in self._run(self._batches(jobs)) for r in batch]
        if self.reasoning:
            scored = [(self.values.empty, "no_answer", "no final query") if sql is None else result
                      for sql, result in zip(finals, scored)]
        return scored

    @property
    def worker_failures(self) -> int:
        """Worker processes that died or raised so far: each failure scored one answer invalid, not its SQL.
        A caller reports the change over its own scoring (GRPO's step metrics, the pass-rate filter's line)."""
        return self._pool.failures if self._pool is not None else 0

    def __call__(self, prompts: list, completions: list, gold_sql: list[str], db_path: list[str], *,
                 rule: list[str] | None = None, log_metric: Callable[[str, float], None] | None = None,
                 log_extra: Callable[[str, list], None] | None = None, **_: Any) -> list[float]:
        """TRL passes the dataset's other columns too: `rule`, when present, is each row's match rule (a
        training mix judges a BIRD row by BIRD's). `log_metric`/`log_extra` (TRL >= 1.15): the outcome
        fractions go through them, so TRL averages them over processes; each completion's outcome becomes
        a column of TRL's completion log."""
        texts = [_completion_text(c, self.tool_calls) for c in completions]
        failures = self.worker_failures
        scored = self.score(texts, gold_sql, db_path, rule)
        self._counts["worker_failed"] += self.worker_failures - failures
        for text, (reward, outcome, error) in zip(texts, scored):
            self._counts[outcome] += 1
            self._counts["total"] += 1
            if outcome == "invalid" and error == "no SQL":
                self._counts["parse_fail"] += 1
            if error and error.startswith("timeout"):
                self._counts["timeout"] += 1
        if self.tool_calls:
            for completion in completions:
                calls, answered = tool_call_counts(completion)
                self._counts["tool_calls"] += calls
                self._counts["answered_after_call"] += answered
        self.samples = [{"completion": t, "reward": r, "outcome": o, "calls": tool_call_counts(c)[0]}
                        for t, c, (r, o, _) in zip(texts, completions, scored)][: self.num_samples]
        if log_extra is not None:
            log_extra("outcome", [outcome for _, outcome, _ in scored])
        if log_metric is not None:
            for name, value in self.pop_metrics().items():
                log_metric(name, value)
        return [reward for reward, _, _ in scored]

    def pop_metrics(self) -> dict[str, float]:
        """Fraction of each outcome (and of parse failures, timeouts and worker failures) since the last call."""
        total = self._counts.get("total", 0)
        if not total:
            return {}
        metrics = {f"outcome/{name}": self._counts.get(name, 0) / total for name in OUTCOMES}
        metrics["outcome/parse_fail"] = self._counts.get("parse_fail", 0) / total
        metrics["outcome/timeout"] = self._counts.get("timeout", 0) / total
        # answers scored invalid because their worker process died or raised, not because of their SQL
        metrics["outcome/worker_failed"] = self._counts.get("worker_failed", 0) / total
        if self.tool_calls:  # the agentic mode's two numbers (agent.call_stats in evaluation)
            metrics["tool_calls_mean"] = self._counts.get("tool_calls", 0) / total
            metrics["answered_after_call"] = self._counts.get("answered_after_call", 0) / total
        self._counts.clear()
        return metrics

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def checked_gold_rows(rows: list[dict], reward: SQLExecutionReward, skip_empty: bool) -> tuple[list[dict], int]:
    """Execute the gold query of every GRPO row now, in the reward's worker processes (which keep the
    results for scoring): one that fails is a UserError here, not at step 1000. With `skip_empty`, rows
    whose gold result is empty are left out: the official rule counts two empty results as a match, so
    `SELECT 1 WHERE 0` would earn the full reward on them. Returns (kept rows, number left out)."""
    checks = reward.check_golds([(row["gold_sql"], row["db_path"], row.get("rule")) for row in rows])
    kept = []
    for row, gold in zip(rows, checks):
        if not gold.ok:
            raise UserError(f"gold query fails on {row['db_path']}: {gold.error}: {row['gold_sql'][:120]}")
        if not (skip_empty and not gold.rows):
            kept.append(row)
    return kept, len(rows) - len(kept)
