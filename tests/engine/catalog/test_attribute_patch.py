"""`PATCH /v1/recipients/{id}`: a JSON merge patch (RFC 7386) that merges `attributes`
into the stored ones instead of replacing them, within the same bounds."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.schemas.catalog import merge_patch

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_patch_merges_attributes_and_a_segment_sees_the_result(admin: httpx.Client) -> None:
    start = {"level": 12, "region": "cn", "favourite": {"game": "genshin", "card": "monthly"}}
    admin.put("/v1/recipients/u-1", json={"name": "Ada", "attributes": start}).raise_for_status()
    patched = admin.patch(
        "/v1/recipients/u-1",
        json={"attributes": {"level": 13, "region": None, "favourite": {"card": None}}},
        headers=MERGE_PATCH,
    )
    assert patched.status_code == 200, patched.text
    expected = {"level": 13, "favourite": {"game": "genshin"}}
    assert patched.json()["attributes"] == expected
    assert patched.json()["name"] == "Ada"  # left out: kept
    assert admin.get("/v1/recipients/u-1").json()["attributes"] == expected

    # A segment reads the merged attributes: only u-1 is at level 13 now.
    admin.put("/v1/recipients/u-2", json={"attributes": {"level": 12}}).raise_for_status()
    category = {"name": "Level up", "kind": "promotional", "priority": "low", "channels": ["inapp"]}
    admin.put("/v1/categories/promo.level", json=category).raise_for_status()
    sent = admin.post(
        "/v1/notifications",
        json={
            "category": "promo.level",
            "to": {"segment": {"attributes": {"level": {"gte": 13}}}},
            "content": {"title": "Level 13!", "body": "."},
        },
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["recipients"] == 1

    cleared = admin.patch("/v1/recipients/u-1", json={"attributes": None})
    assert cleared.json()["attributes"] == {}
    assert admin.patch("/v1/recipients/nobody", json={"name": "x"}).status_code == 404


def test_a_patch_that_would_break_the_bounds_is_refused_and_changes_nothing(
    admin: httpx.Client,
) -> None:
    many = {f"a{i}": i for i in range(50)}
    admin.put("/v1/recipients/u-1", json={"attributes": many}).raise_for_status()
    refused = admin.patch("/v1/recipients/u-1", json={"attributes": {"one_more": 1}})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "attributes"
    bad_name = admin.patch("/v1/recipients/u-1", json={"attributes": {"a0": None, "1x": 1}})
    assert bad_name.status_code == 422
    assert bad_name.json()["error"]["field"] == "attributes.1x"
    # Removing names and adding as many stays within the bound.
    swap = admin.patch("/v1/recipients/u-1", json={"attributes": {"a0": None, "b0": "x"}})
    assert swap.status_code == 200
    assert len(swap.json()["attributes"]) == 50 and "b0" in swap.json()["attributes"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: st.dictionaries(st.sampled_from("abc"), inner, max_size=3),
    max_leaves=8,
)


@given(target=JSON, patch=JSON)
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any) -> None:
    result = merge_patch(target, patch)
    if not isinstance(patch, dict):
        assert result == patch
        return
    assert isinstance(result, dict)
    for key, value in patch.items():
        if value is None:
            assert key not in result
        elif not isinstance(value, dict):
            assert result[key] == value
    for key, value in (target if isinstance(target, dict) else {}).items():
        if key not in patch:
            assert result[key] == value
    assert merge_patch(result, patch) == result  # applying it again changes nothing


def test_the_rfc_7386_example() -> None:
    target = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert merge_patch(target, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }
