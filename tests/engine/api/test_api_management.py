"""The management API over real HTTP: categories, recipients, preferences, auth and health."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.api.app import create_app
from engine.catalog import keys
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Preference
from tests.support import Server, free_port

ROOT = Path(__file__).resolve().parents[3]
TIDINGS = Path(sys.executable).with_name("tidings")

FLASH_SALE = {
    "name": "Flash sales",
    "kind": "promotional",
    "priority": "normal",
    "channels": ["push", "inapp", "email"],
    "caps": [{"count": 2, "per": "1h"}],
    "collapse_window": "1h",
    "escalate_after": "30m",
    "default_locale": "zh-CN",
    "templates": {
        "inapp": {
            "zh-CN": {"title": "限时优惠:{{ data.card }}", "body": "快来看看"},
            "en": {"title": "Flash sale: {{ data.card }}", "body": "Have a look"},
        }
    },
}
SECURITY = {
    "name": "Account security",
    "kind": "transactional",
    "priority": "critical",
    "channels": ["email", "sms", "inapp"],
    "required": True,
}
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
BOTH_BACKENDS = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The JSON error body of a failed call, checked for its shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()["error"]
    assert set(body) == {"code", "message", "field"}
    assert body["message"]
    return body


def instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


@pytest.fixture
def catalog(admin: httpx.Client) -> httpx.Client:
    """An admin client over an API that knows two categories and one recipient."""
    ok(admin.put("/v1/categories/promo.flash_sale", json=FLASH_SALE))
    ok(admin.put("/v1/categories/account.security", json=SECURITY))
    ok(
        admin.put(
            "/v1/recipients/u-1", json={"email": "a@example.com", "timezone": "Asia/Shanghai"}
        )
    )
    return admin


@BOTH_BACKENDS
def test_round_trip_category_recipient_preferences_erase(admin: httpx.Client, db: Database) -> None:
    flash = ok(admin.put("/v1/categories/promo.flash_sale", json=FLASH_SALE))
    assert flash["key"] == "promo.flash_sale"
    assert flash["channels"] == ["push", "inapp", "email"]
    assert flash["caps"] == [{"count": 2, "per": "1h"}]
    assert (flash["collapse_window"], flash["escalate_after"]) == ("1h", "30m")
    assert flash["over_cap"] == "drop"  # promotions drop by default
    security = ok(admin.put("/v1/categories/account.security", json=SECURITY))
    assert security["required"] is True
    assert security["over_cap"] == "defer"  # transactional notices wait instead
    listed = ok(admin.get("/v1/categories"))["items"]
    assert [c["key"] for c in listed] == ["account.security", "promo.flash_sale"]
    assert ok(admin.get("/v1/categories/promo.flash_sale"))["templates"] == FLASH_SALE["templates"]

    seen = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    shanghai_seen = seen.astimezone(timezone(timedelta(hours=8)))
    recipient = {
        "email": "a@example.com",
        "phone": "+8613800000000",
        "push_tokens": ["tok-1"],
        "timezone": "Asia/Shanghai",
        "locale": "zh-CN",
        "annual_spend": 6200,
        "last_active_at": shanghai_seen.isoformat(),
        "tags": ["game.mobile"],
    }
    written = ok(admin.put("/v1/recipients/u-1001", json=recipient))
    assert (written["tier"], written["activity"]) == ("whale", "active")
    read = ok(admin.get("/v1/recipients/u-1001"))
    for field in ("email", "phone", "push_tokens", "timezone", "locale", "tags"):
        assert read[field] == recipient[field], field
    assert read["annual_spend"] == 6200
    assert instant(read["last_active_at"]) == seen
    assert (read["tier"], read["activity"]) == ("whale", "active")

    defaults = ok(admin.get("/v1/recipients/u-1001/preferences"))
    assert defaults == {
        "channels": {"inapp": True, "email": True, "push": True, "sms": True, "webhook": True},
        "categories": {
            "account.security": {
                "enabled": True,
                "required": True,
                "channels": {"email": True, "sms": True, "inapp": True},
                "caps": [],
                "default_caps": [],
            },
            "promo.flash_sale": {
                "enabled": True,
                "required": False,
                "channels": {"push": True, "inapp": True, "email": True},
                "caps": [],
                "default_caps": [{"count": 2, "per": "1h"}],
            },
        },
        "caps": [{"count": 5, "per": "1d"}],
        "quiet_hours": {
            "enabled": True,
            "start": "22:00",
            "end": "08:00",
            "timezone": "Asia/Shanghai",
            "days": ALL_DAYS,
        },
        "paused_until": None,
        "digest": {"enabled": False, "at": "20:00"},
        "unsubscribed": False,
    }

    changed = ok(
        admin.put(
            "/v1/recipients/u-1001/preferences",
            json={
                "channels": {"sms": False},
                "categories": {
                    "promo.flash_sale": {
                        "channels": {"email": False},
                        "caps": [{"count": 1, "per": "1d"}],
                    }
                },
                "quiet_hours": {"start": "23:30", "days": ["mon", "tue", "wed", "thu", "fri"]},
                "paused_until": "2030-01-02T03:04:05+08:00",
            },
        )
    )
    assert changed["channels"]["sms"] is False
    assert changed["channels"]["email"] is True
    promo = changed["categories"]["promo.flash_sale"]
    assert promo["channels"] == {"push": True, "inapp": True, "email": False}
    assert promo["caps"] == [{"count": 1, "per": "1d"}]
    assert changed["quiet_hours"] == {
        "enabled": True,
        "start": "23:30",
        "end": "08:00",
        "timezone": "Asia/Shanghai",
        "days": ["mon", "tue", "wed", "thu", "fri"],
    }
    assert instant(changed["paused_until"]) == datetime(2030, 1, 1, 19, 4, 5, tzinfo=UTC)

    # Keys left out keep their value.
    again = ok(
        admin.put(
            "/v1/recipients/u-1001/preferences",
            json={"digest": {"enabled": True}, "quiet_hours": {"end": "07:00"}},
        )
    )
    assert again["digest"] == {"enabled": True, "at": "20:00"}
    assert again["quiet_hours"]["start"] == "23:30"
    assert again["quiet_hours"]["end"] == "07:00"
    assert again["channels"]["sms"] is False
    assert again["categories"]["promo.flash_sale"]["channels"]["email"] is False
    assert again["caps"] == [{"count": 5, "per": "1d"}]
    assert ok(admin.get("/v1/recipients/u-1001/preferences")) == again

    # A recipient update that leaves keys out keeps them too.
    updated = ok(admin.put("/v1/recipients/u-1001", json={"annual_spend": 120}))
    assert (updated["tier"], updated["email"]) == ("minnow", "a@example.com")

    assert ok(admin.delete("/v1/recipients/u-1001")) == {"id": "u-1001", "erased": True}
    assert error(admin.get("/v1/recipients/u-1001"), 404)["code"] == "not_found"
    assert error(admin.get("/v1/recipients/u-1001/preferences"), 404)["field"] == "id"
    assert error(admin.delete("/v1/recipients/u-1001"), 404)["code"] == "not_found"
    with db.session() as session:
        assert session.get(Preference, "u-1001") is None
    # The same id later starts from the platform defaults, not from what was erased.
    ok(admin.put("/v1/recipients/u-1001", json={"timezone": "Europe/Paris"}))
    fresh = ok(admin.get("/v1/recipients/u-1001/preferences"))
    assert fresh["channels"]["sms"] is True
    assert fresh["quiet_hours"]["timezone"] == "Europe/Paris"
    assert fresh["categories"]["promo.flash_sale"]["channels"]["email"] is True


def test_null_puts_a_preference_back_to_the_platform_default(catalog: httpx.Client) -> None:
    ok(
        catalog.put(
            "/v1/recipients/u-1/preferences",
            json={
                "quiet_hours": {"enabled": False, "start": "21:00", "timezone": "Europe/Paris"},
                "caps": [{"count": 1, "per": "1w"}],
                "paused_until": "2030-01-01T00:00:00+00:00",
            },
        )
    )
    reset = ok(
        catalog.put(
            "/v1/recipients/u-1/preferences",
            json={
                "quiet_hours": {"enabled": None, "start": None, "timezone": None},
                "caps": None,
                "paused_until": None,
            },
        )
    )
    assert reset["quiet_hours"]["enabled"] is True
    assert reset["quiet_hours"]["start"] == "22:00"
    assert reset["quiet_hours"]["timezone"] == "Asia/Shanghai"  # the recipient's own zone
    assert reset["caps"] == [{"count": 5, "per": "1d"}]
    assert reset["paused_until"] is None


@pytest.mark.parametrize(
    ("spend", "days_ago", "tier", "activity"),
    [
        (5000.01, 0, "whale", "active"),
        (5000, 7, "dolphin", "active"),
        (500, 8, "dolphin", "sleeping"),
        (499.99, 30, "minnow", "sleeping"),
        (0, 31, "minnow", "churned"),
        (None, None, "minnow", "churned"),
    ],
)
def test_recipient_shows_derived_tier_and_activity(
    admin: httpx.Client, spend: float | None, days_ago: int | None, tier: str, activity: str
) -> None:
    body: dict[str, Any] = {}
    if spend is not None:
        body["annual_spend"] = spend
    if days_ago is not None:
        # A minute inside the boundary, so the call's own duration cannot tip it over.
        seen = datetime.now(UTC) - timedelta(days=days_ago) + timedelta(minutes=1)
        body["last_active_at"] = seen.isoformat()
    ok(admin.put("/v1/recipients/r-1", json=body))
    read = ok(admin.get("/v1/recipients/r-1"))
    assert (read["tier"], read["activity"]) == (tier, activity)


def test_bulk_upsert_creates_and_updates_many(admin: httpx.Client) -> None:
    ok(admin.put("/v1/recipients/b-0", json={"email": "keep@example.com", "locale": "en"}))
    batch = [
        {
            "id": f"b-{i}",
            "annual_spend": i * 200,
            "timezone": "Asia/Shanghai",
            "tags": ["game.mobile"],
        }
        for i in range(50)
    ]
    assert ok(admin.post("/v1/recipients/bulk", json={"recipients": batch})) == {"upserted": 50}
    first = ok(admin.get("/v1/recipients/b-0"))
    assert first["email"] == "keep@example.com"  # left out of the bulk entry, so kept
    assert first["timezone"] == "Asia/Shanghai"
    assert ok(admin.get("/v1/recipients/b-1"))["tier"] == "minnow"
    assert ok(admin.get("/v1/recipients/b-10"))["tier"] == "dolphin"
    assert ok(admin.get("/v1/recipients/b-49"))["tier"] == "whale"


def test_bulk_over_the_limit_writes_nothing(admin: httpx.Client) -> None:
    batch = [{"id": f"o-{i}"} for i in range(51)]
    assert error(admin.post("/v1/recipients/bulk", json={"recipients": batch}), 422)["field"] == (
        "recipients"
    )
    assert admin.get("/v1/recipients/o-0").status_code == 404


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"id": "x-3", "timezone": "Mars/Olympus_Mons"}, "recipients.3.timezone"),
        ({"id": "x-3", "email": "not an address"}, "recipients.3.email"),
        ({"id": "x-3", "annual_spend": -5}, "recipients.3.annual_spend"),
        ({"id": "x-3", "favourite_colour": "red"}, "recipients.3.favourite_colour"),
        ({"id": "bad id!"}, "recipients.3.id"),
        ({"timezone": "UTC"}, "recipients.3.id"),
        ({"id": "x-0"}, "recipients.3.id"),  # listed twice
        ("x-3", "recipients.3"),
    ],
)
def test_bulk_with_one_invalid_entry_writes_nothing(
    admin: httpx.Client, bad: Any, field: str
) -> None:
    batch: list[Any] = [{"id": f"x-{i}", "email": f"x{i}@example.com"} for i in range(5)]
    batch[3] = bad
    assert (
        error(admin.post("/v1/recipients/bulk", json={"recipients": batch}), 422)["field"] == field
    )
    for i in range(5):
        assert admin.get(f"/v1/recipients/x-{i}").status_code == 404


def test_bulk_needs_a_recipients_list(admin: httpx.Client) -> None:
    for body in ({}, {"recipients": {"id": "a"}}):
        assert error(admin.post("/v1/recipients/bulk", json=body), 422)["field"] == "recipients"
    assert error(admin.post("/v1/recipients/bulk", json=[{"id": "a"}]), 422)["field"] == "body"


# (method, path, JSON body, status, field): each one a mistake a caller could make.
BAD_INPUTS: list[tuple[str, str, Any, int, str]] = [
    ("PUT", "/v1/categories/c.x", {**FLASH_SALE, "colour": "red"}, 422, "colour"),
    (
        "PUT",
        "/v1/categories/c.x",
        {k: v for k, v in FLASH_SALE.items() if k != "name"},
        422,
        "name",
    ),
    ("PUT", "/v1/categories/c.x", {**FLASH_SALE, "kind": "spam"}, 422, "kind"),
    ("PUT", "/v1/categories/c.x", {**FLASH_SALE, "channels": ["fax"]}, 422, "channels.0"),
    ("PUT", "/v1/categories/c.x", {**FLASH_SALE, "channels": []}, 422, "channels"),
    ("PUT", "/v1/categories/c.x", {**FLASH_SALE, "channels": ["email", "email"]}, 422, "channels"),
    (
        "PUT",
        "/v1/categories/c.x",
        {**FLASH_SALE, "caps": [{"count": -1, "per": "1h"}]},
        422,
        "caps.0.count",
    ),
    (
        "PUT",
        "/v1/categories/c.x",
        {**FLASH_SALE, "caps": [{"count": 1, "per": "1y"}]},
        422,
        "caps.0.per",
    ),
    ("PUT", "/v1/categories/c.x", {**FLASH_SALE, "collapse_window": "0m"}, 422, "collapse_window"),
    (
        "PUT",
        "/v1/categories/c.x",
        {**FLASH_SALE, "collapse_window": "99999999999w"},
        422,
        "collapse_window",
    ),
    ("PUT", "/v1/categories/c.x", {**FLASH_SALE, "escalate_after": True}, 422, "escalate_after"),
    (
        "PUT",
        "/v1/categories/c.x",
        {**FLASH_SALE, "templates": {"inapp": {"en": {"title": "{{"}}}},
        422,
        "templates.inapp.en.title",
    ),
    (
        "PUT",
        "/v1/categories/c.x",
        {**FLASH_SALE, "templates": {"inapp": {"en": {"colour": "x"}}}},
        422,
        "templates.inapp.en.colour",
    ),
    (
        "PUT",
        "/v1/categories/c.x",
        {**FLASH_SALE, "digest_templates": {"email": {"en": {"body": "{% for %}"}}}},
        422,
        "digest_templates.email.en.body",
    ),
    (
        "PUT",
        "/v1/categories/c.x",
        {**FLASH_SALE, "digest_templates": {"email": {"en": {"subject": "x"}}}},
        422,
        "digest_templates.email.en.subject",
    ),
    (
        "PUT",
        "/v1/categories/c.x",
        {**FLASH_SALE, "digest_templates": {"email": {"en": {"body": "{{ 'x' * 99999999 }}"}}}},
        422,
        "digest_templates.email.en.body",
    ),
    ("PUT", "/v1/categories/c.x", {**FLASH_SALE, "name": "nul\u0000byte"}, 422, "name"),
    ("PUT", "/v1/categories/bad%20key", FLASH_SALE, 422, "key"),
    ("PUT", "/v1/recipients/u-2", {"timezone": "Mars/Olympus_Mons"}, 422, "timezone"),
    ("PUT", "/v1/recipients/u-2", {"timezone": "America"}, 422, "timezone"),
    ("PUT", "/v1/recipients/u-2", {"timezone": "x" * 300}, 422, "timezone"),
    ("PUT", "/v1/recipients/u-2", {"email": "nobody"}, 422, "email"),
    ("PUT", "/v1/recipients/u-2", {"email": "a\u0000@example.com"}, 422, "email"),
    ("PUT", "/v1/recipients/u-2", {"phone": "12345"}, 422, "phone"),
    ("PUT", "/v1/recipients/u-2", {"locale": "Klingon!"}, 422, "locale"),
    ("PUT", "/v1/recipients/u-2", {"annual_spend": -1}, 422, "annual_spend"),
    ("PUT", "/v1/recipients/u-2", {"annual_spend": "lots"}, 422, "annual_spend"),
    ("PUT", "/v1/recipients/u-2", b'{"annual_spend": 1e400}', 422, "annual_spend"),
    ("PUT", "/v1/recipients/u-2", b'{"annual_spend": Infinity}', 400, "body"),
    ("PUT", "/v1/recipients/u-2", {"last_active_at": "2026-01-01T00:00:00"}, 422, "last_active_at"),
    (
        "PUT",
        "/v1/recipients/u-2",
        {"last_active_at": "9999-12-31T23:00:00-10:00"},
        422,
        "last_active_at",
    ),
    ("PUT", "/v1/recipients/u-2", {"tags": "game.mobile"}, 422, "tags"),
    ("PUT", "/v1/recipients/u-2", {"webhook_url": "ftp://example.com"}, 422, "webhook_url"),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"quiet_hours": {"start": "25:00"}},
        422,
        "quiet_hours.start",
    ),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"quiet_hours": {"end": "8am"}},
        422,
        "quiet_hours.end",
    ),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"quiet_hours": {"timezone": "Nowhere/Town"}},
        422,
        "quiet_hours.timezone",
    ),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"quiet_hours": {"timezone": "Europe"}},
        422,
        "quiet_hours.timezone",
    ),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"quiet_hours": {"days": ["mon", "mon"]}},
        422,
        "quiet_hours.days",
    ),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"quiet_hours": {"days": ["someday"]}},
        422,
        "quiet_hours.days.0",
    ),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"caps": [{"count": -1, "per": "1d"}]},
        422,
        "caps.0.count",
    ),
    ("PUT", "/v1/recipients/u-1/preferences", {"channels": {"fax": True}}, 422, "channels.fax"),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"channels": {"email": "yes please"}},
        422,
        "channels.email",
    ),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"categories": {"no.such": {"enabled": False}}},
        422,
        "categories.no.such",
    ),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"categories": {"account.security": {"enabled": False}}},
        422,
        "categories.account.security.enabled",
    ),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"categories": {"account.security": {"channels": {"sms": False}}}},
        422,
        "categories.account.security.channels.sms",
    ),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"categories": {"promo.flash_sale": {"channels": {"sms": False}}}},
        422,
        "categories.promo.flash_sale.channels.sms",
    ),
    (
        "PUT",
        "/v1/recipients/u-1/preferences",
        {"categories": {"promo.flash_sale": {"caps": [{"count": 0, "per": "1d"}]}}},
        422,
        "categories.promo.flash_sale.caps.0.count",
    ),
    ("PUT", "/v1/recipients/u-1/preferences", {"paused_until": "tomorrow"}, 422, "paused_until"),
    ("PUT", "/v1/recipients/u-1/preferences", {"digest": {"at": "24:00"}}, 422, "digest.at"),
    ("PUT", "/v1/recipients/u-1/preferences", {"unsubscribe": True}, 422, "unsubscribe"),
    ("PUT", "/v1/recipients/u-1/preferences", [], 422, "body"),
    ("PUT", "/v1/recipients/nobody/preferences", {"unsubscribed": True}, 404, "id"),
]


@BOTH_BACKENDS
def test_bad_input_is_a_json_error_naming_the_field(catalog: httpx.Client) -> None:
    before = ok(catalog.get("/v1/recipients/u-1/preferences"))
    wrong = []
    for method, path, body, status, field in BAD_INPUTS:
        if isinstance(body, bytes):  # what Python's json module would parse, but not send
            response = catalog.request(method, path, content=body)
        else:
            response = catalog.request(method, path, json=body)
        got = response.json().get("error", {}) if response.status_code >= 400 else {}
        if (response.status_code, got.get("field")) != (status, field):
            wrong.append(f"{method} {path} → {field}: {response.status_code} {response.text[:300]}")
    assert not wrong, "\n".join(wrong)
    # None of the rejected changes was written.
    assert ok(catalog.get("/v1/recipients/u-1/preferences")) == before
    assert catalog.get("/v1/recipients/u-2").status_code == 404
    assert catalog.get("/v1/categories/c.x").status_code == 404


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"\xff\xfe", b'{"name": "Flash sales",', b"[" * 60_000],
    ids=["garbage", "empty", "not-utf8", "truncated", "deeply-nested"],
)
def test_a_body_that_is_not_json_is_rejected(catalog: httpx.Client, content: bytes) -> None:
    response = catalog.put(
        "/v1/categories/c.x", content=content, headers={"Content-Type": "application/json"}
    )
    if content.startswith(b"[["):  # too deep to read to its end: refused for its depth
        assert error(response, 422)["field"] == "body"
    else:
        assert error(response, 400) == {
            "code": "invalid_json",
            "message": error(response, 400)["message"],
            "field": "body",
        }


def test_a_body_over_the_size_limit_is_413(catalog: httpx.Client, settings: Settings) -> None:
    big = {**FLASH_SALE, "name": "x" * (settings.max_body_bytes + 1)}
    body = error(catalog.put("/v1/categories/c.big", json=big), 413)
    assert (body["code"], body["field"]) == ("too_large", "body")
    batch = [{"id": f"big-{i}", "tags": ["t" * 90] * 20} for i in range(40)]
    assert error(catalog.post("/v1/recipients/bulk", json={"recipients": batch}), 413)
    assert catalog.get("/v1/categories/c.big").status_code == 404
    assert catalog.get("/v1/recipients/big-0").status_code == 404


def test_unknown_routes_and_methods_answer_json(catalog: httpx.Client) -> None:
    assert error(catalog.get("/v1/nothing-here"), 404)["code"] == "not_found"
    assert error(catalog.post("/v1/categories"), 405)["code"] == "method_not_allowed"
    assert error(catalog.get("/v1/categories/no.such"), 404)["field"] == "key"


def test_api_keys_and_scopes(server: Server, api_keys: dict[str, str], db: Database) -> None:
    def client(key: str | None = None, scheme: str = "Bearer") -> httpx.Client:
        headers = {"Authorization": f"{scheme} {key}"} if key is not None else {}
        return httpx.Client(base_url=server.url, headers=headers, timeout=30)

    with client() as anonymous:
        assert error(anonymous.get("/v1/categories"), 401)["field"] == "Authorization"
    with client("", scheme="Bearer") as empty:
        empty.headers["Authorization"] = "Bearer"
        assert error(empty.get("/v1/categories"), 401)["code"] == "unauthorized"
    with client(api_keys["read"], scheme="Basic") as basic:
        assert error(basic.get("/v1/categories"), 401)["code"] == "unauthorized"
    with client("tk_not-a-real-key") as unknown:
        assert error(unknown.get("/v1/categories"), 401)["code"] == "unauthorized"

    with client(api_keys["admin"]) as admin:
        ok(admin.put("/v1/categories/promo.flash_sale", json=FLASH_SALE))
        ok(admin.put("/v1/recipients/u-1", json={"email": "a@example.com"}))
    with client(api_keys["read"]) as reader:
        ok(reader.get("/v1/categories"))
        ok(reader.get("/v1/recipients/u-1"))
        ok(reader.get("/v1/recipients/u-1/preferences"))
        assert error(reader.put("/v1/categories/promo.x", json=FLASH_SALE), 403)["code"] == (
            "forbidden"
        )
        assert error(reader.put("/v1/recipients/u-1", json={"locale": "en"}), 403)
        assert error(reader.put("/v1/recipients/u-1/preferences", json={"unsubscribed": True}), 403)
        assert error(reader.post("/v1/recipients/bulk", json={"recipients": []}), 403)
        assert error(reader.delete("/v1/recipients/u-1"), 403)
    with client(api_keys["send"]) as sender:
        assert error(sender.get("/v1/categories"), 403)["field"] == "Authorization"
        assert error(sender.get("/v1/recipients/u-1"), 403)
        assert error(sender.get("/v1/recipients/u-1/preferences"), 403)
    with client(api_keys["read"]) as reader:
        assert ok(reader.get("/v1/recipients/u-1"))["locale"] is None  # nothing was changed

    with db.session() as session:
        row, plain = keys.create(session, name="revoked", scopes=["admin"])
        row.revoked_at = datetime.now(UTC)
    with client(plain) as revoked:
        assert error(revoked.get("/v1/categories"), 401)["code"] == "unauthorized"


def test_health_readiness_and_openapi(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert ok(anonymous.get("/healthz")) == {"status": "ok"}
        assert ok(anonymous.get("/readyz")) == {
            "status": "ready",
            "checks": {"sql": "ok", "redis": "ok"},
            # no `tidings worker` or `tidings up` is running beside this API
            "processes": {
                "supervisors": 0,
                "running": 0,
                "expected": 0,
                "restarts": 0,
                "last_restart": None,
            },
        }
        document = ok(anonymous.get("/v1/openapi.json"))
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path, method in [
        ("/v1/categories", "get"),
        ("/v1/categories/{key}", "put"),
        ("/v1/categories/{key}", "get"),
        ("/v1/recipients/{id}", "put"),
        ("/v1/recipients/{id}", "get"),
        ("/v1/recipients/{id}", "delete"),
        ("/v1/recipients/bulk", "post"),
        ("/v1/recipients/{id}/preferences", "get"),
        ("/v1/recipients/{id}/preferences", "put"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ]:
        assert method in paths.get(path, {}), (method, path)
    put_category = paths["/v1/categories/{key}"]["put"]
    assert put_category["security"] == [{"bearer": []}]
    assert "admin" in put_category["description"]
    assert "CategoryIn" in document["components"]["schemas"]


@pytest.fixture
def server_without_redis(settings: Settings, db: Database) -> Iterator[Server]:
    broken = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    running = Server(create_app(broken)).start()
    yield running
    running.stop()


def test_readyz_names_what_is_down(server_without_redis: Server) -> None:
    with httpx.Client(base_url=server_without_redis.url, timeout=30) as anonymous:
        response = anonymous.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["sql"] == "ok"
    assert body["checks"]["redis"].startswith("error")


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_DATABASE_URL"] = settings.database_url
    return subprocess.run(
        [str(TIDINGS), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_cli_creates_a_key_that_works(server: Server, settings: Settings) -> None:
    created = _cli(settings, "keys", "create", "--name", "order-system", "--scopes", "send,read")
    assert created.returncode == 0, created.stderr
    plain = created.stdout.strip().splitlines()[-1]
    assert plain.startswith("tk_") and " " not in plain
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {plain}"}, timeout=30
    ) as client:
        assert ok(client.get("/v1/categories")) == {"items": []}
        assert error(client.put("/v1/categories/promo.x", json=FLASH_SALE), 403)["code"] == (
            "forbidden"
        )

    refused = _cli(settings, "keys", "create", "--name", "x", "--scopes", "send,everything")
    assert refused.returncode != 0
    assert "scopes" in refused.stderr
