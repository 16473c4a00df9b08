"""An unsubscribe counts against the message whose link was used, as the mail that reached
the SMTP server carried it: only that message's variant shows it in `/v1/stats`, a link
whose delivery id was edited to someone else's charges nobody, and a link without one
still unsubscribes."""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.engine.acceptance.test_pipeline_rules import category, channels_of
from tests.engine.conftest import Processes, recipient, send, settled, wait_for
from tests.support import Mailbox, raw_headers

BOTH = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
PEOPLE = ("u-1", "u-2", "u-3", "u-4")


def _variants(day: str) -> list[dict[str, Any]]:
    """Two variants named for the day, so each notification's variants are its own rows."""
    return [
        {"name": f"{day}-x", "content": {"title": f"{day} x", "body": "plain"}},
        {"name": f"{day}-y", "content": {"title": f"{day} y", "body": "friendly"}},
    ]


class _Form(HTMLParser):
    """The action of the confirm form on the unsubscribe page."""

    def __init__(self) -> None:
        super().__init__()
        self.actions: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form" and found.get("method") == "post" and found.get("action"):
            self.actions.append(str(found["action"]))


def _headers_by_delivery(smtp: Mailbox) -> dict[str, dict[str, str]]:
    """Each mail's headers as sent, by the delivery id its Message-ID names."""
    out = {}
    for raw in smtp.raw:
        headers = dict(raw_headers(raw))
        match = re.fullmatch(r"<delivery-(\d+)@[^>]+>", headers["Message-ID"])
        assert match, headers["Message-ID"]
        out[match.group(1)] = headers
    return out


def _on_server(url: str) -> str:
    """A link's path and query, to be opened on the API under test (links are minted
    for the public URL, which the test server does not listen on)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@BOTH
def test_an_unsubscribe_counts_against_the_variant_whose_link_was_used(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(admin, "promo.ab", channels=["email"])
    for rid in PEOPLE:
        recipient(admin, rid, email=f"{rid}@example.com")
    views = {}
    for day in ("monday", "tuesday"):
        nid = send(admin, category="promo.ab", to=list(PEOPLE), variants=_variants(day))
        views[day] = wait_for(lambda nid=nid: settled(admin, nid), timeout=60)
    wait_for(lambda: len(smtp.raw) == 2 * len(PEOPLE), timeout=60)
    email = {
        (day, rid): channels_of(view, rid)["email"] for day, view in views.items() for rid in PEOPLE
    }
    mails = _headers_by_delivery(smtp)
    link = {}
    for key, delivery in email.items():
        headers = mails[delivery["id"]]
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        target = re.fullmatch(
            r"<(http://[^>]+/u/[A-Za-z0-9._-]+\?d=(\d+))>", headers["List-Unsubscribe"]
        )
        assert target, headers["List-Unsubscribe"]
        assert target.group(2) == delivery["id"]  # the link names its own message
        link[key] = target.group(1)

    # u-1 unsubscribes in one click (RFC 8058) from Tuesday's mail.
    one_click = admin.post(
        _on_server(link["tuesday", "u-1"]), data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 200, one_click.text
    # u-3 opens Monday's link in a browser and confirms on the page.
    page = admin.get(_on_server(link["monday", "u-3"]))
    assert page.status_code == 200
    form = _Form()
    form.feed(page.text)
    (action,) = [a for a in form.actions if not urlsplit(a).path.endswith("/link")]
    confirmed = admin.post(action, data={"List-Unsubscribe": "One-Click"})
    assert confirmed.status_code == 200 and "unsubscribed" in confirmed.text
    # u-2 edits its link to name u-1's Monday mail: it unsubscribes u-2, charging nobody.
    forged = re.sub(r"d=\d+", f"d={email['monday', 'u-1']['id']}", link["monday", "u-2"])
    assert admin.post(_on_server(forged), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    # u-4 uses a link minted without a message (as every link was before): it still works.
    minted = admin.post("/v1/recipients/u-4/links").json()["unsubscribe"]
    assert "?" not in minted
    assert admin.post(_on_server(minted), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    for rid in PEOPLE:
        assert admin.get(f"/v1/recipients/{rid}/preferences").json()["unsubscribed"] is True

    rows = {
        r["variant"]: r for r in admin.get("/v1/stats", params={"by": "variant"}).json()["items"]
    }
    sent = Counter(d["variant"] for d in email.values())
    left = Counter([email["tuesday", "u-1"]["variant"], email["monday", "u-3"]["variant"]])
    assert {v: r["sent"] for v, r in rows.items()} == dict(sent)
    assert {v: r["unsubscribed"] for v, r in rows.items()} == {v: left[v] for v in sent}
    assert {v: r["complained"] for v, r in rows.items()} == {v: left[v] for v in sent}
    for variant, row in rows.items():
        assert row["unsubscribe_rate"] == round(left[variant] / sent[variant], 4)
    # Per notification too: Monday's only unsubscribe is u-3's, Tuesday's u-1's.
    for day in ("monday", "tuesday"):
        nid = views[day]["id"]
        per_day = admin.get("/v1/stats", params={"by": "channel", "notification": nid}).json()
        (row,) = per_day["items"]
        assert (row["sent"], row["unsubscribed"], row["unsubscribe_rate"]) == (4, 1, 0.25)
