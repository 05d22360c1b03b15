"""extract_sql on the shapes of answer that base and instruct models write."""

import sqlite3

import pytest

from sql_rlvr import extract
from sql_rlvr import execution_reward

Q = "SELECT name FROM singer WHERE age > 30"

SHAPES = [
    # --- plain answers
    ("plain", Q, Q),
    ("semicolon", Q + ";", Q),
    ("trailing newline", Q + ";\n", Q),
    ("lowercase", "select name from singer where age > 30", "select name from singer where age > 30"),
    ("multi-line", "SELECT name\nFROM singer\nWHERE age > 30;", "SELECT name\nFROM singer\nWHERE age > 30"),
    ("capitalised columns on their own lines", "SELECT Name,\n  Age\nFROM singer", "SELECT Name,\n  Age\nFROM singer"),
    ("nested query on its own line", "SELECT name FROM singer WHERE age > (\n  SELECT avg(age) FROM singer\n)",
     "SELECT name FROM singer WHERE age > (\n  SELECT avg(age) FROM singer\n)"),
    ("CTE", "WITH old AS (SELECT * FROM singer WHERE age > 30) SELECT name FROM old",
     "WITH old AS (SELECT * FROM singer WHERE age > 30) SELECT name FROM old"),
    # --- preambles and labels
    ("preamble on its own line", "Here is the query:\n" + Q, Q),
    ("preamble on the same line", "Sure. " + Q, Q),
    ("label SQL:", "SQL: " + Q, Q),
    ("label query: lowercase", "query: select name from singer", "select name from singer"),
    ("label SQL: lowercase query", "SQL: select name from singer", "select name from singer"),
    ("label Query: then prose", "Query: select name from singer\nThis lists every singer.", "select name from singer"),
    ("label on its own line", "SQL query:\nselect name\nfrom singer", "select name\nfrom singer"),
    ("markdown bold label", "**Final answer:** " + Q, Q),
    ("label Answer:", "Answer: " + Q, Q),
    ("prose Select is not SQL", "Select the singers older than 30:\n" + Q, Q),
    # --- trailing prose
    ("explanation after a blank line", Q + "\n\nThis returns the names.", Q),
    ("explanation on the next line", Q + "\nThis returns the names of singers older than 30.", Q),
    ("explanation label on the next line", "SELECT name\nFROM singer\nExplanation: it filters by age.",
     "SELECT name\nFROM singer"),
    ("markdown bullet after", Q + "\n- `name` is the singer's name", Q),
    ("capitalised column then lowercase keywords", "SELECT\n  Name as singer_name\nFROM singer",
     "SELECT\n  Name as singer_name\nFROM singer"),
    ("explanation without a full stop", Q + "\nIt keeps the singers older than thirty", Q),
    ("UNION after a blank line is SQL", "SELECT a FROM t\n\nUNION SELECT b FROM u", "SELECT a FROM t\n\nUNION SELECT b FROM u"),
    # --- fences
    ("sql fence", "```sql\n" + Q + ";\n```", Q),
    ("SQL fence uppercase", "```SQL\n" + Q + "\n```", Q),
    ("sqlite fence", "```sqlite\n" + Q + "\n```", Q),
    ("bare fence and prose", "```\n" + Q + "\n```\nThis lists the names.", Q),
    ("fence with a comment line", "```sql\n-- older singers\n" + Q + "\n```", Q),
    ("unterminated fence (out of tokens)", "```sql\n" + Q, Q),
    ("schema recap block first", "The tables are:\n```sql\nCREATE TABLE singer (name TEXT, age INT);\n```\n"
                                  "The query:\n```sql\n" + Q + ";\n```", Q),
    ("schema recap in the same block", "```sql\nCREATE TABLE singer (name TEXT, age INT);\n" + Q + ";\n```", Q),
    ("multi-step blocks: the final one", "First the average:\n```sql\nSELECT avg(age) FROM singer;\n```\n"
                                         "Then:\n```sql\n" + Q + ";\n```", Q),
    ("multi-step in one block", "```sql\nSELECT avg(age) FROM singer;\n" + Q + ";\n```", Q),
    ("multi-step in plain text", "Step 1: find the average.\nSELECT avg(age) FROM singer;\nStep 2: use it.\n" + Q + ";", Q),
    # --- inline code
    ("inline with a full stop", "The answer is `" + Q + "`.", Q),
    ("inline alone", "`" + Q + "`", Q),
    # --- reasoning
    ("think block", "<think>maybe SELECT age FROM singer</think>\n" + Q, Q),
    ("think then fence", "<think>\nI need names.\n</think>\n\n```sql\n" + Q + "\n```", Q),
    ("closing tag only (template opened it)", "The user wants names, so SELECT name.\n</think>\n\n" + Q, Q),
    ("unterminated think", "<think>I wonder whether SELECT name FROM singer is right", ""),
    # --- base-model continuations and special tokens
    ("next few-shot example", Q + "\n\nQuestion: How many singers are there?\nSQL: SELECT count(*) FROM singer", Q),
    ("end-of-turn token", Q + "<|im_end|>", Q),
    # --- statements that are not queries
    ("second statement dropped", Q + "; DROP TABLE singer", Q),
    ("semicolon inside a string", "SELECT name FROM singer WHERE note = 'a;b';", "SELECT name FROM singer WHERE note = 'a;b'"),
    # --- backtick-quoted names (BIRD's and MySQL's usual quoting): the closing backtick is part of the query
    ("backtick name at the end", "SELECT count(*) FROM `frpm`", "SELECT count(*) FROM `frpm`"),
    ("backtick name before ;", "SELECT count(*) FROM `frpm`;", "SELECT count(*) FROM `frpm`"),
    ("backtick name with spaces", "SELECT `School Name` FROM `frpm` WHERE `County Name` = 'Alameda';",
     "SELECT `School Name` FROM `frpm` WHERE `County Name` = 'Alameda'"),
    ("backtick names in a fence", "```sql\nSELECT `School Name` FROM `frpm`;\n```", "SELECT `School Name` FROM `frpm`"),
    ("backtick name in a fence without newline", "```sql\nSELECT count(*) FROM `frpm````", "SELECT count(*) FROM `frpm`"),
    ("backtick names after a preamble", "Here is the query:\nSELECT T1.`School Name` FROM `frpm` AS T1",
     "SELECT T1.`School Name` FROM `frpm` AS T1"),
    ("stray closing mark", "SELECT count(*) FROM frpm`", "SELECT count(*) FROM frpm"),
    # --- no SQL
    ("refusal", "I cannot answer that.", ""),
    ("only a schema", "```sql\nCREATE TABLE singer (name TEXT);\n```", ""),
    ("empty", "", ""),
    ("whitespace", "   \n", ""),
]


@pytest.mark.parametrize("answer, sql", [pytest.param(a, s, id=name) for name, a, s in SHAPES])
def test_extract_sql(answer, sql):
    assert extract.extract_sql(answer) == sql


COUNT = "SELECT count(*) FROM frpm WHERE \"County Name\" = 'Alameda'"
NAMES = "SELECT \"School Name\" FROM frpm WHERE \"County Name\" = 'Alameda'"
# (answer, a gold query with the same result). Inline code cannot hold a backtick-quoted name (the name's
# backtick ends the span), so a model writes a fence or plain text instead.
BACKTICK_ANSWERS = [
    ("SELECT count(*) FROM `frpm` WHERE `County Name` = 'Alameda'", COUNT),
    ("SELECT count(*) FROM `frpm` WHERE `County Name` = 'Alameda';", COUNT),
    ("```sql\nSELECT `School Name` FROM `frpm` WHERE `County Name` = 'Alameda';\n```", NAMES),
    ("```sql\nSELECT count(*) FROM frpm WHERE `County Name` = 'Alameda'````", COUNT),
    ("Sure:\n\nSELECT `School Name`\nFROM `frpm`\nWHERE `County Name` = 'Alameda';\n\nThis lists them.", NAMES),
    ("The answer is `SELECT count(*) FROM frpm WHERE county = 'x'`.", "SELECT count(*) FROM frpm WHERE 0"),
]


def test_a_backtick_quoted_answer_gets_the_verdict_of_its_clean_query(tmp_path):
    # The reward's verdict, the pred.txt line's verdict (what evaluation scores) and the clean query's own
    # verdict agree, under both benchmarks' rules: a correct answer that ends in a quoted name is a match
    # everywhere (it used to lose its last backtick: invalid SQL, -1).
    from sql_rlvr import scoring

    db = tmp_path / "bird_like" / "bird_like.sqlite"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE frpm (\"School Name\" TEXT, \"County Name\" TEXT, county TEXT);"
                       "INSERT INTO frpm VALUES ('A', 'Alameda', 'a'), ('B', 'Alameda', 'b'), ('C', 'Fresno', 'c');")
    conn.commit()
    conn.close()
    for answer, gold in BACKTICK_ANSWERS:
        clean = extract.extract_sql(answer)
        assert "`" not in answer.replace("```", "") or clean.count("`") % 2 == 0, (answer, clean)
        for rule in ("spider", "bird"):
            reward = execution_reward.sql_reward(answer, gold, db, rule=rule)
            line = scoring.flatten_sql(clean)  # the pred.txt line
            records = scoring.score_predictions([line, clean], [(gold, "bird_like")] * 2, tmp_path, rule=rule)
            assert reward == 5.0 and [r["outcome"] for r in records] == ["match", "match"], (answer, rule, records)


def test_enough_shapes():
    assert len(SHAPES) >= 30
