"""Signed page links: minted by the API, checked for tampering, age, page and revocation."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner

from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Recipient
from engine.timeutil import now
from preferences.links import LinkError, Links
from preferences.pages import csrf

settings_for_hypothesis = hypothesis_settings(
    deadline=None,
    max_examples=15,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def links() -> Links:
    return Links(Settings(secret_key="links-secret", public_url="https://notify.example.com/"))


def test_a_token_names_its_recipient_version_and_page(links: Links) -> None:
    claims = links.check(links.token("u-1", 3, "inbox"), purposes=("inbox",))
    assert (claims.recipient_id, claims.version, claims.purpose) == ("u-1", 3, "inbox")
    assert links.url("u-1", 0, "unsubscribe").startswith("https://notify.example.com/u/")
    with pytest.raises(ValueError):
        links.token("u-1", 0, "admin")


def test_tampered_foreign_and_misdirected_tokens_are_refused(links: Links) -> None:
    token = links.token("u-1", 0, "preferences")
    _, stamp, signature = token.split(".")
    other = Links(Settings(secret_key="another-secret")).token("u-1", 0, "preferences")
    flipped = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    swapped = f"{links.token('u-2', 0, 'preferences').split('.')[0]}.{stamp}.{signature}"
    for bad in (flipped, other, "garbage", swapped):
        with pytest.raises(LinkError) as refused:
            links.check(bad, purposes=("preferences",))
        assert refused.value.reason == "invalid" and refused.value.recipient_id is None
    with pytest.raises(LinkError) as wrong:
        links.check(token, purposes=("inbox",))
    assert wrong.value.reason == "wrong_page"


def test_an_expired_token_still_says_whose_it_was(
    links: Links, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = TimestampSigner.get_timestamp
    monkeypatch.setattr(
        TimestampSigner, "get_timestamp", lambda self: real(self) - links.settings.link_ttl - 1
    )
    token = links.token("u-1", 0, "preferences")
    monkeypatch.undo()
    with pytest.raises(LinkError) as expired:
        links.check(token, purposes=("preferences",))
    assert (expired.value.reason, expired.value.recipient_id) == ("expired", "u-1")
    assert links.check(token, purposes=("preferences",), max_age=10 * links.settings.link_ttl)


def test_csrf_tokens_are_bound_to_their_page() -> None:
    token = csrf.issue("secret", "page-a")
    assert csrf.valid("secret", "page-a", token)
    assert not csrf.valid("secret", "page-b", token)
    assert not csrf.valid("other", "page-a", token)
    assert not csrf.valid("secret", "page-a", None)
    assert not csrf.valid("secret", "page-a", token, max_age=-1)


@pytest.mark.parametrize(
    ("origin", "site", "ok"),
    [
        (None, None, True),  # a browser that sends neither; the token decides
        ("null", "same-origin", True),  # what Referrer-Policy: no-referrer makes browsers send
        ("https://notify.example.com", "same-origin", True),
        ("https://evil.example", None, False),
        ("null", "cross-site", False),
        (None, "same-site", False),
    ],
)
def test_browsers_cross_site_posts_are_refused(
    origin: str | None, site: str | None, ok: bool
) -> None:
    assert (
        csrf.same_origin(
            origin=origin,
            fetch_site=site,
            host="127.0.0.1:8080",
            public_url="https://notify.example.com",
        )
        is ok
    )


def _recipient(db: Database, rid: str = "u-1") -> None:
    with db.session() as session:
        session.add(Recipient(id=rid, email=f"{rid}@example.com", locale="en"))


def test_the_api_mints_all_three_links_with_their_expiry(
    admin: httpx.Client, api_keys: dict[str, str], db: Database, settings: Settings
) -> None:
    _recipient(db)
    minted = httpx.post(
        f"{admin.base_url}/v1/recipients/u-1/links",
        headers={"Authorization": f"Bearer {api_keys['links']}"},
        timeout=30,
    )
    assert minted.status_code == 200, minted.text
    body = minted.json()
    assert set(body) == {"preferences", "inbox", "unsubscribe", "expires_at"}
    for purpose, prefix in (("preferences", "/p/"), ("inbox", "/inbox/"), ("unsubscribe", "/u/")):
        url = urlsplit(body[purpose])
        assert body[purpose].startswith(settings.public_url) and url.path.startswith(prefix)
        token = url.path.removeprefix(prefix)
        assert Links(settings).check(token, purposes=(purpose,)).recipient_id == "u-1"
    expires = datetime.fromisoformat(body["expires_at"])
    assert abs(expires - (now() + timedelta(seconds=settings.link_ttl))) < timedelta(minutes=1)
    # The page answers at the minted path.
    page = admin.get(urlsplit(body["preferences"]).path)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"


def test_minting_needs_a_known_recipient_and_a_links_key(
    admin: httpx.Client, api_keys: dict[str, str]
) -> None:
    """A page link reads the inbox and writes preferences: `send` and `read` cannot mint one."""
    assert admin.put("/v1/recipients/u-1", json={}).status_code == 200
    assert admin.post("/v1/recipients/nobody/links").status_code == 404
    for scope in ("read", "send"):
        refused = httpx.post(
            f"{admin.base_url}/v1/recipients/u-1/links",
            headers={"Authorization": f"Bearer {api_keys[scope]}"},
            timeout=30,
        )
        assert refused.status_code == 403, scope
        assert "links" in refused.json()["error"]["message"]
    minted = httpx.post(
        f"{admin.base_url}/v1/recipients/u-1/links",
        headers={"Authorization": f"Bearer {api_keys['links']}"},
        timeout=30,
    )
    assert minted.status_code == 200 and minted.json()["inbox"]
    assert httpx.post(f"{admin.base_url}/v1/recipients/nobody/links", timeout=30).status_code == 401


def test_revoking_turns_off_every_link_minted_before(
    admin: httpx.Client, api_keys: dict[str, str], db: Database
) -> None:
    _recipient(db)
    old = urlsplit(admin.post("/v1/recipients/u-1/links").json()["inbox"]).path
    assert admin.get(old).status_code == 200
    sender = httpx.post(
        f"{admin.base_url}/v1/recipients/u-1/links/revoke",
        headers={"Authorization": f"Bearer {api_keys['send']}"},
        timeout=30,
    )
    assert sender.status_code == 403  # revoking is for admins
    revoked = admin.post("/v1/recipients/u-1/links/revoke")
    assert revoked.json() == {"id": "u-1", "revoked": True, "links_version": 1}
    assert admin.get(old).status_code == 410
    fresh = urlsplit(admin.post("/v1/recipients/u-1/links").json()["inbox"]).path
    assert admin.get(fresh).status_code == 200
    assert admin.post("/v1/recipients/nobody/links/revoke").status_code == 404


def test_the_link_routes_are_in_the_openapi_document(admin: httpx.Client) -> None:
    paths = admin.get("/v1/openapi.json").json()["paths"]
    assert "security" in paths["/v1/recipients/{id}/links"]["post"]
    assert "admin" in paths["/v1/recipients/{id}/links/revoke"]["post"]["description"]


@settings_for_hypothesis
@given(steps=st.lists(st.sampled_from(["mint", "revoke", "erase", "recreate"]), max_size=8))
def test_a_link_opens_only_while_nothing_revoked_or_erased_its_recipient(
    admin: httpx.Client, steps: list[str]
) -> None:
    """Revoking, or erasing the recipient (even if the same id comes back), voids every
    link minted before; links_version restarting at 0 after an erasure changes nothing."""
    admin.delete("/v1/recipients/vR")
    assert admin.put("/v1/recipients/vR", json={}).status_code == 200
    live: list[str] = []
    dead: list[str] = []
    exists = True
    for step in steps:
        if step == "mint" and exists:
            live.append(urlsplit(admin.post("/v1/recipients/vR/links").json()["preferences"]).path)
        elif step == "revoke" and exists:
            assert admin.post("/v1/recipients/vR/links/revoke").status_code == 200
            dead += live
            live = []
        elif step == "erase" and exists:
            assert admin.delete("/v1/recipients/vR").status_code == 200
            dead += live
            live, exists = [], False
        elif step == "recreate" and not exists:
            assert admin.put("/v1/recipients/vR", json={}).status_code == 200
            exists = True
    for path in live:
        assert admin.get(path).status_code == 200, steps
    for path in dead:
        assert admin.get(path).status_code in (403, 410), steps


def test_revoke_erase_and_recreate_never_brings_a_link_back(admin: httpx.Client) -> None:
    """The reported sequence: mint, revoke (410), DELETE, PUT the same id again."""
    assert admin.put("/v1/recipients/vR", json={}).status_code == 200
    old = urlsplit(admin.post("/v1/recipients/vR/links").json()["inbox"]).path
    assert admin.post("/v1/recipients/vR/links/revoke").status_code == 200
    assert admin.get(old).status_code == 410
    assert admin.delete("/v1/recipients/vR").status_code == 200
    assert admin.put("/v1/recipients/vR", json={}).status_code == 200
    assert admin.get(old).status_code == 410
    bulk = admin.post("/v1/recipients/bulk", json={"recipients": [{"id": "vB"}]})
    assert bulk.status_code == 200
    gone = urlsplit(admin.post("/v1/recipients/vB/links").json()["inbox"]).path
    admin.delete("/v1/recipients/vB")
    admin.post("/v1/recipients/bulk", json={"recipients": [{"id": "vB"}]})
    assert admin.get(gone).status_code == 410
    fresh = urlsplit(admin.post("/v1/recipients/vR/links").json()["inbox"]).path
    assert admin.get(fresh).status_code == 200
