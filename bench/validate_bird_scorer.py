"""Our BIRD verdicts against BIRD's own evaluator, question by question, on the shipped mini-BIRD.

What it does
    * writes perturbed predictions for every mini-BIRD dev question (the gold itself, ORDER BY
      added or flipped, DISTINCT added, columns swapped, integers as reals, duplicated rows, LIMIT 1, another
      question's gold, a `value` literal, an error, a trailing ';', two statements, a /* comment */,
      the non-UTF-8 owner name, ...) into `predict_dev.json` and `dev_gold.sql` with
      `benchmarks.get("bird").write_eval_files`, exactly as `evaluate.py --benchmark bird` does;
    * reads both files back with BIRD's own `evaluation_utils.package_sqls` and checks they give
      the same SQL strings and databases as ours;
    * asks BIRD's `evaluation_ex.execute_model` (func_timeout, 30 s, `set(pred) == set(gold)`) for
      every pair's verdict and compares it with `scoring.score_predictions(..., rule="bird")`;
    * runs BIRD's `evaluation_ex.py` command line (the one evaluate.py prints) on the files and
      shows its table next to ours.

How to run (repository root)
    # BIRD's evaluation/ folder, e.g. from a checkout of github.com/bird-bench/mini_dev, and func_timeout:
    python -m pip install --target /tmp/ft func_timeout
    python bench/validate_bird_scorer.py --official MINI_DEV/evaluation --official_pythonpath /tmp/ft

BIRD's evaluation_utils.py imports psycopg2 and pymysql at the top (for its MySQL and PostgreSQL
modes); the bench gives the official process empty stand-ins for both, which SQLite never uses.
Exits 0 with "skipped: ..." when the official folder is missing, 1 on a disagreement docs/evaluation.md
does not list as intended, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (the shared opening, bench/common.py: the repository on sys.path)

# Predictions where our verdict differs from BIRD's by design (docs/evaluation.md, BIRD): an empty answer is
# written as the placeholder "SELECT" and is wrong, where BIRD would execute "" and match an empty gold.
INTENDED = {"empty answer"}


def perturbations(gold: str, other: str) -> dict[str, str]:
    upper = gold.upper()
    cases = {
        "gold": gold,
        "trailing semicolon": gold + ";",
        "two statements": gold + "; SELECT 1",
        "comment first": "/* answer */ " + gold,
        "duplicated rows (UNION ALL)": f"SELECT * FROM ({gold}) UNION ALL SELECT * FROM ({gold})",
        "LIMIT 1": f"SELECT * FROM ({gold}) LIMIT 1",
        "ORDER BY added": f"SELECT * FROM ({gold}) ORDER BY 1 DESC",
        "another question's gold": other,
        "error": "SELECT no_such_column FROM businesses",
        "value literal": "SELECT 'value'",
        "not UTF-8 text": "SELECT owner_name FROM businesses",
        "empty answer": "",
    }
    if upper.startswith("SELECT COUNT("):
        cases["integers as reals"] = gold.replace("SELECT ", "SELECT 1.0 * ", 1)
    if " ORDER BY " in upper:
        cases["ORDER BY flipped"] = gold.replace(" ASC", " DESC") if " ASC" in gold else gold.replace(" DESC", " ASC")
    if upper.startswith("SELECT ") and not upper.startswith("SELECT DISTINCT"):
        cases["DISTINCT added"] = "SELECT DISTINCT " + gold[len("SELECT "):]
    if upper.startswith("SELECT DISTINCT"):
        cases["DISTINCT removed"] = "SELECT " + gold[len("SELECT DISTINCT "):]
    if "business_id, COUNT(*)" in gold:
        cases["columns swapped"] = gold.replace("business_id, COUNT(*)", "COUNT(*), business_id")
    return cases


OFFICIAL_SNIPPET = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import evaluation_ex, evaluation_utils
pred_path, gold_path, db_root = sys.argv[2], sys.argv[3], sys.argv[4]
preds, _ = evaluation_utils.package_sqls(pred_path, db_root, mode="pred")
golds, db_paths = evaluation_utils.package_sqls(gold_path, db_root, mode="gt")
verdicts = [evaluation_ex.execute_model(p, g, d, i, 30.0, "SQLite")["res"] for i, (p, g, d) in enumerate(zip(preds, golds, db_paths))]
print(json.dumps({"preds": preds, "golds": golds, "db_paths": db_paths, "verdicts": verdicts}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", required=True, help="folder holding BIRD's evaluation_ex.py and evaluation_utils.py")
    parser.add_argument("--official_python", default=sys.executable, help="Python that runs BIRD's code")
    parser.add_argument("--official_pythonpath", default="", help="extra import path for it (where func_timeout is)")
    args = parser.parse_args()
    official = Path(args.official).resolve()
    if not (official / "evaluation_ex.py").exists() or not (official / "evaluation_utils.py").exists():
        print(f"skipped: no evaluation_ex.py / evaluation_utils.py in {official}")
        return 0

    from config import MINI_BIRD_DIR
    from sql_rlvr import benchmarks, scoring

    bird = benchmarks.Bird.open(MINI_BIRD_DIR)
    dev = bird.examples("dev")
    db_root = bird.db_dir("dev")
    families, examples, preds = [], [], []
    for i, ex in enumerate(dev):
        other = dev[(i + 1) % len(dev)]["query"]
        for family, pred in perturbations(ex["query"], other).items():
            families.append(family)
            examples.append(ex)
            preds.append(pred)

    spec = benchmarks.get("bird")
    with tempfile.TemporaryDirectory(prefix="bird-validate-") as tmp:
        out = Path(tmp)
        pred_path, gold_path = spec.write_eval_files(out, examples, [scoring.flatten_sql(p) for p in preds])
        stubs = out / "stubs"
        stubs.mkdir()
        for name in ("psycopg2", "pymysql"):
            (stubs / f"{name}.py").write_text("# stand-in: BIRD's evaluation_utils imports it; SQLite never uses it\n")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(stubs), args.official_pythonpath) if p))
        run = subprocess.run([args.official_python, "-c", OFFICIAL_SNIPPET, str(official), str(pred_path), str(gold_path),
                              f"{db_root}/"], capture_output=True, text=True, env=env, timeout=3600)
        if run.returncode != 0:
            print(f"FAIL: BIRD's code did not run:\n{run.stderr[-2000:]}")
            return 1
        theirs = json.loads(run.stdout.strip().splitlines()[-1])

        golds = scoring.read_gold_file(gold_path)
        ours_preds = spec.read_predictions(pred_path, len(golds))
        records = scoring.score_predictions(ours_preds, golds, db_root, 30.0, 1, rule="bird")
        reading_ok = (theirs["preds"] == ours_preds and theirs["golds"] == [g for g, _ in golds]
                      and theirs["db_paths"] == [f"{db_root}/{db}/{db}.sqlite" for _, db in golds])

        by_family: dict[str, list[int]] = {}
        disagreements = []
        for family, record, verdict, pred in zip(families, records, theirs["verdicts"], ours_preds):
            row = by_family.setdefault(family, [0, 0, 0])
            row[0] += 1
            row[1] += int(bool(verdict))
            row[2] += int(record["exec_match"] == bool(verdict))
            if record["exec_match"] != bool(verdict):
                disagreements.append((family, pred, bool(verdict), record["exec_match"], record.get("error")))

        print("# Our BIRD verdicts vs BIRD's evaluation_ex.py, on the shipped mini-BIRD dev\n")
        print(f"- official code: `{official}`; {len(preds)} predictions over {len(dev)} questions")
        print(f"- BIRD's package_sqls reads our predict_dev.json and dev_gold.sql as we do: "
              f"{'yes' if reading_ok else 'NO'}\n")
        print("| family | n | BIRD matches | verdicts equal |\n| :--- | ---: | ---: | ---: |")
        for family, (n, hits, equal) in by_family.items():
            print(f"| {family} | {n} | {hits} | {equal}/{n} |")
        unexpected = [d for d in disagreements if d[0] not in INTENDED]
        print(f"\n{len(disagreements)} disagreement(s), {len(unexpected)} not intended")
        for family, pred, theirs_v, ours_v, error in disagreements:
            print(f"- [{family}] BIRD {theirs_v}, ours {ours_v} ({error}): {pred[:100]!r}")

        # BIRD's command line itself, as evaluate.py prints it
        command = spec.official_command(pred_path, gold_path, db_root, out)
        cli = subprocess.run([args.official_python, "-u", "evaluation_ex.py"] + command.split("#")[0].split()[3:]
                             + ["--num_cpus", "1"], cwd=official, capture_output=True, text=True, env=env, timeout=3600)
        print("\nBIRD's evaluation_ex.py on the same files:\n")
        print("\n".join(line for line in cli.stdout.splitlines() if line.strip() and not line.startswith("===")) or cli.stderr[-1500:])
        print("\nours:\n")
        summary = spec.summarize([{**r, "difficulty": ex["difficulty"]} for r, ex in zip(records, examples)])
        print(spec.format_table(summary))
    return 1 if unexpected or not reading_ok or cli.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
