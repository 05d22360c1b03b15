"""Spider's official hardness levels (easy, medium, hard, extra) from a sqlglot parse, without the schema.

Holds spider_hardness and what it counts. Imports only sqlglot: the scorer's workers call it on every
gold query, and nothing of the rest of sql-rlvr is needed to classify SQL.

Reproduces ``Evaluator.eval_hardness`` of the official Spider evaluator
(taoyds/test-suite-sql-eval, ``evaluation.py``) without needing the database
schema: the query is parsed with sqlglot (dialect "sqlite") and the same
components are counted on the AST.  Only the *top-level* query is inspected
(for ``A UNION B`` that is ``A``); nested queries are counted, not descended.

Official rules (``count_component1``, ``count_component2``, ``count_others``):

component1 (c1) = [WHERE present] + [GROUP BY present] + [ORDER BY present]
    + [LIMIT present] + (number of FROM table units - 1)
    + number of ``OR`` connectors and number of ``LIKE`` conditions
      (``NOT LIKE`` included) in the JOIN ... ON, WHERE and HAVING conditions.
component2 (c2) = number of sub-queries used as a condition value in the
    ON / WHERE / HAVING conditions (a BETWEEN may hold two)
    + 1 if the query has an INTERSECT / UNION / EXCEPT.
    (Sub-queries in FROM only count as a table unit; in SELECT not at all.)
others (co) = [aggregations > 1] + [select items > 1] + [WHERE conditions > 1]
    + [GROUP BY columns > 1], where "aggregations" reproduces the official
    ``count_agg`` exactly, quirks included:
      - SELECT: items whose outermost expression is MAX/MIN/COUNT/SUM/AVG;
      - WHERE: conditions negated with NOT (``NOT IN``, ``NOT LIKE``, ...),
        because ``has_agg`` reads the cond_unit's ``not_op`` slot;
      - GROUP BY: aggregated columns;
      - ORDER BY: aggregated operands of each item (``SUM(a) + SUM(b)`` is 2);
      - HAVING: negated conditions plus every AND/OR connector (the official
        code applies ``has_agg`` to the raw condition list, and a connector
        string's first character is never 0); aggregates in HAVING itself
        do not count.

Levels:
    easy   if c1 <= 1 and co == 0 and c2 == 0
    medium if (co <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and co < 2 and c2 == 0)
    hard   if (co > 2 and c1 <= 2 and c2 == 0) or (2 < c1 <= 3 and co <= 2 and c2 == 0)
           or (c1 <= 1 and co == 0 and c2 <= 1)
    extra  otherwise

Official parser quirk also reproduced: a condition whose right-hand value is a
bare column (e.g. ``T1.a = T2.b``) makes the official value scanner skip ahead
to the next AND (or clause keyword), so any ``OR ...`` conditions right after
it are dropped from the counts.  Not reproduced: the rarer case where such a
skipped OR-chain holds a '(' , ',' or sub-query, after which the official
parser silently drops the rest of the query.  SQL the official parser rejects
(comma joins, INNER JOIN, IN (1, 2), IS NULL, ...) has no official label; it
gets the label the same rules give on the sqlglot AST.

Robustness: only the first statement is read; if the strict parse fails,
sqlglot's error-tolerant mode is tried and whatever query it recovers is
counted.  Input with no recoverable query (empty string, garbage, non-SELECT
statements, non-str) is classified "easy" (nothing countable: the lowest
level, rather than guessing high); the function never raises.
"""

from __future__ import annotations

import functools
import logging
from typing import Iterator, List, Optional, Tuple

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

HARDNESS_LEVELS = ("easy", "medium", "hard", "extra")


# The official AGG_OPS: ('none', 'max', 'min', 'count', 'sum', 'avg').
_AGG_TYPES = (exp.Max, exp.Min, exp.Count, exp.Sum, exp.Avg)
# The official UNIT_OPS between two column units: '-', '+', '*', '/'.
_ARITH_TYPES = (exp.Sub, exp.Add, exp.Mul, exp.Div)
_SET_OPS = (exp.Union, exp.Intersect, exp.Except)


def _strip(node: Optional[exp.Expression]) -> Optional[exp.Expression]:
    """Drop aliases and redundant parentheses, which the official parser ignores."""
    while isinstance(node, (exp.Alias, exp.Paren)):
        node = node.this
    return node


def _is_agg(node: Optional[exp.Expression]) -> bool:
    return isinstance(_strip(node), _AGG_TYPES)


def _is_query(node: exp.Expression) -> bool:
    return isinstance(node, (exp.Subquery, exp.Select) + _SET_OPS)


def _top_select(tree: exp.Expression) -> Tuple[Optional[exp.Select], bool]:
    """Return the leftmost SELECT and whether a set operation hangs off it.

    The official parser reads ``A UNION B UNION C`` as ``A`` with ``union =
    (B UNION C)``; sqlglot builds ``(A UNION B) UNION C``.  Either way the
    hardness is computed on ``A`` plus one nested IUE query.
    """
    has_iue = False
    node: Optional[exp.Expression] = tree
    while node is not None:
        if isinstance(node, _SET_OPS):
            has_iue = True
            node = node.this
        elif isinstance(node, (exp.Subquery, exp.Paren)):
            node = node.this
        elif isinstance(node, exp.Select):
            return node, has_iue
        else:
            return None, has_iue
    return None, has_iue


def _flatten(cond: Optional[exp.Expression]) -> Tuple[List[exp.Expression], List[str]]:
    """Flatten an AND/OR tree into (condition units, connectors) like the official
    ``[cond_unit, 'and'/'or', cond_unit, ...]`` list (parentheses are ignored)."""
    units: List[exp.Expression] = []
    ops: List[str] = []

    def walk(node: exp.Expression) -> None:
        node = _strip(node)
        if isinstance(node, (exp.And, exp.Or)):
            walk(node.this)
            ops.append("and" if isinstance(node, exp.And) else "or")
            walk(node.expression)
        else:
            units.append(node)

    if cond is not None:
        walk(cond)
    # Official quirk: a bare-column value swallows following OR-conditions
    # (the value scanner only stops at ',', ')', AND, or a clause keyword).
    kept_units: List[exp.Expression] = []
    kept_ops: List[str] = []
    i = 0
    while i < len(units):
        kept_units.append(units[i])
        j = i
        if _value_is_column(units[i]):
            while j < len(ops) and ops[j] == "or":
                j += 1
        if j < len(ops):
            kept_ops.append(ops[j])
        i = j + 1
    return kept_units, kept_ops


def _value_is_column(unit: exp.Expression) -> bool:
    """True when the official ``parse_value`` would scan the value as a column."""
    inner = unit.this if isinstance(unit, exp.Not) else unit
    if isinstance(inner, exp.Between):
        value = inner.args.get("high")
    elif isinstance(inner, exp.Binary):
        value = inner.expression
    else:
        return False
    value = _strip(value)
    if value is None or isinstance(value, (exp.Literal, exp.Null, exp.Boolean)):
        return False
    if isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal):
        return False
    if _is_query(value):
        return False
    # Spider writes strings in double quotes, which sqlglot reads as quoted identifiers.
    if isinstance(value, exp.Column) and not value.table and value.this.args.get("quoted"):
        return False
    return True


def _is_negated(unit: exp.Expression) -> bool:
    """Official ``not_op``: NOT IN / NOT BETWEEN / NOT LIKE ... (sqlglot wraps most
    negations in Not, but marks NOT LIKE / NOT ILIKE with ``negate=True``)."""
    return isinstance(unit, exp.Not) or bool(unit.args.get("negate"))


def _is_like(unit: exp.Expression) -> bool:
    inner = unit.this if isinstance(unit, exp.Not) else unit
    return isinstance(inner, (exp.Like, exp.ILike))


def _nested_queries(node: exp.Expression) -> Iterator[exp.Expression]:
    """Sub-queries inside a condition unit, without descending into them."""
    for child in node.iter_expressions():
        if _is_query(child):
            yield child
        else:
            yield from _nested_queries(child)


def _order_aggs(ordered: exp.Expression) -> int:
    """Official order-by items are val_units: col_unit [op col_unit]."""
    node = _strip(ordered.this if isinstance(ordered, exp.Ordered) else ordered)
    if isinstance(node, _ARITH_TYPES):
        return int(_is_agg(node.this)) + int(_is_agg(node.expression))
    return int(_is_agg(node))


def _parse(sql: str) -> Optional[exp.Expression]:
    """First statement of ``sql`` as a sqlglot tree, or None.

    A strict parse is tried first; if it fails, sqlglot's error-tolerant mode
    is used so that a slightly broken query (e.g. ``... WHERE`` cut short) is
    still counted on whatever parsed, as long as it is a query.
    """
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its warnings on garbage input are noise here
    for level in (ErrorLevel.RAISE, ErrorLevel.IGNORE):
        try:
            trees = sqlglot.parse(sql, read="sqlite", error_level=level)
        except Exception:  # tokenizer/parser errors of any type: try the next mode
            continue
        # Like the official parser, only the first statement counts.
        tree = next((t for t in trees if t is not None), None)
        if tree is not None and _is_query(tree):
            return tree
    return None


def spider_hardness_counts(sql: str) -> Optional[Tuple[int, int, int]]:
    """Return (component1, component2, others) or None when unparseable."""
    tree = _parse(sql)
    if tree is None:
        return None
    select, has_iue = _top_select(tree)
    if select is None:
        return None

    from_ = select.args.get("from_") or select.args.get("from")
    joins = select.args.get("joins") or []
    where = select.args.get("where")
    group = select.args.get("group")
    having = select.args.get("having")
    order = select.args.get("order")
    limit = select.args.get("limit")

    # JOIN ... ON conditions are concatenated with 'and' by the official parser.
    on_units: List[exp.Expression] = []
    on_ops: List[str] = []
    for join in joins:
        units, ops = _flatten(join.args.get("on"))
        if units:
            if on_units:
                on_ops.append("and")
            on_units += units
            on_ops += ops
    where_units, where_ops = _flatten(where.this if where else None)
    having_units, having_ops = _flatten(having.this if having else None)
    cond_units = on_units + where_units + having_units
    cond_ops = on_ops + where_ops + having_ops

    group_cols = list(group.expressions) if group else []
    order_items = list(order.expressions) if order else []
    n_tables = (1 if from_ is not None else 0) + len(joins)

    c1 = int(bool(where_units)) + int(bool(group_cols)) + int(bool(order_items))
    c1 += int(limit is not None)
    c1 += max(n_tables - 1, 0)
    c1 += cond_ops.count("or")
    c1 += sum(1 for u in cond_units if _is_like(u))

    c2 = sum(len(list(_nested_queries(u))) for u in cond_units) + int(has_iue)

    # A SELECT item counts only when the aggregate is its outermost token
    # (official agg_id slot); "(COUNT(*))" or "a + COUNT(*)" count 0 there.
    aggs = sum(1 for e in select.expressions
               if isinstance(e.this if isinstance(e, exp.Alias) else e, _AGG_TYPES))
    aggs += sum(1 for u in where_units if _is_negated(u))
    aggs += sum(1 for g in group_cols if _is_agg(g))
    aggs += sum(_order_aggs(o) for o in order_items)
    aggs += sum(1 for u in having_units if _is_negated(u)) + len(having_ops)
    co = int(aggs > 1) + int(len(select.expressions) > 1)
    co += int(len(where_units) > 1) + int(len(group_cols) > 1)
    return c1, c2, co


@functools.lru_cache(maxsize=65536)
def spider_hardness(sql: str) -> str:
    """Spider difficulty ("easy"/"medium"/"hard"/"extra") of a SQL query."""
    try:
        counts = spider_hardness_counts(sql) if isinstance(sql, str) else None
    except Exception:  # never raise on odd input (incl. RecursionError on deep nesting)
        counts = None
    if counts is None:
        return "easy"
    c1, c2, co = counts
    if c1 <= 1 and co == 0 and c2 == 0:
        return "easy"
    if (co <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and co < 2 and c2 == 0):
        return "medium"
    if ((co > 2 and c1 <= 2 and c2 == 0) or (2 < c1 <= 3 and co <= 2 and c2 == 0)
            or (c1 <= 1 and co == 0 and c2 <= 1)):
        return "hard"
    return "extra"
