"""Topics: what the platform calls the things recipients follow, per locale.

A follow is by key (`card.genshin-monthly`); the preference page shows the topic's name
for the reader's locale instead, and the key for a topic nobody named.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, union
from sqlmodel import Session, col, select

from engine.locales import choose as choose_locale
from engine.schemas.catalog import TopicIn
from engine.store.models import Follow, TopicName
from engine.timeutil import iso, now


def upsert(session: Session, key: str, spec: TopicIn) -> TopicName:
    """Name a topic, or rename it."""
    at = now()
    row = session.get(TopicName, key) or TopicName(key=key, name=spec.name, created_at=at)
    row.name = spec.name if isinstance(spec.name, str) else dict(spec.name)
    row.default_locale = spec.default_locale
    row.updated_at = at
    session.add(row)
    return row


def get(session: Session, key: str) -> TopicName | None:
    """A topic's names, or None when nobody named it."""
    return session.get(TopicName, key)


def delete(session: Session, key: str) -> bool:
    """Forget a topic's names (it shows by its key again); False when it had none.
    Follows of it stay."""
    row = session.get(TopicName, key)
    if row is None:
        return False
    session.delete(row)
    return True


def label(row: TopicName | None, key: str, locale: str | None) -> str:
    """What a reader of `locale` sees for topic `key`: its name, or the key itself."""
    if row is None:
        return key
    if isinstance(row.name, str):
        return row.name
    best = choose_locale(locale, row.name, row.default_locale)
    return str(row.name[best]) if best is not None else key


def labels(session: Session, keys: Iterable[str], locale: str | None) -> dict[str, str]:
    """`label` for each of `keys`, read in one query."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    rows = {r.key: r for r in session.exec(select(TopicName).where(col(TopicName.key).in_(wanted)))}
    return {key: label(rows.get(key), key, locale) for key in wanted}


def public(row: TopicName) -> dict[str, Any]:
    """A topic as the API shows it: its name as written, per locale or not."""
    return {
        "key": row.key,
        "name": row.name,
        "default_locale": row.default_locale,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def page(
    session: Session, *, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Every topic that is named or followed, by key after `after`: each with its name as
    written (None when nobody named it) and how many recipients follow it; and the key
    to pass as `after` for the next page (None on the last)."""
    keys = union(select(col(Follow.topic).label("key")), select(col(TopicName.key))).subquery()
    query = select(keys.c.key)
    if after is not None:
        query = query.where(keys.c.key > after)
    found = [str(k) for k in session.exec(query.order_by(keys.c.key).limit(limit + 1))]
    more = len(found) > limit
    found = found[:limit]
    if not found:
        return [], None
    named = {r.key: r for r in session.exec(select(TopicName).where(col(TopicName.key).in_(found)))}
    followers = dict(
        session.exec(
            select(Follow.topic, func.count())
            .where(col(Follow.topic).in_(found))
            .group_by(col(Follow.topic))
        ).all()
    )
    items = []
    for key in found:
        row = named.get(key)
        items.append(
            {
                "key": key,
                "name": row.name if row is not None else None,
                "default_locale": row.default_locale if row is not None else None,
                "followers": int(followers.get(key, 0)),
            }
        )
    return items, found[-1] if more else None
