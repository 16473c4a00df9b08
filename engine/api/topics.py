"""Topics API: name the topics recipients follow, per locale (`admin` to write, `read` to
read); the preference page shows the name instead of the key."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlmodel import Session

from engine.api.context import DB, scope
from engine.api.contract import operation
from engine.catalog import topics
from engine.errors import NotFound
from engine.schemas.answers import TopicDeleted, TopicList, TopicOut
from engine.schemas.catalog import TopicIn
from engine.schemas.params import TopicPath, TopicsQuery

routes = web.RouteTableDef()


@routes.get("/v1/topics")
@scope("read")
@operation(query=TopicsQuery, responses={200: TopicList})
async def list_topics(request: web.Request, query: TopicsQuery) -> dict[str, Any]:
    """Every topic recipients follow or the platform named, by key, with its name (null
    when unnamed) and its number of followers; paged by `after`."""

    def read(session: Session) -> dict[str, Any]:
        items, following = topics.page(session, after=query.after, limit=query.limit or 100)
        return {"items": items, "next": following}

    return await request.app[DB].read(read)


@routes.put("/v1/topics/{key}")
@scope("admin")
@operation(path=TopicPath, body=TopicIn, responses={200: TopicOut})
async def put_topic(request: web.Request, path: TopicPath, body: TopicIn) -> dict[str, Any]:
    """Name a topic (one text, or one per locale), or rename it. A topic need not be named
    to be followed; unnamed, it shows by its key."""

    def write(session: Session) -> dict[str, Any]:
        return topics.public(topics.upsert(session, path.key, body))

    return await request.app[DB].write(write)


@routes.get("/v1/topics/{key}")
@scope("read")
@operation(path=TopicPath, responses={200: TopicOut})
async def get_topic(request: web.Request, path: TopicPath) -> dict[str, Any]:
    """A topic's names. 404 (field `key`) for a topic nobody named."""

    def read(session: Session) -> dict[str, Any] | None:
        row = topics.get(session, path.key)
        return topics.public(row) if row is not None else None

    found = await request.app[DB].read(read)
    if found is None:
        raise NotFound(f"no topic {path.key!r}", field="key")
    return found


@routes.delete("/v1/topics/{key}")
@scope("admin")
@operation(path=TopicPath, responses={200: TopicDeleted})
async def delete_topic(request: web.Request, path: TopicPath) -> dict[str, Any]:
    """Forget a topic's names: it shows by its key again; its follows stay. 404 (field
    `key`) for a topic nobody named."""
    if not await request.app[DB].write(topics.delete, path.key):
        raise NotFound(f"no topic {path.key!r}", field="key")
    return {"key": path.key, "deleted": True}
