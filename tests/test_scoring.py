"""Score-only evaluation on the mini-Spider, with a table checked against the official evaluator."""

import json
import shutil
import time

import pytest

from sql_rlvr import extract
from sql_rlvr import execution_reward
from sql_rlvr import sandbox
from sql_rlvr import scoring
from config import MINI_SPIDER_DIR
from conftest import run_script


def dev_golds():
    return json.loads((MINI_SPIDER_DIR / "dev.json").read_text())


def perturbed_predictions(dev):
    """17 predictions, one per official rule. Expected verdicts were confirmed by running
    test-suite-sql-eval's evaluation.py --etype exec on the same files (with the empty line replaced
    by a placeholder, since an empty line breaks its pairing): 0.500 0.500 0.800 1.000 0.647."""
    gold = [ex["query"] for ex in dev]
    preds = list(gold)
    preds[1] = "SELECT Name FROM department ORDER BY Budget ASC"  # gold orders: order counts -> wrong
    preds[3] = ""  # empty line -> wrong, pairing kept
    preds[4] = gold[4].replace("SELECT T3.Genre", "SELECT DISTINCT T3.Genre")  # DISTINCT removed on both -> match
    preds[5] = ("SELECT sum(T2.Quantity) , T1.Name FROM customer AS T1 JOIN purchase AS T2 "
                "ON T1.Customer_ID = T2.Customer_ID GROUP BY T1.Customer_ID")  # columns permuted -> match
    preds[6] = "SELECT nonsense FROM book"  # error -> wrong
    preds[9] = "SELECT Concert_Date , Attendance FROM concert ORDER BY Attendance ASC"  # wrong order
    preds[12] = "SELECT Name FROM team"  # superset -> wrong
    preds[14] = gold[14].replace("'2023-08-19'", "'value'")  # 'value' becomes 1 -> wrong
    preds[16] = gold[16] + "; DROP TABLE student"  # only the first statement counts -> match
    return preds


EXPECTED = [1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1]


@pytest.fixture
def files(tmp_path, spider):
    dev = dev_golds()
    pred, gold = tmp_path / "pred.txt", tmp_path / "gold.txt"
    pred.write_text("\n".join(perturbed_predictions(dev)) + "\n")
    gold.write_text("".join(f"{ex['query']}\t{ex['db_id']}\n" for ex in dev))
    db_dir = tmp_path / "database"
    shutil.copytree(MINI_SPIDER_DIR / "database", db_dir, ignore=shutil.ignore_patterns("*.sql", "*.sha256"))
    return pred, gold, db_dir


def test_score_only_cli_prints_the_official_table_and_writes_results(files, tmp_path):
    pred, gold, db_dir = files
    results = tmp_path / "results.jsonl"
    before = {p: p.read_bytes() for p in db_dir.rglob("*.sqlite")}
    out = run_script("evaluate.py", "--score_only", "--pred", str(pred), "--gold", str(gold),
                     "--db_dir", str(db_dir), "--results", str(results))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].split() == ["count", "4", "6", "5", "2", "17"]
    assert lines[2].split() == ["execution", "0.500", "0.500", "0.800", "1.000", "0.647"]
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(17))
    assert [int(r["exec_match"]) for r in records] == EXPECTED
    assert {"index", "db_id", "exec_match", "hardness", "error"} <= set(records[0])
    assert records[3]["error"] == "empty prediction"
    assert records[6]["error"].startswith("error: no such column")
    assert records[0]["error"] is None
    assert {p: p.read_bytes() for p in db_dir.rglob("*.sqlite")} == before  # the DROP never ran


def test_parallel_and_sequential_scoring_agree(files):
    pred, gold, db_dir = files
    golds = scoring.read_gold_file(gold)
    preds = scoring.read_pred_file(pred, len(golds))
    many_preds, many_golds = preds * 30, golds * 30  # enough pairs for the worker pool to start
    sequential = scoring.score_predictions(many_preds, many_golds, db_dir, workers=1)
    parallel = scoring.score_predictions(many_preds, many_golds, db_dir, workers=2)
    assert sequential == parallel
    assert [int(r["exec_match"]) for r in parallel[:17]] == EXPECTED


def test_timeout_is_wrong_not_a_hang(files):
    _, gold, db_dir = files
    golds = scoring.read_gold_file(gold)[:1]
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
    record = scoring.score_predictions([runaway], golds, db_dir, timeout_s=0.3, workers=1)[0]
    assert record["exec_match"] is False and record["error"].startswith("timeout")


def test_a_prediction_stalled_inside_one_sqlite_call_cannot_hang_scoring(files, monkeypatch):
    # trim(x, y) costs len(x) x len(y) character comparisons in one call, which no progress handler
    # interrupts: 32 of them run for about 40 s within SQLite's limits. Its worker is killed
    # at the item's hard limit (shortened here through the gold limit it is derived from).
    _, gold, db_dir = files
    golds = scoring.read_gold_file(gold)[:2]
    doubled = "{n}(s) AS (SELECT '{c}' UNION ALL SELECT s || s FROM {n} WHERE length(s) * 2 <= {size})"
    trims = ", ".join(["length(trim(s, t || t || 'a'))"] * 32)
    stall = (f"WITH RECURSIVE {doubled.format(n='d', c='a', size=65536)}, h(s) AS (SELECT max(s) FROM d), "
             f"{doubled.format(n='e', c='b', size=4096)}, g(t) AS (SELECT max(s) FROM e) SELECT max({trims}) FROM h, g")
    monkeypatch.setattr(scoring, "GOLD_TIMEOUT_S", 1.0)
    start = time.monotonic()
    records = scoring.score_predictions([stall, golds[1][0]], golds, db_dir, timeout_s=0.3, workers=1)
    assert time.monotonic() - start < 20.0  # the hard limit (1 + 2 x 0.3 + 2 s), plus starting two workers
    assert records[0]["outcome"] == "invalid" and records[0]["error"].startswith("timeout: over the hard limit")
    assert records[1]["exec_match"] is True  # the rest of the batch is still scored


def test_malformed_inputs_are_clear_one_line_errors(files, tmp_path):
    pred, gold, db_dir = files
    short = tmp_path / "short.txt"
    short.write_text("SELECT 1\n")
    bad_gold = tmp_path / "bad_gold.txt"
    bad_gold.write_text("SELECT 1 without a tab\n")
    failing_gold = tmp_path / "failing_gold.txt"
    failing_gold.write_text("SELECT missing_column FROM book\tbookshop\n")
    unknown_db = tmp_path / "unknown_db.txt"
    unknown_db.write_text("SELECT 1\tno_such_db\n")
    cases = [
        ((short, gold, db_dir), "has 1 lines but the gold file has 17"),
        ((short, bad_gold, db_dir), "expected 'SQL<TAB>db_id'"),
        ((short, failing_gold, db_dir), "gold queries fail to execute"),
        ((short, unknown_db, db_dir), "no database for no_such_db"),
        ((tmp_path / "absent.txt", gold, db_dir), "cannot read prediction file"),
        ((pred, gold, tmp_path / "no_dir"), "is not a folder"),
    ]
    for (p, g, d), message in cases:
        out = run_script("evaluate.py", "--score_only", "--pred", str(p), "--gold", str(g), "--db_dir", str(d))
        assert out.returncode == 2, (message, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr
        assert out.stderr.strip().count("\n") == 0


def test_score_only_needs_its_three_paths():
    out = run_script("evaluate.py", "--score_only", "--pred", "p.txt")
    assert out.returncode == 2 and "--score_only needs --gold, --db_dir" in out.stderr


def test_gold_vs_gold_is_perfect(spider):
    dev = dev_golds()
    golds = [(ex["query"], ex["db_id"]) for ex in dev]
    records = scoring.score_predictions([g for g, _ in golds], golds, MINI_SPIDER_DIR / "database", workers=1)
    assert all(r["exec_match"] for r in records)


def test_gold_and_prediction_time_limits_are_kept_apart(make_db, tmp_path):
    # A query that times out as a prediction must still run to completion as a gold query, and vice versa.
    db_dir = tmp_path / "dbs"
    (db_dir / "big").mkdir(parents=True)
    make_db("CREATE TABLE n (x INTEGER);"
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 3000) INSERT INTO n SELECT x FROM c;",
            name="dbs/big/big.sqlite")
    slow = "SELECT count(*) FROM n AS a JOIN n AS b ON a.x > b.x"
    golds = [("SELECT count(*) FROM n", "big"), (slow, "big")]
    start = sandbox.execute_sql(db_dir / "big" / "big.sqlite", slow, timeout_s=30)
    assert start.ok and start.seconds > 0.05
    records = scoring.score_predictions([slow, slow], golds, db_dir, timeout_s=start.seconds / 10, workers=1)
    assert [r["outcome"] for r in records] == ["invalid", "invalid"]  # both predictions over the limit
    assert records[0]["error"].startswith("timeout")


def test_lines_split_only_at_newlines(tmp_path):
    pred = tmp_path / "pred.txt"
    pred.write_text("SELECT 'a\x0cb'\nSELECT 2\n")
    assert scoring.read_pred_file(pred, expected=2) == ["SELECT 'a\x0cb'", "SELECT 2"]


def raw_answers(gold: str) -> list[str]:
    """Answers a model writes for one gold query: comments (with quotes and semicolons in them),
    strings holding `--`, line breaks, fences, <think> blocks, second statements, wrong queries."""
    lines = gold.replace(" FROM ", "\nFROM ").replace(" WHERE ", "\n  WHERE ").replace(" JOIN ", "\n  JOIN ")
    first, _, rest = lines.partition("\n")
    return [
        gold,
        f"{first} -- the column's name\n{rest}",
        f"```sql\n-- find it; carefully\n{lines};\n```",
        f"```sql\n{first} /* pick; the -- columns */ {rest}\n```",
        f"{lines} -- done",
        f"/* answer */ {gold}",
        f"<think>The user wants it.</think>\n{lines}",
        f"{first}\n-- FROM nowhere\n{rest}",
        f"{first} -- {rest}",  # everything after the comment is gone: wrong, both ways
        f"Here is the query:\n\n```sql\n{lines}\n```\n\nIt joins the tables.",
        f"{gold}; -- second statement follows\nDROP TABLE x",
        f"SELECT * FROM ({lines}\n) -- wrapped",
        f"{first}\n\t{rest}",
        "SELECT 1 -- nothing\n",
        "-- just a comment",
        "",
    ]


def filter_answers(gold: str) -> list[str]:
    """String literals that hold comment markers, spaces, tabs and line breaks, in a WHERE that
    still finds the gold rows when the literal matches nothing."""
    if " WHERE " not in gold or " INTERSECT " in gold or " EXCEPT " in gold:
        return []
    head, _, cond = gold.partition(" WHERE ")
    return [f"{head}\nWHERE ({cond}) OR {literal} = 'impossible'" for literal in
            ["'a -- b'", "'a /* b */ c'", "'two  spaces'", "'line\nbreak'", "'tab\there'", "'it''s -- x'"]] + [
            f"{head} WHERE ({cond}) AND 'a -- b' = 'a -- b'",
            f"{head} WHERE ({cond}) AND 'line\nbreak' = 'line' || char(10) || 'break'",
            f"{head} WHERE ({cond}) AND 'two  spaces' != 'two spaces'"]


def test_reward_and_scorer_agree_on_every_answer_as_written_to_pred_txt(spider):
    # The GRPO reward judges a raw answer; evaluation judges the line flatten_sql(extract_sql(answer))
    # written to pred.txt. Both must give the same match verdict, always.
    texts, golds, rewarded = [], [], []
    for ex in dev_golds():
        gold, db_path = ex["query"], spider.db_path(ex["db_id"])
        executed = execution_reward.execute_gold(db_path, gold, 2.0)
        for answer in raw_answers(gold) + filter_answers(gold):
            texts.append(answer)
            golds.append((gold, ex["db_id"]))
            rewarded.append(execution_reward.score_completion(answer, gold, db_path, gold=executed)[1] == "match")
    lines = [scoring.flatten_sql(extract.extract_sql(a)) for a in texts]
    assert all("\n" not in line and "\t" not in line and "\r" not in line for line in lines)
    scored = scoring.score_predictions(lines, golds, spider.root / "database", workers=1)
    disagree = [(a, line) for a, line, r, s in zip(texts, lines, rewarded, scored) if r != s["exec_match"]]
    assert disagree == []
    assert 200 < sum(rewarded) < len(texts)  # both verdicts occur, many matches among them


def test_score_only_replaces_earlier_scores_only_with_overwrite_and_compare_names_a_non_evaluation(tmp_path):
    # One rule for score-only and generation: what is written stays unless --overwrite says otherwise.
    gold, pred, results = tmp_path / "gold.txt", tmp_path / "pred.txt", tmp_path / "results.jsonl"
    gold.write_text("SELECT count(*) FROM book\tbookshop\n")
    pred.write_text("SELECT count(*) FROM book\n")
    args = ["evaluate.py", "--score_only", "--pred", str(pred), "--gold", str(gold),
            "--db_dir", str(MINI_SPIDER_DIR / "database"), "--results", str(results)]
    assert run_script(*args).returncode == 0
    first = (tmp_path / "metrics.json").read_bytes()
    again = run_script(*args)
    assert again.returncode == 2 and "Traceback" not in again.stderr and again.stderr.count("\n") == 1
    assert "already holds scores; pass --overwrite" in again.stderr
    assert (tmp_path / "metrics.json").read_bytes() == first
    assert run_script(*args, "--overwrite").returncode == 0
    # --compare on something that is not an evaluation says so, not "Expecting value: line 1 column 1"
    compared = run_script("evaluate.py", "--compare", str(pred), str(tmp_path))
    assert compared.returncode == 2 and "Traceback" not in compared.stderr
    assert f"{pred} is not an evaluation (not a JSON file)" in compared.stderr


def test_score_only_metrics_are_named_after_each_results_file(tmp_path):
    # The same predictions scored with and without --keep_distinct, side by side in one folder.
    gold, pred = tmp_path / "gold.txt", tmp_path / "pred.txt"
    gold.write_text("SELECT Country FROM author\tbookshop\n")
    pred.write_text("SELECT DISTINCT Country FROM author\n")
    args = ["evaluate.py", "--score_only", "--pred", str(pred), "--gold", str(gold),
            "--db_dir", str(MINI_SPIDER_DIR / "database")]
    plain = run_script(*args, "--results", str(tmp_path / "plain.jsonl"))
    kept = run_script(*args, "--results", str(tmp_path / "distinct.jsonl"), "--keep_distinct")
    assert plain.returncode == 0 and kept.returncode == 0, plain.stderr + kept.stderr
    a = json.loads((tmp_path / "plain.metrics.json").read_text())
    b = json.loads((tmp_path / "distinct.metrics.json").read_text())
    assert (a["ex"], a["keep_distinct"], a["results_file"]) == (1.0, False, "plain.jsonl")
    assert (b["ex"], b["keep_distinct"], b["results_file"]) == (0.0, True, "distinct.jsonl")
    again = run_script(*args, "--results", str(tmp_path / "plain.jsonl"))
    assert again.returncode == 2 and "plain.metrics.json already holds scores" in again.stderr
    # --compare: two named metrics files; a folder holding several asks which
    compared = run_script("evaluate.py", "--compare", str(tmp_path / "plain.metrics.json"),
                          str(tmp_path / "distinct.metrics.json"))
    assert compared.returncode == 0 and "broken by B (1)" in compared.stdout, compared.stderr
    ambiguous = run_script("evaluate.py", "--compare", str(tmp_path), str(tmp_path / "plain.metrics.json"))
    assert ambiguous.returncode == 2 and "distinct.metrics.json, plain.metrics.json): pass one of them" in ambiguous.stderr
    # the default results file keeps its metrics.json
    assert run_script(*args).returncode == 0 and (tmp_path / "metrics.json").exists()
