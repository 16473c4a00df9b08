"""A/B variants over real HTTP: refusals naming the field, the variant recorded on each
delivery, and the stats filters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


@pytest.fixture
def shop(admin: httpx.Client) -> httpx.Client:
    admin.put(
        "/v1/categories/promo.ab",
        json={
            "name": "Deals",
            "kind": "promotional",
            "priority": "high",
            "channels": ["inapp"],
            "templates": {"inapp": {"en": {"title": "Deal on {{ data.card }}", "body": "b"}}},
        },
    ).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    return admin


TWO = [{"name": "a", "data": {"card": "A"}}, {"name": "b", "data": {"card": "B"}}]


@pytest.mark.parametrize(
    ("variants", "field"),
    [
        ([{"name": "a", "data": {"card": "A"}}], "variants"),
        ([TWO[0], {"name": "a", "data": {"card": "B"}}], "variants.1.name"),
        ([TWO[0], {"name": "b", "weight": 0, "data": {"card": "B"}}], "variants.1.weight"),
        ([TWO[0], {"name": "b", "weight": "2", "data": {"card": "B"}}], "variants.1.weight"),
        ([TWO[0], {"name": "b c", "data": {"card": "B"}}], "variants.1.name"),
        ([TWO[0], {"name": "b"}], "variants.1.data.card"),
        (
            [TWO[0], {"name": "b", "templates": {"inapp": {"en": {"title": "{{ oops"}}}}],
            "variants.1.templates.inapp.en.title",
        ),
        ([TWO[0], {"name": "b", "send_after": "soon"}], "variants.1.send_after"),
        ([TWO[0], {"name": "b", "colour": "red"}], "variants.1.colour"),
        ([TWO[0], {"name": "b", "content": {}}], "variants.1.content"),
        ([TWO[0], {"name": "b", "content": {"title": ""}}], "variants.1.content.title"),
    ],
)
def test_bad_variants_are_refused_naming_the_field(
    shop: httpx.Client, variants: list[dict[str, Any]], field: str
) -> None:
    response = shop.post(
        "/v1/notifications", json={"category": "promo.ab", "to": ["u-1"], "variants": variants}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_variants_with_their_own_data_need_none_at_the_top(shop: httpx.Client) -> None:
    response = shop.post(
        "/v1/notifications", json={"category": "promo.ab", "to": ["u-1"], "variants": TWO}
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"by": "variant", "campaign": "abc"}, "campaign"),
        ({"by": "variant", "notification": "-1"}, "notification"),
        ({"by": "variant", "category": "bad key!"}, "category"),
        ({"by": "category", "from": "1796068487"}, "from"),  # not seconds since 1970
    ],
)
def test_bad_stats_filters_are_refused(
    shop: httpx.Client, params: dict[str, str], field: str
) -> None:
    response = shop.get("/v1/stats", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_stats_by_variant_of_nothing_is_empty_not_an_error(shop: httpx.Client) -> None:
    body = shop.get("/v1/stats", params={"by": "variant", "campaign": "99"}).json()
    assert body["items"] == [] and body["significant"]["click_rate"] is False


@pytest.mark.parametrize(
    ("fields", "field", "lacking"),
    [
        (
            {"title": "{{ data.colour }}", "body": "b"},
            "variants.1.templates.inapp.en.title",
            "colour",
        ),
        (
            {"title": "Deal on {{ data.card }}", "body": "{{ data.size.x }}"},
            "variants.1.templates.inapp.en.body",
            "size",
        ),
    ],
)
def test_a_variants_own_template_is_checked_against_the_data(
    shop: httpx.Client, fields: dict[str, str], field: str, lacking: str
) -> None:
    own = {"name": "b", "data": {"card": "B"}, "templates": {"inapp": {"en": fields}}}
    body = {"category": "promo.ab", "to": ["u-1"], "variants": [TWO[0], own]}
    response = shop.post("/v1/notifications", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and f"data.{lacking}" in error["message"], error
    # Given the data it needs, the same variant is accepted.
    own["data"] = {"card": "B", "colour": "red", "size": {"x": 1}}
    assert shop.post("/v1/notifications", json=body).status_code == 202


@pytest.mark.parametrize(
    "variant",
    [
        {"name": "b", "content": {"title": "卡卡 saved you a seat"}},
        {"name": "b", "templates": {"inapp": {"en": {"title": "Hi"}}}},
    ],
)
def test_what_a_variant_leaves_to_the_category_is_checked_against_its_data(
    admin: httpx.Client, variant: dict[str, Any]
) -> None:
    """A variant that gives only a title sends the category's body: the data that body
    needs is checked when the notification is accepted, not found missing per delivery."""
    admin.put(
        "/v1/categories/promo.body",
        json={
            "name": "Deals",
            "kind": "promotional",
            "priority": "high",
            "channels": ["inapp"],
            "templates": {"inapp": {"en": {"title": "T", "body": "{{ data.card }} is back"}}},
        },
    ).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    given = [{"name": "a", "content": {"title": "Sale soon"}, "data": {"card": "A"}}, variant]
    body: dict[str, Any] = {"category": "promo.body", "to": ["u-1"], "variants": given}
    response = admin.post("/v1/notifications", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "variants.1.data.card", error
    assert "templates.inapp.en.body" in error["message"], error
    # With the data given at the top, both variants are accepted.
    assert admin.post("/v1/notifications", json={**body, "data": {"card": "B"}}).status_code == 202


def test_a_variant_may_give_any_one_field_of_literal_copy(shop: httpx.Client) -> None:
    """A variant that changes only the body (or only the link) is accepted: the title
    stays the notification's."""
    for content in ({"body": "Two days left"}, {"action_url": "https://shop.example/b"}):
        own = {"name": "b", "data": {"card": "B"}, "content": content}
        body = {"category": "promo.ab", "to": ["u-1"], "variants": [TWO[0], own]}
        response = shop.post("/v1/notifications", json=body)
        assert response.status_code == 202, response.text
