"""Follows API: recipients follow topics (`recipients` scope to write, `read` to read); a
notification sent `to: {"topic": …}` reaches the followers."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlmodel import Session

from engine.api.context import DB, SETTINGS, scope
from engine.api.contract import operation
from engine.catalog import follows
from engine.errors import Invalid, NotFound
from engine.schemas.answers import FollowedOut, FollowList, FollowOut, UnfollowedOut
from engine.schemas.catalog import FollowsBulkIn
from engine.schemas.params import FollowPath, RecipientPath

routes = web.RouteTableDef()


@routes.put("/v1/recipients/{id}/follows/{topic}")
@scope("recipients")
@operation(path=FollowPath, responses={200: FollowOut})
async def put_follow(request: web.Request, path: FollowPath) -> dict[str, Any]:
    """Follow a topic (a card, a game, a brand); following again keeps the first follow.

    404 (field `id`) for an unknown recipient.
    """

    def write(session: Session) -> dict[str, Any]:
        return follows.public(follows.follow(session, path.id, path.topic))

    return await request.app[DB].write(write)


@routes.delete("/v1/recipients/{id}/follows/{topic}")
@scope("recipients")
@operation(path=FollowPath, responses={200: UnfollowedOut})
async def delete_follow(request: web.Request, path: FollowPath) -> dict[str, Any]:
    """Stop following a topic. 404 for an unknown recipient (field `id`) or a topic the
    recipient does not follow (field `topic`)."""
    if not await request.app[DB].write(follows.unfollow, path.id, path.topic):
        raise NotFound(f"recipient {path.id!r} does not follow {path.topic!r}", field="topic")
    return {"topic": path.topic, "followed": False}


@routes.get("/v1/recipients/{id}/follows")
@scope("read")
@operation(path=RecipientPath, responses={200: FollowList})
async def list_follows(request: web.Request, path: RecipientPath) -> dict[str, Any]:
    """The topics a recipient follows, by topic. 404 (field `id`) for an unknown recipient."""

    def read(session: Session) -> list[dict[str, Any]] | None:
        if not follows.exists(session, path.id):
            return None
        return [follows.public(row) for row in follows.topics_of(session, path.id)]

    items = await request.app[DB].read(read)
    if items is None:
        raise NotFound(f"no recipient {path.id!r}", field="id")
    return {"items": items}


@routes.post("/v1/follows/bulk")
@scope("recipients")
@operation(body=FollowsBulkIn, responses={200: FollowedOut})
async def bulk_follow(request: web.Request, body: FollowsBulkIn) -> dict[str, Any]:
    """Many follows in one transaction: all of them, or none if one is refused.

    At most `TIDINGS_MAX_BULK_RECIPIENTS` (1,000) follows per call; a follow that exists
    already counts as done. 422 `unknown_recipients` (field `follows`) lists every
    recipient that does not exist.
    """
    limit = request.app[SETTINGS].max_bulk_recipients
    if len(body.follows) > limit:
        raise Invalid(f"at most {limit} follows per call", field="follows")
    pairs = [(entry.recipient, entry.topic) for entry in body.follows]
    return {"followed": await request.app[DB].write(follows.follow_many, pairs)}
