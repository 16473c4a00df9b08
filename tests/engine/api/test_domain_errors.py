"""Every refusal the domain raises reaches the caller as its status and the API's error
document, over real HTTP; none of them, present or added later, is a 500."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import errors
from engine.api.middleware import errors as errors_middleware

# What the API documents for each kind (SPEC: 422 invalid input, 404 unknown ids,
# 409 a state that does not allow it, 403 a key without the scope).
DOCUMENTED = {
    errors.Invalid: 422,
    errors.FieldError: 422,
    errors.UnknownRecipients: 422,
    errors.IdempotencyMismatch: 422,
    errors.LinesRefused: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.NotDelivered: 409,
    errors.Forbidden: 403,
}


def kinds(base: type[errors.TidingsError]) -> list[type[errors.TidingsError]]:
    found: list[type[errors.TidingsError]] = []
    for sub in base.__subclasses__():
        found += [sub, *kinds(sub)]
    return found


def instance(kind: type[errors.TidingsError], message: str, field: str) -> errors.TidingsError:
    if issubclass(kind, errors.LinesRefused):
        return kind([errors.LineProblem(2, field, message)], refused=1, lines=3)
    if issubclass(kind, errors.UnknownRecipients):
        return kind([message], field=field)
    if issubclass(kind, errors.FieldError):
        return kind(field, message)
    return kind(message, field=field)


async def answer(exc: Exception) -> tuple[int, bytes]:
    async def fail(request: web.Request) -> web.StreamResponse:
        raise exc

    app = web.Application(middlewares=[errors_middleware])
    app.router.add_get("/fail", fail)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/fail")
        return response.status, await response.read()


def test_every_kind_of_refusal_is_documented() -> None:
    assert set(kinds(errors.TidingsError)) == set(DOCUMENTED)


@pytest.mark.parametrize("kind", kinds(errors.TidingsError), ids=lambda k: k.__name__)
@settings(max_examples=15, deadline=None)
@given(
    message=st.text(min_size=1, max_size=40),
    field=st.from_regex(r"[a-z_]{1,8}(\.[0-9]{1,2})?", fullmatch=True),
)
def test_a_refusal_answers_its_status_and_the_error_document(
    kind: type[errors.TidingsError], message: str, field: str
) -> None:
    exc = instance(kind, message, field)
    status, raw = asyncio.run(answer(exc))
    assert status == DOCUMENTED[kind]
    detail = json.loads(raw)["error"]
    assert detail["code"] == kind.code
    if isinstance(exc, errors.LinesRefused):  # about the whole body, each line named
        assert detail["field"] == "body"
        assert (detail["refused"], detail["lines"]) == (
            1,
            [{"line": 2, "field": field, "message": message}],
        )
        return
    assert detail["field"] == field
    if isinstance(exc, errors.UnknownRecipients):
        assert detail["unknown"] == [message]
        assert repr(message) in detail["message"]
    else:
        assert detail == {"code": kind.code, "message": message, "field": field}
