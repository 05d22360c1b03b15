"""The execution reward and the comparison behind it, on real SQLite databases."""

import time

import pytest

from sql_rlvr import errors
from sql_rlvr import execution_reward
from sql_rlvr import sandbox
from sql_rlvr import scoring
from sql_rlvr.execution_reward import RewardValues, sql_reward
from sql_rlvr.scoring import results_match

SCRIPT = """
CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER);
INSERT INTO singer VALUES (1, 'Ann', 'France', 30), (2, 'Bob', 'France', 41), (3, 'Cid', 'Peru', 25),
                          (4, 'Dee', 'Chile', 25), (5, 'Eve', 'France', 52);
"""


@pytest.fixture
def db(make_db):
    return make_db(SCRIPT)


def test_reward_values(db):
    gold = "SELECT name FROM singer WHERE country = 'France'"
    assert sql_reward("SELECT name FROM singer WHERE country = 'France'", gold, db) == 5.0
    assert sql_reward("```sql\nSELECT name FROM singer WHERE age > 29 AND country != 'Peru';\n```", gold, db) == 5.0
    assert sql_reward("   \n", gold, db) == -2.0
    assert sql_reward("", gold, db) == -2.0
    assert sql_reward("I am not sure.", gold, db) == -1.0  # no SQL
    assert sql_reward("SELECT nme FROM singer", gold, db) == -1.0  # invalid
    assert sql_reward("DROP TABLE singer", gold, db) == -1.0  # no SELECT in it
    # only the first statement runs: all five names, three of them right -> 2.5 x F1(precision 3/5, recall 1)
    assert sql_reward("SELECT name FROM singer; DELETE FROM singer", gold, db) == pytest.approx(2.5 * 0.75)
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
    assert sql_reward(runaway, gold, db, timeout_s=0.3) == -1.0
    assert sql_reward("SELECT name FROM singer WHERE country = 'Mars'", gold, db) == 0.0  # runs, nothing overlaps


def test_partial_credit_is_f1_times_partial_max_and_below_exact(db):
    gold = "SELECT name FROM singer WHERE country = 'France'"  # Ann, Bob, Eve
    two_of_three = "SELECT name FROM singer WHERE country = 'France' AND age < 50"  # Ann, Bob
    f1 = 2 * (1.0 * 2 / 3) / (1.0 + 2 / 3)
    assert sql_reward(two_of_three, gold, db) == pytest.approx(2.5 * f1)
    everything = "SELECT name FROM singer"  # precision 3/5, recall 1
    assert sql_reward(everything, gold, db) == pytest.approx(2.5 * (2 * 0.6 * 1.0 / 1.6))
    values = RewardValues(exact=5.0, partial_max=4.99)
    same_rows_wrong_order = "SELECT name FROM singer ORDER BY name DESC"
    reward = sql_reward(same_rows_wrong_order, "SELECT name FROM singer ORDER BY name", db, values=values)
    assert reward == pytest.approx(4.99) and reward < values.exact  # F1 = 1 but order is wrong: still below exact


def test_column_permutation_matches(db):
    assert sql_reward("SELECT age, name FROM singer", "SELECT name, age FROM singer", db) == 5.0


def test_order_matters_only_when_gold_orders(db):
    assert sql_reward("SELECT name FROM singer ORDER BY age", "SELECT name FROM singer", db) == 5.0
    assert sql_reward("SELECT name FROM singer", "SELECT name FROM singer ORDER BY name DESC", db) < 5.0
    assert sql_reward("SELECT name FROM singer ORDER BY name DESC", "SELECT name FROM singer ORDER BY name DESC", db) == 5.0
    # 'order by' inside a subquery of the gold also makes order count, as in the official evaluator
    assert scoring.order_matters("SELECT name FROM (SELECT name FROM singer ORDER BY age LIMIT 3)")


def test_duplicates_count_multiset_not_set(db):
    gold = "SELECT country FROM singer"  # France x3, Peru, Chile
    assert sql_reward("SELECT DISTINCT country FROM singer", gold, db) == 5.0  # DISTINCT is removed, as officially
    assert not results_match([("France",), ("France",), ("Peru",)], [("France",), ("Peru",), ("Peru",)], False)
    assert results_match([("France",), ("France",), ("Peru",)], [("Peru",), ("France",), ("France",)], False)


def test_both_empty_match_whatever_the_columns(db):
    gold = "SELECT name, age FROM singer WHERE age > 100"
    assert sql_reward("SELECT id FROM singer WHERE country = 'Mars'", gold, db) == 5.0
    assert results_match([], [], order_matters=True)
    assert not results_match([("a",)], [], order_matters=False)


def test_official_value_rules():
    assert results_match([(2,)], [(2.0,)], False)  # Python equality
    assert not results_match([("1",)], [(1,)], False)
    assert not results_match([(1, 2)], [(1,)], False)  # column counts differ
    assert results_match([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], False)
    assert not results_match([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], True)
    assert scoring.official_normalize("SELECT a FROM t WHERE b > = 1 AND c = 'value'", is_prediction=True) == \
        "SELECT a FROM t WHERE b >= 1 AND c = '1'"
    assert scoring.remove_distinct("SELECT count(DISTINCT a) FROM t") == "SELECT count( a) FROM t"


def test_batched_reward_with_trl_calling_convention(db):
    gold = "SELECT name FROM singer WHERE country = 'France'"
    reward = execution_reward.SQLExecutionReward(timeout_s=0.5, workers=2)
    try:
        completions = [
            [{"role": "assistant", "content": "SELECT name FROM singer WHERE country = 'France'"}],
            [{"role": "assistant", "content": "SELECT name FROM singer WHERE country = 'France' AND age < 50"}],
            [{"role": "assistant", "content": "SELECT name FROM singer WHERE country = 'Mars'"}],
            [{"role": "assistant", "content": "SELECT nonsense"}],
            [{"role": "assistant", "content": ""}],
            [{"role": "assistant", "content": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"}],
        ]
        prompts = [[{"role": "user", "content": "q"}]] * len(completions)
        rewards = reward(prompts=prompts, completions=completions, gold_sql=[gold] * 6, db_path=[str(db)] * 6,
                         trainer_state=None)
        assert rewards[0] == 5.0 and 0 < rewards[1] < 5.0 and rewards[2] == 0.0
        assert rewards[3:] == [-1.0, -2.0, -1.0]
        metrics = reward.pop_metrics()
        assert metrics["outcome/match"] == pytest.approx(1 / 6)
        assert metrics["outcome/invalid"] == pytest.approx(2 / 6)
        assert metrics["outcome/timeout"] == pytest.approx(1 / 6)
        assert sum(metrics[f"outcome/{o}"] for o in execution_reward.OUTCOMES) == pytest.approx(1.0)
        assert reward.pop_metrics() == {}  # counts reset after each log
        assert len(reward._gold) == 1  # the gold query ran once for six completions
    finally:
        reward.close()


def test_batched_reward_plain_string_completions_in_process(db):
    reward = execution_reward.SQLExecutionReward(workers=1)
    rewards = reward(prompts=["q", "q"], completions=["SELECT 1", "SELECT count(*) FROM singer"],
                     gold_sql=["SELECT count(*) FROM singer"] * 2, db_path=[str(db)] * 2)
    assert rewards == [0.0, 5.0]


def test_gold_that_fails_is_a_clear_error(db):
    with pytest.raises(errors.UserError, match="gold query fails"):
        sql_reward("SELECT 1", "SELECT missing FROM singer", db)


def test_official_row_normalisation_rejects_what_python_equality_accepts():
    # quick_rej sorts each row's values by str(x) + str(type(x)): "1.0<class 'float'>" sorts before
    # "10<class 'int'>" but "1<class 'int'>" after it, so the official evaluator calls these different.
    assert not results_match([(1, 10), (2, 25)], [(1.0, 10), (2.0, 25)], order_matters=False)
    assert results_match([(1,), (2,)], [(1.0,), (2.0,)], order_matters=False)


def test_remove_distinct_splits_statements_like_sqlparse():
    assert scoring.remove_distinct("SELECT count(*) FROM singer GO SELECT 1").strip() == "SELECT count(*) FROM singer GO"
    assert scoring.remove_distinct("SELECT name FROM singer") == "SELECT name FROM singer"


def test_a_dead_worker_fails_only_its_answer_and_is_counted(db):
    gold = "SELECT count(*) FROM singer"
    reward = execution_reward.SQLExecutionReward(timeout_s=0.5, workers=2)
    try:
        assert reward(prompts=["q"] * 4, completions=[gold] * 4, gold_sql=[gold] * 4, db_path=[str(db)] * 4) == [5.0] * 4
        reward.pop_metrics()
        for process, _ in reward._pool.idle:  # as the out-of-memory killer would
            process.kill()
            process.join()
        rewards = reward(prompts=["q"] * 8, completions=[gold] * 8, gold_sql=[gold] * 8, db_path=[str(db)] * 8)
        assert rewards.count(-1.0) == 2 and rewards.count(5.0) == 6  # one answer per dead worker
        metrics = reward.pop_metrics()
        assert metrics["outcome/worker_failed"] == pytest.approx(2 / 8)
        assert all(isinstance(v, float) for v in metrics.values())
    finally:
        reward.close()


def test_worker_failures_outside_a_step_are_the_callers_to_report_not_the_next_steps(db):
    """The pass-rate filter scores through `score` before GRPO's first step: a worker that dies there is
    counted by the filter (worker_failures) and never shows up in step 1's outcome/worker_failed."""
    gold = "SELECT count(*) FROM singer"
    reward = execution_reward.SQLExecutionReward(timeout_s=0.5, workers=2)
    try:
        reward.score([gold] * 4, [gold] * 4, [str(db)] * 4)
        for process, _ in reward._pool.idle:  # as the out-of-memory killer would, during the filter
            process.kill()
            process.join()
        before = reward.worker_failures
        scored = reward.score([gold] * 8, [gold] * 8, [str(db)] * 8)
        assert reward.worker_failures - before == 2 and [o for _, o, _ in scored].count("invalid") == 2
        assert reward(prompts=["q"] * 4, completions=[gold] * 4, gold_sql=[gold] * 4, db_path=[str(db)] * 4) == [5.0] * 4
        assert reward.pop_metrics()["outcome/worker_failed"] == 0.0  # step 1: its own answers only
    finally:
        reward.close()


def _die(items, _args, emit):
    import os

    os._exit(3)


def test_repeated_worker_failures_stop_with_a_clear_error():
    pool = sandbox.WorkerPool(_die, workers=1, method="fork", max_failures=3)
    try:
        with pytest.raises(errors.UserError, match="3 SQL worker processes failed in a row"):
            pool.run([list(range(10))], None, lambda _item: 5.0, lambda item, error: error)
    finally:
        pool.close()


CTRL_C = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
from sql_rlvr import execution_reward
reward = execution_reward.SQLExecutionReward(timeout_s=5, workers=2)
try:
    reward(prompts=["q"] * 4, completions=["SELECT 1"] * 4, gold_sql=["SELECT 1"] * 4, db_path=[{db!r}] * 4)
    os.killpg(os.getpgid(0), signal.SIGINT)  # Ctrl-C in a terminal, while the workers wait (the trainer generates)
    time.sleep(5)
except KeyboardInterrupt:
    print("interrupted")
    time.sleep(1)  # the trainer's own cleanup: time for a worker to print what it would
finally:
    reward.close()
"""


def test_ctrl_c_stops_the_reward_workers_quietly(db):
    import subprocess
    import sys

    from conftest import ROOT, default_sigint

    done = subprocess.run([sys.executable, "-c", CTRL_C.format(root=str(ROOT), db=str(db))], capture_output=True,
                          text=True, timeout=60, start_new_session=True, preexec_fn=default_sigint)
    assert done.stdout.strip() == "interrupted", done.stderr
    assert "Process SpawnProcess" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_grpo_leaves_out_prompts_whose_gold_result_is_empty(spider):
    # Under the official rule two empty results match: `SELECT 1 WHERE 0` would earn +5.0 on them.
    rows = [{"gold_sql": ex["query"], "db_path": str(spider.db_path(ex["db_id"]))} for ex in spider.examples("dev")]
    reward = execution_reward.SQLExecutionReward(workers=0)
    empty_answer = "SELECT 1 WHERE 0"
    free = [r for r in rows if execution_reward.score_completion(empty_answer, r["gold_sql"], r["db_path"])[1] == "match"]
    assert len(free) == 1  # the mini-Spider's one dev question whose gold result is empty
    kept, skipped = execution_reward.checked_gold_rows(rows, reward, skip_empty=True)
    assert skipped == 1 and len(kept) == len(rows) - 1 and free[0] not in kept
    scores = reward(prompts=["q"] * len(kept), completions=[empty_answer] * len(kept),
                    gold_sql=[r["gold_sql"] for r in kept], db_path=[r["db_path"] for r in kept])
    assert max(scores) == 0.0  # no kept prompt pays anything for an empty result
    assert execution_reward.checked_gold_rows(rows, reward, skip_empty=False) == (rows, 0)  # --grpo_skip_empty_gold false


def test_gold_results_stay_in_the_workers_and_batches_carry_only_sql(db):
    # GRPO's gold checks run in the reward's worker processes, which keep the results: this process
    # holds one GoldCheck (ok, row count, time) per gold query, and scores come out as scoring in-process.
    rows = [{"gold_sql": sql, "db_path": str(db)} for sql in
            ("SELECT name FROM singer WHERE country = 'France'", "SELECT name FROM singer WHERE age > 100",
             "SELECT country, count(*) FROM singer GROUP BY country")]
    answers = ["SELECT name FROM singer WHERE age > 29 AND country != 'Peru'", "SELECT 1 WHERE 0",
               "SELECT country, count(*) FROM singer GROUP BY country ORDER BY 2", "SELECT name FROM singer"]
    reward = execution_reward.SQLExecutionReward(workers=2)
    in_process = execution_reward.SQLExecutionReward(workers=0)
    try:
        kept, skipped = execution_reward.checked_gold_rows(rows, reward, skip_empty=True)
        assert skipped == 1 and kept == [rows[0], rows[2]]
        checks = list(reward._gold.values())
        assert [(c.ok, c.rows) for c in checks] == [(True, 3), (True, 0), (True, 3)]
        assert all(isinstance(c, execution_reward.GoldCheck) for c in checks)  # no result rows in this process
        assert not any(key[1] == str(db) for key in execution_reward._GOLD_RESULTS)  # nor in its gold cache
        golds = [row["gold_sql"] for row in kept for _ in answers]
        batch = dict(prompts=["q"] * len(golds), completions=answers * len(kept), gold_sql=golds,
                     db_path=[str(db)] * len(golds))
        assert reward(**batch) == in_process(**batch)
        assert reward(**batch) == [5.0, 0.0, 0.0, pytest.approx(2.5 * 0.75), 0.0, 0.0, 5.0, 0.0]
    finally:
        reward.close()


def test_a_gold_query_stalled_in_one_sqlite_call_is_stopped_and_named(db):
    # A gold query used to run in the trainer process under its soft limit only: one stalled inside a
    # single SQLite call (trim of long strings) held up GRPO's start. It now runs in a worker, killed at
    # the gold's hard limit, and the check names it in one line.
    def doubled(n, c, name):
        return f"{name}(s) AS (SELECT '{c}' UNION ALL SELECT s || s FROM {name} WHERE length(s) * 2 <= {n})"

    trims = ", ".join(["length(trim(s, t || t || 'a'))"] * 32)
    stall = (f"WITH RECURSIVE {doubled(65_536, 'a', 'd')}, h(s) AS (SELECT max(s) FROM d), "
             f"{doubled(4096, 'b', 'e')}, g(t) AS (SELECT max(s) FROM e) SELECT max({trims}) FROM h, g")
    reward = execution_reward.SQLExecutionReward(workers=1)
    reward.gold_hard_limit_s = 1.0
    try:
        start = time.monotonic()
        with pytest.raises(errors.UserError, match="gold query fails on .*timeout: over the hard limit of 1 s"):
            execution_reward.checked_gold_rows([{"gold_sql": "SELECT count(*) FROM singer", "db_path": str(db)},
                                                {"gold_sql": stall, "db_path": str(db)}], reward, skip_empty=True)
        assert time.monotonic() - start < 1.0 + 14.0  # the hard limit, plus starting two worker processes
    finally:
        reward.close()


def test_workers_started_early_get_their_start_up_time(db):
    # train_grpo.py starts the reward's workers before it loads the model. A worker still importing when
    # its first item comes has the start-up allowance of a new one: not killed at the item's own limit.
    reward = execution_reward.SQLExecutionReward(workers=2)
    # Below a spawned worker's start-up (its imports took 1.7 s on a busy 2-core machine), far above
    # the query itself even on a loaded machine (0.01 s was not: a busy CI machine ran past it).
    reward.gold_hard_limit_s = 0.25
    try:
        reward.start()
        started = [process.pid for process, _ in reward._pool.idle]
        kept, _ = execution_reward.checked_gold_rows([{"gold_sql": "SELECT count(*) FROM singer", "db_path": str(db)}],
                                                     reward, skip_empty=True)
        assert len(kept) == 1 and reward._pool.timeouts == 0
        assert sorted(process.pid for process, _ in reward._pool.idle) == sorted(started)  # the same two processes
    finally:
        reward.close()
