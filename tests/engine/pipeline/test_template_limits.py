"""Templates do bounded work: a category whose templates break a limit whatever the data is
refused when written (422 naming the field), and a delivery whose data drives a template
past a limit fails with a clear error, in seconds, without storing a huge message."""

from __future__ import annotations

import time

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from engine.pipeline.template_limits import MAX_SECONDS, field_limit
from engine.pipeline.templates import RenderError, render
from tests.engine.acceptance.test_pipeline_rules import category, channels_of
from tests.engine.conftest import Processes, recipient, send_and_settle

NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
CONSTANT_BLOWUPS = [
    ("{{ 'x' * 10**7 }}", "repeats a value"),
    (NESTED_LOOPS, "too much work"),
    ("{{ 'x'.center(10**9) }}", "over the limit"),
    ("{{ 'x'|indent(10**9) }}", "over the limit"),
    ("{{ '{:>999999999}'.format(1) }}", "width"),
    ("{{ '%999999999d' % 1 }}", "width"),
    ("{% set a = 'x' * 900 %}{% set b = a ~ a %}{{ b ~ b }}", "over the limit"),
    ("{{ 9 ** 99999 }}", "bits"),
]


@pytest.mark.parametrize(("source", "why"), CONSTANT_BLOWUPS)
def test_a_template_that_breaks_a_limit_whatever_the_data_is_refused_when_written(
    admin: httpx.Client, source: str, why: str
) -> None:
    started = time.monotonic()
    answer = admin.put(
        "/v1/categories/promo.big",
        json={
            "name": "Big",
            "kind": "promotional",
            "priority": "normal",
            "channels": ["inapp"],
            "templates": {"inapp": {"en": {"title": source, "body": "ok"}}},
        },
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == "templates.inapp.en.title" and why in error["message"]
    assert time.monotonic() - started < MAX_SECONDS + 5
    assert admin.get("/v1/categories/promo.big").status_code == 404


def test_a_delivery_whose_data_drives_its_template_too_far_fails_with_the_reason(
    admin: httpx.Client, pipeline: Processes
) -> None:
    category(
        admin,
        "promo.data",
        channels=["inapp"],
        templates={
            "inapp": {
                "en": {
                    "title": "{{ data.word * data.times }}",
                    "body": "{% for a in data.s %}{% for b in data.s %}{% endfor %}{% endfor %}",
                }
            }
        },
    )
    recipient(admin, "u-1")
    started = time.monotonic()
    huge = send_and_settle(
        admin, category="promo.data", to=["u-1"], data={"word": "x", "times": 10**7, "s": "ab"}
    )
    inapp = channels_of(huge, "u-1")["inapp"]
    assert inapp["status"] == "failed" and "template title" in inapp["error"]
    assert "10,000,000" in inapp["error"]
    busy = send_and_settle(
        admin, category="promo.data", to=["u-1"], data={"word": "x", "times": 3, "s": "y" * 5000}
    )
    inapp = channels_of(busy, "u-1")["inapp"]
    assert inapp["status"] == "failed" and "template body" in inapp["error"]
    assert "too much work" in inapp["error"]
    assert time.monotonic() - started < 30
    fine = send_and_settle(
        admin, category="promo.data", to=["u-1"], data={"word": "ab", "times": 3, "s": "xy"}
    )
    assert channels_of(fine, "u-1")["inapp"]["status"] == "delivered"


PIECES = st.sampled_from(
    [
        "{{ 'ab' * data.n }}",
        "{{ data.s ~ data.s }}",
        "{% for i in range(data.n) %}{{ i }}{% endfor %}",
        "{% for c in data.s %}{{ c }}{% endfor %}",
        "{{ data.s|center(data.n) }}",
        "{{ data.s.ljust(data.n) }}",
        "{{ '%*s' % (data.n, 'x') }}",
        "{{ data.n ** 3 }}",
        "plain text ",
    ]
)


@hypothesis_settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(PIECES, min_size=1, max_size=4),
    depth=st.integers(0, 3),
    n=st.integers(0, 10**9),
    s=st.text(max_size=200),
)
def test_any_template_renders_within_its_limits_or_fails_cleanly(
    pieces: list[str], depth: int, n: int, s: str
) -> None:
    source = "".join(pieces)
    for _ in range(depth):
        source = "{% for k in range(data.n) %}" + source + "{% endfor %}"
    started = time.monotonic()
    try:
        out = render({"title": source, "body": source}, {"data": {"n": n, "s": s}})
    except RenderError as exc:
        assert str(exc).startswith(("template title:", "template body:"))
    else:
        assert len(out["title"]) <= field_limit("title") and len(out["body"]) <= field_limit("body")
    assert time.monotonic() - started < 2 * MAX_SECONDS + 2


def test_accepting_a_notification_does_bounded_template_work(admin: httpx.Client) -> None:
    """The API checks a notification's data against the templates when accepting it: that
    check runs within the same limits, so a request's data never makes the API hang."""
    category(
        admin,
        "promo.heavy",
        channels=["inapp"],
        templates={
            "inapp": {
                "en": {
                    "title": "hi",
                    "body": "{% for a in data.s %}{% for b in data.s %}{% endfor %}{% endfor %}",
                }
            }
        },
    )
    recipient(admin, "u-1")
    started = time.monotonic()
    answer = admin.post(
        "/v1/notifications",
        json={"category": "promo.heavy", "to": ["u-1"], "data": {"s": "y" * 20_000}},
    )
    assert answer.status_code == 202, answer.text
    assert time.monotonic() - started < MAX_SECONDS + 3
