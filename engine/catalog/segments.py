"""Who a notification is for: derived segments (spend tier, activity, interest tags), the
followers of a topic, and the one SQL condition that selects an audience.

Membership is decided in exactly one place, `audience_filter`: the accept answer's count,
the cutting of the audience into chunks and each chunk's reload all select recipients
with it, so the people counted, cut and planned are the same people. `tier` and
`activity` derive the same attributes for showing a recipient; the tests hold the SQL
to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    Boolean,
    ColumnElement,
    Float,
    Text,
    and_,
    case,
    cast,
    distinct,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, array
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import col

from engine.settings import Settings
from engine.store.models import Follow, Notification, Recipient
from engine.timeutil import aware, now

TIERS = ("whale", "dolphin", "minnow")
ACTIVITIES = ("active", "sleeping", "churned")


def tier(annual_spend: float, settings: Settings) -> str:
    """`whale` above the whale threshold, `minnow` below the dolphin one, else `dolphin`."""
    if annual_spend > settings.whale_spend:
        return "whale"
    if annual_spend >= settings.dolphin_spend:
        return "dolphin"
    return "minnow"


def activity(last_active_at: datetime | None, at: datetime, settings: Settings) -> str:
    """`active` within the active window, `sleeping` up to the sleeping one, else `churned`."""
    seen = aware(last_active_at)
    if seen is None:
        return "churned"
    days = (at - seen) / timedelta(days=1)
    if days <= settings.active_days:
        return "active"
    if days <= settings.sleeping_days:
        return "sleeping"
    return "churned"


def segment_at(notification: Notification) -> datetime:
    """The instant a notification's segment is judged at: its `send_at`, else when it was
    accepted. Activity ("active within 7 days") is relative; one instant keeps the accept
    count, the plan and every chunk in agreement."""
    return aware(notification.send_at) or aware(notification.created_at) or now()


class _HasTags(ColumnElement[bool]):
    """Whether a recipient's `tags` (a JSON list) hold any, or all, of some tags."""

    inherit_cache = False
    type = Boolean()

    def __init__(self, column: Any, tags: Sequence[str], *, every: bool) -> None:
        self.column = column
        self.tags = sorted(set(tags))
        self.every = every


@compiles(_HasTags)
def _has_tags_json_each(element: _HasTags, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite: the list's elements as rows of json_each(); a null or missing list has none.
    values = func.json_each(element.column).table_valued("value")
    wanted = values.c.value.in_(element.tags)
    if element.every:
        found = select(func.count(distinct(values.c.value))).where(wanted).scalar_subquery()
        return compiler.process(found == len(element.tags), **kw)
    return compiler.process(exists(select(literal(1)).select_from(values).where(wanted)), **kw)


@compiles(_HasTags, "postgresql")
def _has_tags_jsonb(element: _HasTags, compiler: SQLCompiler, **kw: Any) -> str:
    # PostgreSQL: jsonb's `?|` (any) and `?&` (all) over the list's string elements.
    tags = cast(element.column, JSONB)
    wanted = cast(array(element.tags), ARRAY(Text))
    found = tags.has_all(wanted) if element.every else tags.has_any(wanted)
    return compiler.process(found, **kw)


RANGE_OPERATORS = ("gt", "gte", "lt", "lte")


def _compare(value: Any, operator: str, bound: Any) -> ColumnElement[bool]:
    if operator == "gt":
        return value > bound  # type: ignore[no-any-return]
    if operator == "gte":
        return value >= bound  # type: ignore[no-any-return]
    if operator == "lt":
        return value < bound  # type: ignore[no-any-return]
    return value <= bound  # type: ignore[no-any-return]


class _Attribute(ColumnElement[bool]):
    """Whether a recipient's attribute (in the `attributes` JSON document) meets one
    condition: `{"eq": v}`, `{"in": [v, …]}` or bounds (`gt`, `gte`, `lt`, `lte`).

    A value matches its own JSON type only (a number a number, text text, a boolean a
    boolean); bounds that are numbers match numbers, bounds that are texts match texts
    by code point (byte order of UTF-8, the same on both databases); a missing attribute
    matches nothing.
    """

    inherit_cache = False
    type = Boolean()

    def __init__(self, column: Any, key: str, condition: dict[str, Any]) -> None:
        self.column = column
        self.key = key
        self.condition = condition


def _values(condition: dict[str, Any]) -> list[Any]:
    return [condition["eq"]] if "eq" in condition else list(condition.get("in", ()))


@compiles(_Attribute)
def _attribute_json1(element: _Attribute, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite: json_type() says the JSON type ('integer', 'real', 'text', 'true', 'false').
    path = f'$."{element.key}"'
    kind = func.json_type(element.column, path)
    value = func.json_extract(element.column, path)
    number = kind.in_(("integer", "real"))
    parts: list[ColumnElement[bool]] = []
    for wanted in _values(element.condition):
        if isinstance(wanted, bool):
            parts.append(kind == ("true" if wanted else "false"))
        elif isinstance(wanted, int | float):
            parts.append(and_(number, value == wanted))
        else:
            parts.append(and_(kind == "text", value == wanted))
    bounds = [(op, element.condition[op]) for op in RANGE_OPERATORS if op in element.condition]
    if bounds:
        texts = isinstance(bounds[0][1], str)  # the schema makes them all one kind
        clause = and_(
            kind == "text" if texts else number,
            *(_compare(value, op, bound) for op, bound in bounds),
        )
    else:
        clause = or_(false(), *parts)
    return f"({compiler.process(clause, **kw)})"  # one term inside AND / OR


@compiles(_Attribute, "postgresql")
def _attribute_jsonb(element: _Attribute, compiler: SQLCompiler, **kw: Any) -> str:
    # PostgreSQL: jsonb_typeof() says the JSON type ('number', 'string', 'boolean').
    item = cast(element.column, JSONB)[element.key]
    kind = func.jsonb_typeof(item)
    text = cast(element.column, JSONB)[element.key].astext
    number = case((kind == "number", cast(text, Float(precision=53))), else_=None)
    string = case((kind == "string", text), else_=None)
    parts: list[ColumnElement[bool]] = []
    for wanted in _values(element.condition):
        if isinstance(wanted, bool):
            parts.append(and_(kind == "boolean", text == ("true" if wanted else "false")))
        elif isinstance(wanted, int | float):
            parts.append(number == float(wanted))
        else:
            parts.append(string == wanted)
    bounds = [(op, element.condition[op]) for op in RANGE_OPERATORS if op in element.condition]
    if bounds and isinstance(bounds[0][1], str):  # the schema makes them all one kind
        ordered = string.collate("C")  # code point order, as SQLite's and Python's
        clause = and_(true(), *(_compare(ordered, op, bound) for op, bound in bounds))
    elif bounds:
        clause = and_(true(), *(_compare(number, op, float(bound)) for op, bound in bounds))
    else:
        clause = or_(false(), *parts)
    return f"({compiler.process(clause, **kw)})"  # one term inside AND / OR


def segment_clause(
    segment: dict[str, Any], at: datetime, settings: Settings
) -> ColumnElement[bool]:
    """The SQL condition for a segment: every condition given must hold.

    `tier` and `activity` list the values any of which is fine; `tags_any` needs one of
    its tags, `tags_all` every one; each of `attributes` its condition (`_Attribute`).
    A segment with no condition (stored before empty segments were refused) selects
    everyone, as it always did.
    """
    parts: list[ColumnElement[bool]] = []
    spend = col(Recipient.annual_spend)
    seen = col(Recipient.last_active_at)
    if (tiers := segment.get("tier")) is not None:
        by_tier = {
            "whale": spend > settings.whale_spend,
            "dolphin": and_(spend >= settings.dolphin_spend, spend <= settings.whale_spend),
            "minnow": spend < settings.dolphin_spend,
        }
        parts.append(or_(false(), *(by_tier[t] for t in tiers)))
    if (activities := segment.get("activity")) is not None:
        active_since = at - timedelta(days=settings.active_days)
        sleeping_since = at - timedelta(days=settings.sleeping_days)
        by_activity = {
            "active": seen >= active_since,
            "sleeping": and_(seen < active_since, seen >= sleeping_since),
            "churned": or_(seen.is_(None), seen < sleeping_since),
        }
        parts.append(or_(false(), *(by_activity[a] for a in activities)))
    tags = col(Recipient.tags)
    if (any_of := segment.get("tags_any")) is not None:
        parts.append(_HasTags(tags, any_of, every=False) if any_of else false())
    if all_of := segment.get("tags_all"):
        parts.append(_HasTags(tags, all_of, every=True))
    for key, condition in (segment.get("attributes") or {}).items():
        parts.append(_Attribute(col(Recipient.attributes), key, condition))
    return and_(true(), *parts)


def audience_filter(
    audience: dict[str, Any], at: datetime, settings: Settings
) -> list[ColumnElement[bool]]:
    """The conditions on `recipients` that select a notification's audience
    (`{"ids": [...]}`, `{"segment": {...}}`, `{"topic": "..."}` or `{"all": true}`); none
    for everyone. A topic selects its followers as they are when the audience is read."""
    if "ids" in audience:
        return [col(Recipient.id).in_(audience["ids"])]
    if "topic" in audience:
        followers = select(col(Follow.recipient_id)).where(col(Follow.topic) == audience["topic"])
        return [col(Recipient.id).in_(followers)]
    if "segment" in audience:
        return [segment_clause(audience["segment"], at, settings)]
    return []
