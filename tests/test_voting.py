"""Self-consistency voting (issue 11) on a real SQLite database, score-only with several files, --compare."""

import json
import shutil

import pytest

from sql_rlvr import scoring
from config import MINI_SPIDER_DIR
from conftest import run_script

GOLD = ("SELECT a FROM t", "shop")


@pytest.fixture
def db_dir(make_db, tmp_path):
    (tmp_path / "dbs" / "shop").mkdir(parents=True)
    make_db("CREATE TABLE t (a INTEGER, b REAL, c TEXT);"
            "INSERT INTO t VALUES (1, 1.0, 'x'), (2, 2.5, 'y'), (2, 2.5, 'y'), (3, 4.0, 'z');",
            name="dbs/shop/shop.sqlite")
    return tmp_path / "dbs"


def vote(candidates, db_dir, gold=GOLD, **kwargs):
    return scoring.vote_predictions([candidates], [gold], db_dir, workers=1, **kwargs)[0]


def test_the_largest_group_wins_and_its_earliest_candidate_is_chosen(db_dir):
    record = vote(["SELECT b FROM t", "SELECT a FROM t WHERE a > 1", "SELECT a FROM t WHERE a >= 2",
                   "SELECT a + 0 FROM t WHERE a != 1"], db_dir)
    assert (record["chosen"], record["votes"], record["executed"]) == (1, 3, 4)
    assert record["groups"] == [0, 1, 1, 1]
    assert record["exec_match"] is False and record["any_match"] is False  # the gold returns 1, 2, 2, 3


def test_a_tie_goes_to_the_group_holding_the_earliest_candidate(db_dir):
    record = vote(["SELECT c FROM t", "SELECT a FROM t", "SELECT a FROM t ORDER BY a DESC", "SELECT c FROM t"], db_dir)
    assert (record["chosen"], record["votes"]) == (0, 2)
    record = vote(["SELECT nonsense", "SELECT a FROM t", "SELECT c FROM t"], db_dir)
    assert (record["chosen"], record["votes"], record["executed"]) == (1, 1, 2)
    assert record["exec_match"] is True and record["candidate_matches"] == [False, True, False]


def test_failing_empty_refused_and_timed_out_candidates_do_not_vote(db_dir):
    runaway = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT count(*) FROM r"
    record = scoring.vote_predictions([["SELECT missing FROM t", "", scoring.EMPTY_PREDICTION, "DROP TABLE t",
                                      "SELECT missing FROM t", runaway, runaway, "SELECT c FROM t"]],
                                    [GOLD], db_dir, timeout_s=0.2, workers=1)[0]
    assert (record["chosen"], record["votes"], record["executed"]) == (7, 1, 1)
    assert record["groups"] == [None] * 7 + [7]
    assert record["candidate_outcomes"][:4] == ["invalid", "empty", "empty", "invalid"]


@pytest.mark.slow
def test_a_candidate_stopped_at_the_hard_limit_does_not_vote_and_the_others_still_do(db_dir, monkeypatch):
    # trim(x, y) in one VM step stalls for about 40 s: only killing the worker stops it (WorkerPool).
    # That candidate runs out of time and must not vote; the other candidates of the question still do.
    doubled = "{n}(s) AS (SELECT '{c}' UNION ALL SELECT s || s FROM {n} WHERE length(s) * 2 <= {size})"
    trims = ", ".join(["length(trim(s, t || t || 'a'))"] * 32)
    stall = (f"WITH RECURSIVE {doubled.format(n='d', c='a', size=65536)}, h(s) AS (SELECT max(s) FROM d), "
             f"{doubled.format(n='e', c='b', size=4096)}, g(t) AS (SELECT max(s) FROM e) SELECT max({trims}) FROM h, g")
    monkeypatch.setattr(scoring, "GOLD_TIMEOUT_S", 1.0)  # shortens the hard limits derived from it
    records = scoring.vote_predictions([[stall, "SELECT c FROM t", "SELECT a FROM t", "SELECT a FROM t"],
                                      [stall, stall], ["SELECT a FROM t"]],
                                     [GOLD] * 3, db_dir, timeout_s=0.3, workers=1)
    assert (records[0]["chosen"], records[0]["votes"], records[0]["executed"]) == (2, 2, 3)
    assert records[0]["groups"] == [None, 1, 2, 2] and records[0]["exec_match"] is True
    assert records[0]["candidate_outcomes"] == ["invalid", "wrong", "match", "match"]
    assert records[0]["any_match"] is True and records[0]["candidate_matches"] == [False, False, True, True]
    # no candidate ran: c0 is chosen, wrong, with why
    assert (records[1]["chosen"], records[1]["votes"], records[1]["executed"]) == (0, 0, 0)
    assert records[1]["outcome"] == "invalid" and records[1]["error"].startswith("timeout: over the hard limit")
    assert records[2]["exec_match"] is True


def test_when_no_candidate_runs_the_first_is_chosen(db_dir):
    record = vote(["SELECT missing FROM t", "", "SELECT also_missing FROM t"], db_dir)
    assert (record["chosen"], record["votes"], record["executed"]) == (0, 0, 0)
    assert record["outcome"] == "invalid" and record["exec_match"] is False


def test_groups_ignore_row_order_keep_column_order_and_tell_1_from_1_0(db_dir):
    assert vote(["SELECT a FROM t ORDER BY a", "SELECT a FROM t ORDER BY a DESC"], db_dir)["groups"] == [0, 0]
    # the scorer lets columns be permuted against the gold, but candidates agree only column for column
    assert vote(["SELECT a, c FROM t", "SELECT c, a FROM t"], db_dir)["groups"] == [0, 1]
    assert vote(["SELECT 1", "SELECT 1.0", "SELECT '1'", "SELECT 1"], db_dir)["groups"] == [0, 1, 2, 0]
    # a REAL column's 1.0 and an INTEGER column's 1 stay apart too
    assert vote(["SELECT a FROM t WHERE a = 1", "SELECT b FROM t WHERE a = 1"], db_dir)["groups"] == [0, 1]


def test_distinct_is_removed_before_grouping_unless_kept(db_dir):
    candidates = ["SELECT c FROM t", "SELECT DISTINCT a FROM t", "SELECT a FROM t"]
    record = vote(candidates, db_dir)
    assert record["groups"] == [0, 1, 1] and record["chosen"] == 1 and record["exec_match"] is True
    kept = vote(candidates, db_dir, keep_distinct=True)
    assert kept["groups"] == [0, 1, 2] and kept["chosen"] == 0 and kept["candidate_matches"] == [False, False, True]


def test_the_chosen_prediction_is_scored_like_any_prediction(db_dir):
    candidates = [["SELECT c FROM t", "SELECT a FROM t", "SELECT a FROM t"], ["SELECT b FROM t"] * 2]
    golds = [GOLD, ("SELECT b FROM t", "shop")]
    voted = scoring.vote_predictions(candidates, golds, db_dir, workers=2)
    plain = scoring.score_predictions([c[v["chosen"]] for c, v in zip(candidates, voted)], golds, db_dir, workers=1)
    assert [v["exec_match"] for v in voted] == [p["exec_match"] for p in plain] == [True, True]
    assert [v["any_match"] for v in voted] == [True, True]


# ---------------------------------------------------------------- score-only with several files

def write_files(tmp_path, columns):
    dev = json.loads((MINI_SPIDER_DIR / "dev.json").read_text())
    gold = tmp_path / "gold.txt"
    gold.write_text("".join(f"{ex['query']}\t{ex['db_id']}\n" for ex in dev))
    paths = []
    for name, preds in columns.items():
        path = tmp_path / name
        path.write_text("".join(p + "\n" for p in preds))
        paths.append(path)
    return dev, gold, paths


def score_only(*args):
    return run_script("evaluate.py", "--score_only", *map(str, args))


def test_score_only_votes_among_several_files(tmp_path):
    dev = json.loads((MINI_SPIDER_DIR / "dev.json").read_text())
    right = [ex["query"] for ex in dev]
    wrong = ["SELECT 1"] * len(dev)
    half = [q if i % 2 else "SELECT 1" for i, q in enumerate(right)]
    _, gold, (a, b, c) = write_files(tmp_path, {"a.txt": wrong, "b.txt": half, "c.txt": right})
    results = tmp_path / "out" / "results.jsonl"
    out = score_only("--pred", a, "--pred", b, "--pred", c, "--gold", gold, "--db_dir", MINI_SPIDER_DIR / "database",
                     "--results", results)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert {"chosen", "votes", "executed", "any_match", "exec_match"} <= set(records[0])
    # even questions: a and b agree on SELECT 1 (2 votes) and beat c; odd ones: a alone vs b = c
    assert [r["chosen"] for r in records] == [0 if i % 2 == 0 else 1 for i in range(len(dev))]
    assert [r["exec_match"] for r in records] == [bool(i % 2) for i in range(len(dev))]
    assert all(r["any_match"] for r in records)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["mode"] == "score_only" and metrics["k"] == 3 and metrics["pass_at_k"] == 1.0
    assert metrics["ex"] == metrics["ex_vote"] == pytest.approx(8 / 17)
    assert [f["ex"] for f in metrics["ex_files"]] == pytest.approx([0.0, 8 / 17, 1.0])
    assert metrics["pred_files"] == [str(p.resolve()) for p in (a, b, c)]
    assert set(metrics["pass_at_k_by_hardness"]) == {"easy", "medium", "hard", "extra", "all"}
    lines = out.stdout.splitlines()
    assert next(line for line in lines if line.startswith("pass@3")).split()[-1] == "1.000"
    assert next(line for line in lines if line.startswith("file 2: c.txt")).split()[-1] == "1.000"


def test_one_pred_file_scores_as_before_and_writes_metrics(tmp_path):
    dev, gold, (a,) = write_files(tmp_path, {"a.txt": [ex["query"] for ex in json.loads((MINI_SPIDER_DIR / "dev.json").read_text())]})
    out = score_only("--pred", a, "--gold", gold, "--db_dir", MINI_SPIDER_DIR / "database")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[2].split() == ["execution", "1.000", "1.000", "1.000", "1.000", "1.000"]
    record = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    assert "chosen" not in record
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["ex"] == 1.0 and metrics["by_hardness"]["all"]["count"] == len(dev)
    assert metrics["pred_files"] == [str(a.resolve())] and metrics["keep_distinct"] is False


def test_a_wrong_length_file_among_several_is_one_line(tmp_path):
    dev, gold, (a, short) = write_files(tmp_path, {"a.txt": ["SELECT 1"] * 17, "short.txt": ["SELECT 1"] * 3})
    out = score_only("--pred", a, "--pred", short, "--gold", gold, "--db_dir", MINI_SPIDER_DIR / "database")
    assert out.returncode == 2 and "short.txt has 3 lines but the gold file has 17" in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr


# ---------------------------------------------------------------- --compare

def test_compare_two_score_only_folders_with_vote_and_ts(tmp_path):
    dev = json.loads((MINI_SPIDER_DIR / "dev.json").read_text())
    right = [ex["query"] for ex in dev]
    _, gold, (a, b) = write_files(tmp_path, {"a.txt": ["SELECT 1"] + right[1:], "b.txt": right})
    suite = tmp_path / "suite"
    shutil.copytree(MINI_SPIDER_DIR / "test_suite", suite, ignore=shutil.ignore_patterns("*.sql", "*.sha256"))
    assert score_only("--pred", a, "--gold", gold, "--db_dir", suite, "--results", tmp_path / "A" / "r.jsonl").returncode == 0
    assert score_only("--pred", b, "--pred", a, "--gold", gold, "--db_dir", MINI_SPIDER_DIR / "database",
                      "--results", tmp_path / "B" / "r.jsonl").returncode == 0  # a 1-1 tie goes to b, the first
    # a generation-style ts block in A's metrics shows as its own table
    # (score-only's metrics are named after --results: r.jsonl -> r.metrics.json; --compare finds it in the folder)
    metrics_a = json.loads((tmp_path / "A" / "r.metrics.json").read_text())
    metrics_a.update(ts=metrics_a["ex"], ts_by_hardness=metrics_a["by_hardness"])
    (tmp_path / "A" / "r.metrics.json").write_text(json.dumps(metrics_a))
    out = run_script("evaluate.py", "--compare", str(tmp_path / "A"), str(tmp_path / "B" / "r.metrics.json"))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "voted EX:" in text and "pass@k (k = - / 2):" in text and "test-suite accuracy (ts):" in text
    easy = [line.split() for line in text.splitlines() if line.startswith("easy")]
    assert easy[0][:4] == ["easy", "0.750", "1.000", "+0.250"]  # EX first
    assert easy[1] == ["easy", "-", "1.000", "-"]  # voted EX: only B has it
    assert "fixed by B (1)" in text and "broken by B (0)" in text


def test_compare_refuses_other_questions_before_printing_and_bad_json(tmp_path):
    dev = json.loads((MINI_SPIDER_DIR / "dev.json").read_text())
    _, gold, (a,) = write_files(tmp_path, {"a.txt": [ex["query"] for ex in dev]})
    short_gold = tmp_path / "short_gold.txt"
    short_gold.write_text("".join(gold.read_text().splitlines(keepends=True)[:5]))
    (tmp_path / "five.txt").write_text("".join(ex["query"] + "\n" for ex in dev[:5]))
    assert score_only("--pred", a, "--gold", gold, "--db_dir", MINI_SPIDER_DIR / "database",
                      "--results", tmp_path / "A" / "r.jsonl").returncode == 0
    assert score_only("--pred", tmp_path / "five.txt", "--gold", short_gold, "--db_dir", MINI_SPIDER_DIR / "database",
                      "--results", tmp_path / "B" / "r.jsonl").returncode == 0
    # same counts, other gold queries: caught by the questions' fingerprint
    swapped = tmp_path / "swapped_gold.txt"
    lines = gold.read_text().splitlines(keepends=True)
    swapped.write_text("".join([lines[1], lines[0]] + lines[2:]))
    assert score_only("--pred", a, "--gold", swapped, "--db_dir", MINI_SPIDER_DIR / "database",
                      "--results", tmp_path / "C" / "r.jsonl").returncode == 0
    no_hardness = tmp_path / "plain.json"
    no_hardness.write_text(json.dumps({"ex": 0.5}))
    for other, message in ((tmp_path / "B", "evaluations of different questions"),
                           (tmp_path / "C", "evaluations of different questions"),
                           (no_hardness, "no by_hardness"),
                           (tmp_path / "absent", "cannot read")):
        out = run_script("evaluate.py", "--compare", str(tmp_path / "A"), str(other))
        assert out.returncode == 2, (other, out.stderr)
        assert message in out.stderr and out.stdout == "" and out.stderr.strip().count("\n") == 0


def test_compare_accepts_the_same_questions_written_with_other_whitespace(tmp_path):
    # Spider's own dev_gold.sql spaces its queries differently from the gold.txt evaluate.py writes
    # (`name ,  country` vs `name , country`, 778 of 1034 dev lines): scoring another system against it
    # and comparing with our evaluation must pair the questions, not refuse them as different.
    dev = json.loads((MINI_SPIDER_DIR / "dev.json").read_text())
    _, gold, (a,) = write_files(tmp_path, {"a.txt": [ex["query"] for ex in dev]})
    spaced = tmp_path / "spaced_gold.txt"
    spaced.write_text("".join(f"{ex['query'].replace(' FROM ', '  FROM  ').replace(' WHERE ', ' WHERE   ')}\t{ex['db_id']}\n" for ex in dev))
    for name, gold_file in (("A", gold), ("B", spaced)):
        assert score_only("--pred", a, "--gold", gold_file, "--db_dir", MINI_SPIDER_DIR / "database",
                          "--results", tmp_path / name / "r.jsonl").returncode == 0
    out = run_script("evaluate.py", "--compare", str(tmp_path / "A"), str(tmp_path / "B"))
    assert out.returncode == 0, out.stderr
    assert "all" in out.stdout and "broken by B (0)" in out.stdout


@pytest.mark.parametrize("lines", [["[1]"], ['{"db_id": "shop"}'], ['"text"']])
def test_compare_reports_malformed_per_question_records_in_one_line(tmp_path, lines):
    dev = json.loads((MINI_SPIDER_DIR / "dev.json").read_text())
    _, gold, (a,) = write_files(tmp_path, {"a.txt": [ex["query"] for ex in dev]})
    for name in ("A", "B"):
        assert score_only("--pred", a, "--gold", gold, "--db_dir", MINI_SPIDER_DIR / "database",
                          "--results", tmp_path / name / "r.jsonl").returncode == 0
    (tmp_path / "B" / "r.jsonl").write_text("".join(line + "\n" for line in lines * len(dev)))
    out = run_script("evaluate.py", "--compare", str(tmp_path / "A"), str(tmp_path / "B"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.startswith("error: ") and "r.jsonl" in out.stderr and out.stderr.strip().count("\n") == 0
