"""A preference document reads back as it was written, or the write is refused with a 422
naming the field: whatever the recipient is shown is what the planner enforces."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

CATALOG = {
    "promo.flash_sale": {
        "name": "Flash sales",
        "kind": "promotional",
        "priority": "normal",
        "channels": ["push", "inapp", "email"],
        "templates": {"inapp": {"en": {"title": "Sale", "body": "today"}}},
    },
    "account.security": {
        "name": "Security",
        "kind": "service",
        "priority": "critical",
        "required": True,
        "channels": ["email", "sms", "inapp"],
        "templates": {"inapp": {"en": {"title": "Sign-in", "body": "new device"}}},
    },
}
USER_CHANNELS = ("inapp", "email", "push", "sms", "webhook")
WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# A duration as written, and its seconds (worked out here, not by the product).
DURATIONS = st.sampled_from(
    [
        ("1h", 3600),
        (3600, 3600),
        ("90m", 5400),
        ("1d", 86400),
        ("7d", 604800),
        ("1w", 604800),
        (45, 45),
        ("2w", 1209600),
    ]
)
IDS = itertools.count()


def seconds(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([smhdw])", text).groups()  # type: ignore[union-attr]
    return int(number) * UNIT[unit]


caps = st.lists(
    st.tuples(st.integers(1, 1_000_000), DURATIONS).map(
        lambda c: {"count": c[0], "per": c[1][0], "_seconds": c[1][1]}
    ),
    max_size=3,
)
times = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 30]))
maybe = st.none


def _category(key: str) -> st.SearchStrategy[dict[str, Any]]:
    spec = CATALOG[key]
    required = bool(spec.get("required"))
    on = st.just(True) if required else st.booleans()
    return st.fixed_dictionaries(
        {},
        optional={
            "enabled": maybe() | on,
            "channels": maybe() | st.dictionaries(st.sampled_from(spec["channels"]), on),
            "caps": maybe() | caps,
        },
    )


SECTIONS: dict[str, st.SearchStrategy[Any]] = {
    "channels": maybe() | st.dictionaries(st.sampled_from(USER_CHANNELS), st.booleans()),
    "categories": maybe()
    | st.fixed_dictionaries({}, optional={key: _category(key) for key in CATALOG}),
    "caps": maybe() | caps,
    "quiet_hours": maybe()
    | st.fixed_dictionaries(
        {},
        optional={
            "enabled": maybe() | st.booleans(),
            "start": maybe() | times,
            "end": maybe() | times,
            "timezone": maybe()
            | st.sampled_from(["UTC", "America/Los_Angeles", "Asia/Kolkata", "US/Pacific"]),
            "days": maybe() | st.lists(st.sampled_from(WEEK), unique=True),
        },
    ),
    "paused_until": maybe()
    | st.builds(
        lambda days, offset: (
            (datetime(2027, 1, 1, tzinfo=UTC) + timedelta(days=days))
            .astimezone(timezone(timedelta(hours=offset)))
            .isoformat()
        ),
        st.integers(-400, 400),
        st.integers(-11, 12),
    ),
    "digest": maybe()
    | st.fixed_dictionaries(
        {}, optional={"enabled": maybe() | st.booleans(), "at": maybe() | times}
    ),
    "unsubscribed": maybe() | st.booleans(),
}
# Whole documents, and each section on its own so that each gets its share of examples.
DOCUMENTS = {
    "whole": st.fixed_dictionaries({}, optional=SECTIONS),
    **{key: st.fixed_dictionaries({key: value}) for key, value in SECTIONS.items()},
}


def _wire(value: Any) -> Any:
    """The document as sent: without the test's own notes."""
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _caps_read(read: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(c["count"], seconds(c["per"])) for c in read]


def _caps_written(written: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(c["count"], c["_seconds"]) for c in written]


def _refusal(written: dict[str, Any]) -> str | None:
    """The field a write must be refused for: quiet hours that are on but never quiet."""
    quiet = written.get("quiet_hours") or {}
    if quiet.get("enabled") is False:
        return None
    if quiet.get("days") == []:
        return "quiet_hours.days"
    if quiet.get("start") is not None and quiet.get("start") == quiet.get("end"):
        return "quiet_hours.end"
    return None


def _same(written: dict[str, Any], read: dict[str, Any], default: dict[str, Any]) -> None:
    """Every field written reads back as written; a null reads back as the default."""
    for key, value in written.items():
        if value is None:
            assert read[key] == default[key], key
        elif key in ("channels",):
            for channel, on in value.items():
                assert read[key][channel] is on, (key, channel)
        elif key == "caps":
            assert _caps_read(read[key]) == _caps_written(value)
        elif key == "paused_until":
            assert datetime.fromisoformat(read[key]) == datetime.fromisoformat(value)
        elif key == "categories":
            for cat, choice in value.items():
                _same_section(choice, read[key][cat], default[key][cat], f"categories.{cat}")
        elif key in ("quiet_hours", "digest"):
            _same_section(value, read[key], default[key], key)
        else:
            assert read[key] == value, key


def _same_section(
    written: dict[str, Any], read: dict[str, Any], default: dict[str, Any], where: str
) -> None:
    for name, value in written.items():
        if value is None:
            assert read[name] == default[name], f"{where}.{name}"
        elif name == "caps":
            assert _caps_read(read[name]) == _caps_written(value), f"{where}.{name}"
        elif name == "days":
            assert sorted(read[name], key=WEEK.index) == read[name]  # listed Monday first
            assert set(read[name]) == set(value), f"{where}.{name}"
        elif name == "channels":
            for channel, on in value.items():
                assert read[name][channel] is on, f"{where}.{name}.{channel}"
        else:
            assert read[name] == value, f"{where}.{name}"


@pytest.fixture
def catalog(admin: httpx.Client) -> httpx.Client:
    for key, spec in CATALOG.items():
        admin.put(f"/v1/categories/{key}", json=spec).raise_for_status()
    return admin


@pytest.mark.parametrize("part", DOCUMENTS)
@hypothesis_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_preference_document_reads_back_as_written(
    catalog: httpx.Client, part: str, data: st.DataObject
) -> None:
    written = data.draw(DOCUMENTS[part], label="written")
    rid = f"p-{next(IDS)}"
    catalog.put(f"/v1/recipients/{rid}", json={"timezone": "Asia/Shanghai"}).raise_for_status()
    default = catalog.get(f"/v1/recipients/{rid}/preferences").json()
    answer = catalog.put(f"/v1/recipients/{rid}/preferences", json=_wire(written))
    if (field := _refusal(written)) is not None:
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == field
        assert catalog.get(f"/v1/recipients/{rid}/preferences").json() == default
        return
    assert answer.status_code == 200, answer.text
    read = catalog.get(f"/v1/recipients/{rid}/preferences").json()
    assert read == answer.json()
    _same(written, read, default)


def test_empty_quiet_days_are_kept_when_quiet_hours_are_off_and_refused_when_on(
    catalog: httpx.Client,
) -> None:
    catalog.put("/v1/recipients/u-1", json={}).raise_for_status()
    url = "/v1/recipients/u-1/preferences"
    refused = catalog.put(url, json={"quiet_hours": {"days": []}})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "quiet_hours.days"
    off = catalog.put(url, json={"quiet_hours": {"enabled": False, "days": []}})
    assert off.json()["quiet_hours"]["days"] == [] and off.json()["quiet_hours"]["enabled"] is False
    # Turning them back on without a day is refused, and nothing changes.
    again = catalog.put(url, json={"quiet_hours": {"enabled": True}})
    assert again.status_code == 422 and again.json()["error"]["field"] == "quiet_hours.days"
    assert catalog.get(url).json()["quiet_hours"]["enabled"] is False
    log = catalog.put(url, json={"channels": {"log": False}})
    assert log.status_code == 422 and log.json()["error"]["field"] == "channels.log"
