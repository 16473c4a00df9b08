"""A recipient's name and attributes over real HTTP: stored and read back, bounded, named
in the API's terms when refused; segments on attributes; category caps by activity."""

from __future__ import annotations

from typing import Any

import httpx


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: httpx.Response, field: str) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    return str(error["message"])


def test_name_and_attributes_read_back_and_are_replaced_whole(admin: httpx.Client) -> None:
    body = {"name": "阿明", "attributes": {"level": 12, "region": "south", "vip": True}}
    shown = ok(admin.put("/v1/recipients/u-1", json=body))
    assert shown["name"] == "阿明" and shown["attributes"] == body["attributes"]
    ok(admin.put("/v1/recipients/u-1", json={"email": "a@example.com"}))  # left out: kept
    assert ok(admin.get("/v1/recipients/u-1"))["attributes"] == body["attributes"]
    ok(admin.put("/v1/recipients/u-1", json={"attributes": {"level": 13}}))
    assert ok(admin.get("/v1/recipients/u-1"))["attributes"] == {"level": 13}
    cleared = ok(admin.put("/v1/recipients/u-1", json={"attributes": None, "name": None}))
    assert cleared["attributes"] == {} and cleared["name"] is None


def test_attributes_over_their_bounds_are_refused_naming_the_field(admin: httpx.Client) -> None:
    big = {"notes": "x" * 5000}
    assert "4096 bytes" in refused(
        admin.put("/v1/recipients/u-1", json={"attributes": big}), "attributes"
    )
    many = {f"a{i}": i for i in range(51)}
    refused(admin.put("/v1/recipients/u-1", json={"attributes": many}), "attributes")
    refused(
        admin.put("/v1/recipients/u-1", json={"attributes": {"bad key": 1}}), "attributes.bad key"
    )
    deep = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    refused(admin.put("/v1/recipients/u-1", json={"attributes": deep}), "attributes")
    refused(admin.put("/v1/recipients/u-1", json={"attributes": [1, 2]}), "attributes")
    refused(admin.put("/v1/recipients/u-1", json={"name": ""}), "name")
    bulk = {"recipients": [{"id": "u-2", "attributes": big}]}
    refused(admin.post("/v1/recipients/bulk", json=bulk), "recipients.0.attributes")
    assert admin.get("/v1/recipients/u-1").status_code == 404  # nothing was written


def test_attribute_segments_count_their_audience_and_refuse_bad_conditions(
    admin: httpx.Client,
) -> None:
    category = {"name": "Sale", "kind": "promotional", "priority": "normal", "channels": ["inapp"]}
    ok(admin.put("/v1/categories/promo.sale", json=category))
    people = {
        "u-1": {"level": 12, "region": "south"},
        "u-2": {"level": 3, "region": "north"},
        "u-3": {"level": "12", "region": "south"},
        "u-4": {},
    }
    for rid, attrs in people.items():
        ok(admin.put(f"/v1/recipients/{rid}", json={"attributes": attrs}))

    def count(segment: dict[str, Any]) -> int:
        body = {"category": "promo.sale", "to": {"segment": segment}, "content": {"title": "t"}}
        return int(ok(admin.post("/v1/notifications", json=body), 202)["recipients"])

    assert count({"attributes": {"level": {"gte": 10}}}) == 1  # u-1; "12" is text
    assert count({"attributes": {"region": {"in": ["south", "east"]}}}) == 2
    assert count({"attributes": {"region": {"eq": "south"}, "level": {"eq": 12}}}) == 1
    assert count({"attributes": {"level": {"lt": 5}}, "tier": ["minnow"]}) == 1

    def bad(segment: Any, field: str) -> None:
        body = {"category": "promo.sale", "to": {"segment": segment}, "content": {"title": "t"}}
        refused(admin.post("/v1/notifications", json=body), field)

    bad({"attributes": {"level": {}}}, "to.segment.attributes.level")
    bad({"attributes": {"level": {"eq": 1, "gt": 0}}}, "to.segment.attributes.level")
    bad({"attributes": {"level": {"gt": 1, "lt": "ten"}}}, "to.segment.attributes.level")
    bad({"attributes": {"level": {"gt": True}}}, "to.segment.attributes.level.gt")
    bad({"attributes": {"level": {"in": []}}}, "to.segment.attributes.level.in")
    bad({"attributes": {"level": {"between": [1, 2]}}}, "to.segment.attributes.level.between")
    bad({"attributes": {}}, "to.segment.attributes")


def test_caps_by_activity_read_back_and_are_checked(admin: httpx.Client) -> None:
    category = {
        "name": "Win-back",
        "kind": "promotional",
        "priority": "normal",
        "channels": ["inapp"],
        "caps": [{"count": 5, "per": "1d"}],
        "caps_by_activity": {
            "active": [{"count": 2, "per": "1w"}],
            "churned": [{"count": 1, "per": "30d"}],
        },
    }
    shown = ok(admin.put("/v1/categories/promo.winback", json=category))
    assert shown["caps_by_activity"] == {
        "active": [{"count": 2, "per": "1w"}],
        "churned": [{"count": 1, "per": "30d"}],
    }
    wrong = {**category, "caps_by_activity": {"dormant": [{"count": 1, "per": "1d"}]}}
    refused(admin.put("/v1/categories/promo.winback", json=wrong), "caps_by_activity.dormant")
    wrong = {**category, "caps_by_activity": {"active": [{"count": 0, "per": "1d"}]}}
    refused(
        admin.put("/v1/categories/promo.winback", json=wrong), "caps_by_activity.active.0.count"
    )
