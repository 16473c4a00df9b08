"""Each route's contract, declared once beside its handler.

`@operation(...)` names the pydantic models a route validates its path, query, headers
and body with, and the models it answers with per status. The wrapper validates the
input with them before the handler runs and passes every answer through them on the way
out; the OpenAPI document (`engine.api.openapi`) is read from the same declarations, so
what is documented is what is checked.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from engine.api.middleware import json_body, validation_error
from engine.errors import NotFound

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Reply:
    """An answer other than a plain 200: its status, and headers to send along."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Contract:
    """What a route takes and what it answers, as pydantic models."""

    responses: Mapping[int, type[BaseModel]]
    path: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    # A body that is not one JSON document, read by the handler itself: its media types,
    # each with the model of one of its lines where it has one (NDJSON).
    upload: Mapping[str, type[BaseModel] | None] = field(default_factory=dict)
    # A response that is not JSON (Prometheus text): its media type.
    media_type: str | None = None
    # Headers the answer may carry, by status: {202: {"Idempotent-Replayed": "..."}}.
    response_headers: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    # Refusals particular to this route, beyond the ones every route may give: {409: "..."}.
    errors: Mapping[int, str] = field(default_factory=dict)


def operation(
    *,
    responses: Mapping[int, type[BaseModel]],
    path: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    headers: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    upload: Mapping[str, type[BaseModel] | None] | None = None,
    media_type: str | None = None,
    response_headers: Mapping[int, Mapping[str, str]] | None = None,
    errors: Mapping[int, str] | None = None,
) -> Callable[[Callable[..., Awaitable[Any]]], Handler]:
    """Declare a route's contract; the handler gets `path`, `query`, `headers` and `body`
    keyword arguments for the models given, and returns a body (200) or a `Reply`.

    A body is the response model itself, or what it reads: a dict, or a domain result
    (a dataclass) whose attributes it takes, turning ids and datetimes into the API's text.
    """
    contract = Contract(
        responses=responses,
        path=path,
        query=query,
        headers=headers,
        body=body,
        upload=upload or {},
        media_type=media_type,
        response_headers=response_headers or {},
        errors=errors or {},
    )

    def wrap(handler: Callable[..., Awaitable[Any]]) -> Handler:
        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            given = await _inputs(request, contract)
            result = await handler(request, **given)
            if isinstance(result, web.StreamResponse):
                return result
            reply = result if isinstance(result, Reply) else Reply(result)
            return _answer(contract, reply)

        run.__dict__["tidings_contract"] = contract
        return run

    return wrap


def contract_of(handler: Any) -> Contract | None:
    found = getattr(handler, "tidings_contract", None)
    return found if isinstance(found, Contract) else None


async def _inputs(request: web.Request, contract: Contract) -> dict[str, Any]:
    given: dict[str, Any] = {}
    if contract.path is not None:
        try:
            given["path"] = contract.path.model_validate(dict(request.match_info))
        except ValidationError as exc:
            error = validation_error(exc)
            if getattr(contract.path, "not_found_when_invalid", False):
                raise NotFound(f"no such {error.field}", field=error.field) from None
            raise error from None
    if contract.query is not None:
        given["query"] = contract.query.model_validate(
            {name: request.query.getone(name) for name in request.query}
        )
    if contract.headers is not None:
        names = [f.alias or n for n, f in contract.headers.model_fields.items()]
        given["headers"] = contract.headers.model_validate(
            {name: request.headers[name] for name in names if name in request.headers}
        )
    if contract.body is not None:
        given["body"] = contract.body.model_validate(await json_body(request))
    return given


class OffContract(RuntimeError):
    """An answer that does not match its declared model: a bug, answered as a 500."""


def _answer(contract: Contract, reply: Reply) -> web.Response:
    model = contract.responses.get(reply.status)
    if model is None:
        raise OffContract(f"status {reply.status} is not declared")
    return web.json_response(
        document(model, reply.body), status=reply.status, headers=dict(reply.headers) or None
    )


def document(model: type[BaseModel], body: Any) -> Any:
    """The JSON document `model` makes of `body`: an instance of it, a dict, or a domain
    result whose attributes it reads. Raises `OffContract` when they do not fit."""
    if isinstance(body, model):
        return body.model_dump(mode="json", by_alias=True)
    try:
        checked = model.model_validate(body, from_attributes=True)
    except ValidationError as exc:
        raise OffContract(f"answer off its schema {model.__name__}: {exc}") from None
    return checked.model_dump(mode="json", by_alias=True, exclude_unset=True)
