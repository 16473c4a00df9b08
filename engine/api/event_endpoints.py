"""`/v1/event-endpoints` (`admin`): register the platform's URLs that receive delivery
events as signed Standard Webhooks, list them with their health, see their failures,
resume a paused one, and delete one."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from channels.outbound import outbound_policy
from engine.api.context import DB, SETTINGS, scope
from engine.api.contract import Reply, operation
from engine.errors import Invalid
from engine.ops import event_endpoints
from engine.schemas.events import (
    EventBatchPage,
    EventEndpointCreatedOut,
    EventEndpointDeletedOut,
    EventEndpointIn,
    EventEndpointList,
    EventEndpointOut,
    FailuresQuery,
)
from engine.schemas.params import RowPath

routes = web.RouteTableDef()


@routes.post("/v1/event-endpoints")
@scope("admin")
@operation(body=EventEndpointIn, responses={201: EventEndpointCreatedOut})
async def create_endpoint(request: web.Request, body: EventEndpointIn) -> Reply:
    """Register an endpoint; the answer carries its signing secret, shown this once.

    It receives the events that happen from now on, batched: `{"type": "events",
    "timestamp", "data": {"events": [{"id", "type", "timestamp", "data"}]}}`, signed per
    Standard Webhooks. A URL into the private network is refused (422, `url`) unless the
    operator allowed it (`TIDINGS_OUTBOUND_ALLOW`).
    """
    url = str(body.url)
    if reason := outbound_policy(request.app[SETTINGS]).refusal(url):
        raise Invalid(f"url is not reachable: {reason}", field="url")

    def write() -> dict[str, Any]:
        with request.app[DB].session() as session:
            row = event_endpoints.create(
                session, url=url, types=body.types, description=body.description
            )
            return {**event_endpoints.public(row, {}), "secret": row.secret}

    return Reply(await request.app[DB].run(write), status=201)


@routes.get("/v1/event-endpoints")
@scope("admin")
@operation(responses={200: EventEndpointList})
async def list_endpoints(request: web.Request) -> dict[str, Any]:
    """Every endpoint with its failures in a row, last error, pause reason and backlog."""

    def read() -> list[dict[str, Any]]:
        with request.app[DB].session() as session:
            return event_endpoints.listing(session)

    return {"items": await request.app[DB].run(read)}


@routes.get("/v1/event-endpoints/{id}")
@scope("admin")
@operation(path=RowPath, responses={200: EventEndpointOut})
async def get_endpoint(request: web.Request, path: RowPath) -> dict[str, Any]:
    """One endpoint (never its secret)."""

    def read() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return event_endpoints.one(session, int(path.id))

    return await request.app[DB].run(read)


@routes.get("/v1/event-endpoints/{id}/failures")
@scope("admin")
@operation(path=RowPath, query=FailuresQuery, responses={200: EventBatchPage})
async def get_failures(request: web.Request, path: RowPath, query: FailuresQuery) -> dict[str, Any]:
    """Batches that failed at least once, newest first: retrying (with their next
    attempt) or given up, each with its last error."""
    limit = query.limit or request.app[SETTINGS].page_size

    def read() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return event_endpoints.failures(
                session,
                int(path.id),
                before=int(query.before) if query.before else None,
                limit=limit,
            )

    return await request.app[DB].run(read)


@routes.post("/v1/event-endpoints/{id}/resume")
@scope("admin")
@operation(path=RowPath, responses={200: EventEndpointOut})
async def resume_endpoint(request: web.Request, path: RowPath) -> dict[str, Any]:
    """Post to a paused endpoint again; its waiting and given-up batches go at once."""

    def write() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return event_endpoints.resume(session, int(path.id))

    return await request.app[DB].run(write)


@routes.delete("/v1/event-endpoints/{id}")
@scope("admin")
@operation(path=RowPath, responses={200: EventEndpointDeletedOut})
async def delete_endpoint(request: web.Request, path: RowPath) -> dict[str, Any]:
    """Stop pushing to an endpoint; the batches still waiting for it are dropped."""

    def write() -> None:
        with request.app[DB].session() as session:
            event_endpoints.remove(session, int(path.id))

    await request.app[DB].run(write)
    return {"id": path.id, "deleted": True}
