"""The console over raw HTTP: sign-in, the session cookie, CSRF, and refusals."""

from __future__ import annotations

from datetime import timedelta

import httpx
import time_machine
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from engine.catalog import keys
from engine.ops.console import session
from engine.settings import Settings
from engine.store import installation
from engine.store.db import Database
from engine.store.models import ApiKey
from engine.timeutil import now
from tests.engine.ops.console.conftest import csrf_token, sign_in
from tests.support import Server


def test_an_admin_key_signs_in_and_the_cookie_never_holds_the_key(
    server: Server, admin_key: str
) -> None:
    with httpx.Client(base_url=server.url) as client:
        answer = sign_in(client, admin_key)
        assert answer.status_code == 303
        assert answer.headers["Location"].startswith("/console")
        cookie = answer.headers["Set-Cookie"]
        assert cookie.startswith(f"{session.COOKIE}=")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
        assert admin_key not in cookie and keys.digest(admin_key) not in cookie
        page = client.get("/console")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    assert "Signed in with key “ops”" in page.text


def test_a_key_without_the_admin_scope_is_refused(server: Server, api_keys: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url) as client:
        for scope in ("send", "read", "links", "recipients"):
            answer = sign_in(client, api_keys[scope])
            assert answer.status_code == 401
            assert "lacks the admin scope" in answer.text
            assert session.COOKIE not in client.cookies
        assert sign_in(client, "tk_not-a-key").status_code == 401


def test_without_a_session_every_page_sends_you_to_sign_in(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        for path in ("/console", "/console/health", "/console/endpoints"):
            answer = client.get(path)
            assert answer.status_code == 303
            assert answer.headers["Location"].startswith("/console/sign-in?reason=missing")


def test_a_forged_cookie_is_refused(server: Server) -> None:
    with httpx.Client(base_url=server.url, cookies={session.COOKIE: "e30.forged.sig"}) as client:
        answer = client.get("/console")
    assert answer.status_code == 303
    assert "reason=invalid" in answer.headers["Location"]


def test_a_form_without_its_csrf_token_or_from_another_site_changes_nothing(
    console: httpx.Client,
) -> None:
    assert console.post("/console/sign-out", data={}).status_code == 403
    token = csrf_token(console.get("/console").text)
    cross = console.post(
        "/console/sign-out",
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    assert "This form has expired" in cross.text
    assert console.get("/console").status_code == 200  # still signed in


def test_the_sign_in_form_needs_its_own_token(server: Server, admin_key: str) -> None:
    with httpx.Client(base_url=server.url) as client:
        answer = client.post("/console/sign-in", data={"key": admin_key})
    assert answer.status_code == 403
    assert session.COOKIE not in answer.headers.get("Set-Cookie", "")


def test_an_expired_sign_in_is_refused(
    server: Server, admin_key: str, settings: Settings, db: Database
) -> None:
    secrets_ = installation.bind(settings, db).signing_keys
    with db.session() as s:
        row = s.get(ApiKey, 1)
        assert row is not None
        with time_machine.travel(now() - timedelta(seconds=settings.console_session_ttl + 60)):
            stale = session.issue(secrets_, row)
        fresh = session.issue(secrets_, row)
    with httpx.Client(base_url=server.url, cookies={session.COOKIE: stale}) as client:
        answer = client.get("/console")
    assert answer.status_code == 303
    assert "reason=expired" in answer.headers["Location"]
    with httpx.Client(base_url=server.url, cookies={session.COOKIE: fresh}) as client:
        assert client.get("/console").status_code == 200


def test_revoking_the_key_signs_its_sessions_out(
    console: httpx.Client, admin: httpx.Client, db: Database
) -> None:
    assert console.get("/console").status_code == 200
    with db.session() as s:
        (row,) = [k for k in keys.listing(s) if k.name == "ops"]
    assert admin.post(f"/v1/keys/{row.id}/revoke").status_code == 200
    answer = console.get("/console")
    assert answer.status_code == 303
    assert "reason=revoked" in answer.headers["Location"]


def test_a_signed_out_cookie_stays_refused_even_when_replayed(console: httpx.Client) -> None:
    kept = console.cookies[session.COOKIE]
    token = csrf_token(console.get("/console").text)
    out = console.post("/console/sign-out", data={"csrf_token": token})
    assert out.status_code == 303
    assert "reason=signed_out" in out.headers["Location"]
    assert console.get(out.headers["Location"]).status_code == 200
    replay = httpx.get(str(console.base_url.join("/console")), cookies={session.COOKIE: kept})
    assert replay.status_code == 303
    assert "reason=signed_out" in replay.headers["Location"]


query_text = (
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
    | st.dates().map(str)
    | st.sampled_from(["0001-01-01", "9999-12-31", "hour", "day", "campaign", "cancelled"])
)


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(path="/console", params={"to": "9999-12-31"})
@example(path="/console", params={"from": "0001-01-01", "to": "0001-01-01"})
@example(path="/console/messages", params={"created_before": "9999-12-31"})
@example(path="/console/messages", params={"created_after": "0001-01-01"})
@given(
    path=st.sampled_from(["/console", "/console/messages"]),
    params=st.dictionaries(
        st.sampled_from(
            [
                "from",
                "to",
                "bucket",
                "by",
                "category",
                "status",
                "created_after",
                "created_before",
                "before",
                "lang",
            ]
        ),
        query_text,
        max_size=4,
    ),
)
def test_any_filter_a_person_types_is_shown_or_refused_naming_it_never_a_500(
    console: httpx.Client, path: str, params: dict[str, str]
) -> None:
    answer = console.get(path, params=params)
    assert answer.status_code in (200, 422), (params, answer.text[-400:])
    if answer.status_code == 422:
        assert "Field “" in answer.text
