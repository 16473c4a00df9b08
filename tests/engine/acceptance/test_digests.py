"""Digests through real worker and scheduler processes, a real SMTP server, Redis and SQL:
one message per channel listing what is still unread, obeying preferences like any held
notification, and never two digests however the arrivals and releases race."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from engine.store.db import Database
from engine.store.models import Delivery
from tests.engine.conftest import Processes, recipient, send, settled, wait_for
from tests.support import Mailbox, raw_header_block

LIKES = "social.likes"
ZONE = "Asia/Shanghai"


def likes(admin: httpx.Client, **extra: Any) -> None:
    """The low-priority "likes" category, digested on the inbox and email; `extra` adds to
    its definition (its own digest templates)."""
    admin.put(
        f"/v1/categories/{LIKES}",
        json={
            "name": "Likes",
            "kind": "social",
            "priority": "low",
            "channels": ["inapp", "email"],
            "templates": {"inapp": {"en": {"title": "{{ data.t }}", "body": "."}}},
            **extra,
        },
    ).raise_for_status()


def digest_reader(admin: httpx.Client, rid: str, **fields: Any) -> None:
    recipient(admin, rid, email=f"{rid}@example.com", timezone=ZONE, **fields)
    prefs = {"digest": {"enabled": True, "at": "20:00"}}
    admin.put(f"/v1/recipients/{rid}/preferences", json=prefs).raise_for_status()


def copies(admin: httpx.Client, nids: list[str], rid: str, channel: str) -> list[dict[str, Any]]:
    out = []
    for nid in nids:
        view = admin.get(f"/v1/notifications/{nid}", params={"limit": 1000}).json()
        out += [d for d in view["deliveries"] if d["recipient"] == rid and d["channel"] == channel]
    return out


def digest_time_comes(db: Database) -> None:
    """The digest time passes: every held digest copy is due now."""
    with db.session() as session:
        session.execute(
            update(Delivery)
            .where(col(Delivery.reason) == "digest", col(Delivery.due_at).is_not(None))
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def mail_to(smtp: Mailbox, rid: str) -> list[EmailMessage]:
    return [m for m in smtp.messages if str(m["To"]) == f"{rid}@example.com"]


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def ended(admin: httpx.Client, nids: list[str], rid: str) -> bool:
    return all(d["status"] != "scheduled" for d in copies(admin, nids, rid, "email"))


def _quiet_now() -> dict[str, Any]:
    local = datetime.now(ZoneInfo(ZONE))
    start = (local - timedelta(hours=1)).strftime("%H:%M")
    end = (local + timedelta(hours=2)).strftime("%H:%M")
    return {"enabled": True, "start": start, "end": end, "timezone": ZONE}


def test_a_digest_is_one_message_listing_what_is_still_unread(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox, db: Database
) -> None:
    likes(admin)
    people = ("ada", "ming", "reader", "unsub", "paused", "quiet", "capped")
    for rid in people:
        digest_reader(admin, rid, locale="zh-CN" if rid == "ming" else "en")
    admin.put(
        "/v1/recipients/capped/preferences",
        json={"categories": {LIKES: {"caps": [{"count": 1, "per": "1d"}]}}},
    ).raise_for_status()
    nids = []
    for n in (1, 2, 3):
        nids.append(send(admin, category=LIKES, to=list(people), data={"t": f"Like {n}"}))
        wait_for(lambda: settled(admin, nids[-1]))
    held = copies(admin, nids, "ada", "email")
    assert {(d["status"], d["reason"]) for d in held} == {("scheduled", "digest")}
    due = datetime.fromisoformat(held[0]["due_at"]).astimezone(ZoneInfo(ZONE))
    assert due.strftime("%H:%M") == "20:00" and due > datetime.now(UTC)
    assert [(d["status"], d["reason"]) for d in copies(admin, nids, "capped", "email")] == [
        ("scheduled", "digest"),
        ("suppressed", "capped"),
        ("suppressed", "capped"),
    ]

    # While they wait: Ada reads one in her inbox, the reader reads all, others change.
    inbox = {d["notification_id"]: d["id"] for d in copies(admin, nids, "ada", "inapp")}
    admin.post(f"/v1/deliveries/{inbox[nids[1]]}/events", json={"type": "read"})
    for d in copies(admin, nids, "reader", "inapp"):
        admin.post(f"/v1/deliveries/{d['id']}/events", json={"type": "read"})
    changes = {
        "unsub": {"unsubscribed": True},
        "paused": {"paused_until": (datetime.now(UTC) + timedelta(days=2)).isoformat()},
        "quiet": {"quiet_hours": _quiet_now()},
    }
    for rid, change in changes.items():
        admin.put(f"/v1/recipients/{rid}/preferences", json=change).raise_for_status()
    smtp.reset()
    digest_time_comes(db)

    for rid in ("ada", "ming", "reader", "unsub", "paused", "capped"):
        wait_for(lambda rid=rid: ended(admin, nids, rid))  # type: ignore[misc]
    wait_for(lambda: len(smtp.messages) >= 3)
    assert sorted(str(m["To"]) for m in smtp.messages) == [
        "ada@example.com",
        "capped@example.com",
        "ming@example.com",
    ]
    (ada,) = mail_to(smtp, "ada")
    assert ada["Subject"] == "Your digest: 2 new messages"
    body = text_of(ada)
    assert "Like 3" in body and "Like 1" in body and "Like 2" not in body
    assert body.index("Like 3") < body.index("Like 1")  # newest first
    assert "/inbox/" in body and f"#m-{inbox[nids[0]]}" in body
    ada_email = {d["notification_id"]: d for d in copies(admin, nids, "ada", "email")}
    assert (ada_email[nids[1]]["status"], ada_email[nids[1]]["reason"]) == (
        "suppressed",
        "seen_elsewhere",
    )
    assert ada_email[nids[0]]["status"] == ada_email[nids[2]]["status"] == "sent"
    assert ada_email[nids[0]]["provider_id"] == ada_email[nids[2]]["provider_id"] is not None
    (ming,) = mail_to(smtp, "ming")
    assert ming["Subject"] == "您的消息摘要：3 条新消息"
    (capped,) = mail_to(smtp, "capped")
    assert capped["Subject"] == "Your digest: 1 new message" and "Like 1" in text_of(capped)
    reasons = {
        rid: {d["reason"] for d in copies(admin, nids, rid, "email")}
        for rid in ("reader", "unsub", "paused")
    }
    assert reasons == {
        "reader": {"seen_elsewhere"},
        "unsub": {"unsubscribed"},
        "paused": {"paused"},
    }

    # Quiet hours at digest time move the whole digest to their end, as one.
    quiet = copies(admin, nids, "quiet", "email")
    assert {(d["status"], d["reason"]) for d in quiet} == {("scheduled", "digest")}
    ends = {d["due_at"] for d in quiet}
    assert len(ends) == 1
    quiet_end = datetime.fromisoformat(ends.pop()).astimezone(ZoneInfo(ZONE))
    assert quiet_end.strftime("%H:%M") == _quiet_now()["end"]
    admin.put(
        "/v1/recipients/quiet/preferences", json={"quiet_hours": {"enabled": False}}
    ).raise_for_status()
    digest_time_comes(db)
    wait_for(lambda: ended(admin, nids, "quiet"))
    (late,) = wait_for(lambda: mail_to(smtp, "quiet"))
    assert late["Subject"] == "Your digest: 3 new messages"


@pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_arrivals_in_the_same_second_never_make_two_digests(
    admin: httpx.Client, processes: Processes, smtp: Mailbox, db: Database
) -> None:
    for name in ("w1", "w2"):
        processes.worker(name)
    for name in ("s1", "s2"):
        processes.scheduler(name)
    likes(admin)
    digest_reader(admin, "ada")
    # Seventeen likes a day are welcome here (the default global cap is 5).
    admin.put(
        "/v1/recipients/ada/preferences", json={"caps": [{"count": 100, "per": "1d"}]}
    ).raise_for_status()

    def burst(first: int, count: int) -> list[str]:
        def one(n: int) -> str:
            return send(admin, category=LIKES, to=["ada"], data={"t": f"Like {n}"})

        with ThreadPoolExecutor(max_workers=count) as pool:
            nids = list(pool.map(one, range(first, first + count)))
        for nid in nids:
            wait_for(lambda nid=nid: settled(admin, nid), timeout=60)  # type: ignore[misc]
        return nids

    nids = burst(1, 12)
    digest_time_comes(db)
    wait_for(lambda: ended(admin, nids, "ada"), timeout=60)
    wait_for(lambda: smtp.messages, timeout=60)
    (mail,) = smtp.messages
    assert mail["Subject"] == "Your digest: 12 new messages"
    listed = re.findall(r"^- (Like \d+)\s*?$", text_of(mail), flags=re.MULTILINE)
    assert sorted(listed) == sorted(f"Like {n}" for n in range(1, 13))
    assert {d["status"] for d in copies(admin, nids, "ada", "email")} == {"sent"}

    # More arrive and come due the same digest day: today's digest went, so they wait for
    # the next one instead of making a second message.
    more = burst(13, 5)
    digest_time_comes(db)

    def moved_on() -> bool:
        later = datetime.now(UTC) + timedelta(hours=1)
        return all(
            d["status"] == "scheduled" and datetime.fromisoformat(d["due_at"]) > later
            for d in copies(admin, more, "ada", "email")
        )

    wait_for(moved_on, timeout=60)
    assert len(smtp.messages) == 1


@pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_a_category_digest_template_is_the_email_received_and_other_locales_keep_the_built_in(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox, db: Database
) -> None:
    likes(
        admin,
        digest_templates={
            "email": {
                "en": {
                    "title": "Cardhub: {{ count }} likes for {{ recipient.name }}",
                    "body": "{% for item in items %}* {{ item.title }}\n{% endfor %}-- Cardhub",
                    "html": "<h1>Cardhub</h1>{% for item in items %}<p>{{ item.title }}</p>"
                    "{% endfor %}",
                }
            }
        },
    )
    digest_reader(admin, "ada", name="Ada", locale="en-GB")
    digest_reader(admin, "ming", locale="zh-CN")
    nids = []
    for n in (1, 2):
        nids.append(send(admin, category=LIKES, to=["ada", "ming"], data={"t": f"Like {n}"}))
        wait_for(lambda: settled(admin, nids[-1]))
    smtp.reset()
    digest_time_comes(db)

    wait_for(lambda: len(smtp.raw) >= 2)
    raw = {envelope[1][0]: data for envelope, data in zip(smtp.envelopes, smtp.raw, strict=True)}
    ada = raw["ada@example.com"]
    assert b"Subject: Cardhub: 2 likes for Ada\r\n" in raw_header_block(ada)
    assert b"* Like 2\r\n* Like 1\r\n-- Cardhub" in ada
    assert b"<h1>Cardhub</h1><p>Like 2</p><p>Like 1</p>" in ada
    assert b"Your digest" not in ada and b"inbox" not in ada.lower()
    (ming,) = mail_to(smtp, "ming")  # no zh-CN template of the category: the built-in one
    assert ming["Subject"] == "您的消息摘要：2 条新消息"
    assert b"Cardhub" not in raw["ming@example.com"]
