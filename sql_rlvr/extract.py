"""Reading a model's answer: the SQL in it (extract_sql), whatever shape the answer takes (a bare query,
a fenced block, a label, a preamble, reasoning, a few-shot continuation).

final_sql reads the reasoning mode's answers (the last ```sql block, or the query after a think block);
split_reasoning cuts one into its reasoning and its final answer (SFT on reasoning traces).
Pure text work: imports only the standard library. The reward, evaluation and GRPO's dev checks all
read answers through it, so they can never disagree on what an answer says.
"""

from __future__ import annotations

import re

# A fence closes at the last of a run of backticks: "FROM `frpm````" ends a quoted name, then the fence.
_FENCE = re.compile(r"```[ \t]*(?:sqlite3|sqlite|sql)?[ \t]*\n?(.*?)(?:```(?!`)|$)", re.S | re.I)
_INLINE = re.compile(r"`([^`\n]+)`")
_SQL_START_UPPER = re.compile(r"\b(SELECT|WITH)\b")
# Where a query may start: a line start or after a ';', or after a label such as "SQL:",
# "query:", "**Final answer:**" (then in any case: a label says what follows).
_SQL_START = re.compile(r"(?:^|\n|;)[ \t>*_-]*(?:(?:[A-Za-z][\w ]{0,30}?)?\b(?i:sql|query|answer)\b[ \t*_]*:[ \t*_]*\s*"
                        r"(?P<labelled>(?i:select|with))|(?P<plain>SELECT|select|WITH|with))\b")
# A base model goes on with the next few-shot example; a chat model may emit its end-of-turn token.
_STOP = re.compile(r"\n[ \t]*(?:question|q|schema|database|input|context|user|human)[ \t]*:|<\|im_end\|>|<\|endoftext\|>|<\|im_start\|>", re.I)
_CONTINUATION = re.compile(r"^(FROM|WHERE|GROUP|ORDER|HAVING|LIMIT|JOIN|LEFT|INNER|UNION|INTERSECT|EXCEPT|AND|OR|ON|SELECT|\))\b", re.I)
_SQL_WORDS = {"select", "from", "where", "group", "order", "having", "limit", "join", "left", "right", "inner", "outer",
              "cross", "natural", "union", "intersect", "except", "and", "or", "on", "as", "case", "when", "then", "else",
              "end", "not", "in", "like", "between", "is", "by", "asc", "desc", "offset", "using", "with", "distinct"}
_PROSE_LINE = re.compile(r"^(?:\*\*|#+ |[-*] |\d+\. |[A-Z][a-z']+(?:[ ,:]+[a-z][a-z']*){2,})")


def _looks_like_sql_continuation(text: str) -> bool:
    return bool(_CONTINUATION.match(text))


def _is_prose_line(line: str) -> bool:
    """An explanation after the query: "This returns ...", "Explanation: ...", a markdown bullet."""
    line = line.strip()
    if not _PROSE_LINE.match(line) or line.split()[0].strip("*:,").lower() in _SQL_WORDS:
        return False
    if re.match(r"(?:\*\*|#+ |[-*] |\d+\. )", line):
        return True
    # "Name as singer name" may still be SQL; a sentence ends like one or runs on without operators
    return line.endswith((".", ":", "!", "?")) or (len(line.split()) >= 5 and not re.search(r"[=<>()]", line))


def _cut_statement(sql: str) -> str:
    """Keep the first statement: stop at a ';' outside quotes, at a blank line (an explanation), or
    at a line of prose."""
    quote = None
    for i, ch in enumerate(sql):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == ";":
            return sql[:i]
        elif ch == "\n":
            if sql[i:i + 2] == "\n\n" and sql[i:].strip() and not _looks_like_sql_continuation(sql[i:].strip()):
                return sql[:i]
            line_end = sql.find("\n", i + 1)
            if _is_prose_line(sql[i + 1:line_end if line_end >= 0 else len(sql)]):
                return sql[:i]
    return sql


def _last_query(text: str) -> str:
    """The last query statement in `text` (the final step of a multi-step answer), or ""."""
    found, pos = "", 0
    while True:
        match = _SQL_START.search(text, pos)
        if not match:
            return found
        begin = match.start("labelled") if match.group("labelled") else match.start("plain")
        sql = _cut_statement(text[begin:]).strip()
        keyword = match.group("labelled") or match.group("plain")
        # lowercase `select` without a FROM is most likely prose ("select the rows ..."), unless short
        if keyword.isupper() or match.group("labelled") or re.search(r"\bfrom\b", sql, re.I) or len(sql.split()) <= 3:
            found = sql
        pos = begin + max(len(sql), 1)


def _clean(sql: str) -> str:
    """The query without its ';' and without a stray closing code mark: a fence's ``` or an inline span's
    ` left over at the end. A backtick that closes a quoted name (`frpm`) stays: backticks come in pairs there."""
    sql = sql.strip().rstrip(";").strip()
    if sql.endswith("```"):
        sql = sql[:-3].strip().rstrip(";").strip()
    if sql.endswith("`") and sql.count("`") % 2:
        sql = sql[:-1].strip().rstrip(";").strip()
    return sql


def extract_sql(text: str | None) -> str:
    """The SQL in a model's answer: a ```sql block, plain SQL, SQL after a label or a short preamble.

    Reasoning is dropped first (`<think>...</think>`, everything before a lone `</think>`, an
    unterminated `<think>` to the end), and so is whatever follows a few-shot marker such as
    "Question:" (a base model's next example) or an end-of-turn token. Then the first of these that
    holds a query wins: the last ```sql block with a query (a schema recap block before it does
    not count), the last query that starts a line or follows a label ("SQL: ...", "query: ...")
    or a ';' (the final step of a multi-step answer), the last `inline` query, the first SELECT or
    WITH anywhere. The query ends at its ';', at a blank line or at a line of prose, and is
    returned without the semicolon. Returns "" when there is no SQL.
    """
    if not text:
        return ""
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]  # thinking that never ended: no answer after it
    for stop in _STOP.finditer(text):
        if re.search(r"(?i)\b(select|with)\b", text[:stop.start()]):
            text = text[:stop.start()]
            break
    blocks = [b for b in _FENCE.findall(text) if b.strip()]
    for block in reversed(blocks):
        sql = _last_query(block)
        if sql:
            return _clean(sql)
    if blocks:
        text = _FENCE.sub("\n", text)
    sql = _last_query(text)
    if sql:
        return _clean(sql)
    spans = [m for m in _INLINE.findall(text) if re.match(r"(?i)\s*(select|with)\b\s*\S", m)]
    if spans:
        return _clean(spans[-1])
    match = _SQL_START_UPPER.search(text)
    if not match:
        return ""
    return _clean(_last_query(text[match.start(1):]) or _cut_statement(text[match.start(1):]))


# A closed fence only: in the reasoning mode a block cut off at the length limit is no final query.
_CLOSED_FENCE = re.compile(r"```[ \t]*(?:sqlite3|sqlite|sql)?[ \t]*\n(.*?)```(?!`)", re.S | re.I)


def final_sql(text: str | None, reasoning: bool = False, opened: str = "") -> str | None:
    """The SQL of an answer's final query: what is rewarded, scored, voted and written to pred.txt.

    Without `reasoning`, extract_sql(text). With it (--reasoning true) the answer is reasoning, then the
    final query: after a think block (`<think>...</think>`, the thinking templates') whatever query
    follows it; otherwise the last closed ```sql block. None means the reasoning never reached a final
    query (a think block never closed, no closed block, a block opened after the last closed one: cut at
    the length limit, or none given), which is "no answer", never a draft picked out of the reasoning.
    An empty `text` is "" (an empty answer). `opened`: what the generation prompt ended with when the template opens the think block itself
    ("<think>\n", utils.think_opener), so that `text` starts inside it.
    """
    if not reasoning:
        return extract_sql(text)
    if not text or not text.strip():
        return ""
    text = opened + text
    if "<think>" in text.rsplit("</think>", 1)[-1]:
        return None  # a think block that never ended
    if "</think>" in text:
        return extract_sql(text.rsplit("</think>", 1)[1]) or None
    blocks = list(_CLOSED_FENCE.finditer(text))
    if not blocks or "```" in text[blocks[-1].end():]:
        return None  # no closed block, or cut inside a block after the last closed one: the final one never ended
    for block in reversed(blocks):
        sql = _last_query(block.group(1))
        if sql:
            return _clean(sql)
    return None


def split_reasoning(text: str | None) -> tuple[str, str] | None:
    """A reasoned answer as (reasoning, final answer), cut where final_sql reads its final query: around its
    think block (the reasoning without its `<think>`, the answer after `</think>`), or before the last closed
    ```sql block that holds a query (the answer from that block on). None when final_sql reads no final
    query, or the answer holds more than one think block or text before its `<think>`: SFT on reasoning
    traces (sql_rlvr/traces.py) trains only answers that a chat template renders as they are written."""
    if not text or not final_sql(text, True):
        return None
    if "</think>" in text:
        head, answer = text.rsplit("</think>", 1)
        stripped = head.lstrip()
        if "</think>" in head or head.count("<think>") > int(stripped.startswith("<think>")):
            return None
        return stripped.removeprefix("<think>"), answer
    for match in reversed(list(_CLOSED_FENCE.finditer(text))):
        if _last_query(match.group(1)):
            return text[:match.start()], text[match.start():]
    return None


# How the chat templates TRL can parse open a tool call: Qwen2.5/Qwen3 and GLM-4 `<tool_call>`, Llama 3.1/3.2
# a JSON object naming the function (or `<|python_tag|>`), GPT-OSS `to=functions.<name>`.
_TOOL_CALL_OPENER = r'<tool_call>|<\|python_tag\|>|functions\.{name}\b|"name"\s*:\s*"{name}"'


def opens_tool_call(text: str | None, tool_name: str = "execute_sql") -> bool:
    """Whether a turn's text starts a call of `tool_name`. A turn that TRL's parser returned as plain text
    (a call cut off at the length limit, or malformed) but that opens a call is an unfinished call, not
    an answer: without this its query would be scored as the final SQL."""
    return bool(text) and re.search(_TOOL_CALL_OPENER.format(name=re.escape(tool_name)), text) is not None
