"""Fixtures for the ops console: an admin key, and an HTTP client signed in with it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from engine.catalog import keys
from engine.store.db import Database
from tests.support import Server

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = TOKEN.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@pytest.fixture
def admin_key(db: Database) -> str:
    with db.session() as session:
        return keys.create(session, name="ops", scopes=["admin"])[1]


def sign_in(client: httpx.Client, key: str) -> httpx.Response:
    """Sign in through the form as a browser would: fetch it, post the key with its token."""
    form = client.get("/console/sign-in")
    return client.post("/console/sign-in", data={"key": key, "csrf_token": csrf_token(form.text)})


@pytest.fixture
def console(server: Server, admin_key: str) -> Iterator[httpx.Client]:
    """An HTTP client signed in to the console with an admin key."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = sign_in(client, admin_key)
        assert answer.status_code == 303, answer.text
        yield client
