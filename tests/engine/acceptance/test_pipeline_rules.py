"""One test per pipeline rule, through the API, real worker and scheduler processes,
Redis, SQL, SMTP and an HTTP sink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from engine.catalog.recipients import ERASED_PREFIX
from engine.store.db import Database
from engine.store.models import Delivery, Notification
from tests.engine.conftest import Processes, recipient, send, send_and_settle, settled, wait_for
from tests.support import Mailbox, Sink


def category(admin: httpx.Client, key: str, **spec: Any) -> None:
    body: dict[str, Any] = {
        "name": key,
        "kind": "promotional",
        "priority": "high",
        "channels": ["inapp", "email"],
        "templates": {"inapp": {"en": {"title": "{{ data.t | default('hello') }}", "body": "b"}}},
    }
    body.update(spec)
    admin.put(f"/v1/categories/{key}", json=body).raise_for_status()


def erased_as(rid: str, name: str) -> str:
    """An erased recipient's receipts carry a tombstone id: read them under `name`."""
    return name if rid.startswith(ERASED_PREFIX) else rid


def channels_of(view: dict[str, Any], rid: str | None = None) -> dict[str, dict[str, Any]]:
    return {d["channel"]: d for d in view["deliveries"] if rid is None or d["recipient"] == rid}


def test_opted_out_channel_is_suppressed(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(admin, "promo.sale")
    recipient(admin, "u-1", email="u1@example.com")
    admin.put(
        "/v1/recipients/u-1/preferences", json={"channels": {"email": False}}
    ).raise_for_status()
    view = send_and_settle(admin, category="promo.sale", to=["u-1"])
    got = channels_of(view)
    assert got["email"]["status"] == "suppressed" and got["email"]["reason"] == "opted_out"
    assert got["inapp"]["status"] == "delivered"
    assert smtp.messages == []


def test_no_address_is_suppressed_and_unknown_recipient_is_refused(
    admin: httpx.Client, pipeline: Processes
) -> None:
    category(admin, "promo.sale")
    recipient(admin, "u-1")  # no email address
    view = send_and_settle(admin, category="promo.sale", to=["u-1"])
    assert channels_of(view)["email"]["reason"] == "no_address"
    refused = admin.post(
        "/v1/notifications", json={"category": "promo.sale", "to": ["u-1", "nobody"]}
    )
    assert refused.status_code == 422
    assert (
        refused.json()["error"]["field"] == "to" and "nobody" in refused.json()["error"]["message"]
    )


def _quiet_now(zone: str) -> dict[str, Any]:
    local = datetime.now(ZoneInfo(zone))
    start = (local - timedelta(hours=1)).strftime("%H:%M")
    end = (local + timedelta(hours=2)).strftime("%H:%M")
    return {"enabled": True, "start": start, "end": end, "timezone": zone}


def test_quiet_hours_hold_until_the_window_ends_but_critical_goes_at_once(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox, db: Database
) -> None:
    category(admin, "promo.sale")
    category(admin, "account.security", kind="service", priority="critical", required=True)
    recipient(admin, "u-1", email="u1@example.com", timezone="Asia/Shanghai", quiet=True)
    quiet = _quiet_now("Asia/Shanghai")  # "23:00 in the recipient's zone", whatever the clock says
    admin.put("/v1/recipients/u-1/preferences", json={"quiet_hours": quiet}).raise_for_status()

    promo = send(admin, category="promo.sale", to=["u-1"], data={"t": "sale"})
    alert = send(admin, category="account.security", to=["u-1"], data={"t": "new sign-in"})
    alert_view = wait_for(lambda: settled(admin, alert))
    assert channels_of(alert_view)["email"]["status"] == "sent"
    view = wait_for(lambda: settled(admin, promo))
    email = channels_of(view)["email"]
    assert email["status"] == "scheduled" and email["reason"] == "quiet_hours"
    due = datetime.fromisoformat(email["due_at"]).astimezone(ZoneInfo("Asia/Shanghai"))
    assert due.strftime("%H:%M") == quiet["end"] and due > datetime.now(UTC)
    assert channels_of(view)["inapp"]["status"] == "delivered"  # the inbox is not an interruption
    assert [m["Subject"] for m in smtp.messages] == ["new sign-in"]

    # The window ends (the recipient's window is now one that just ended, and the email's
    # due time passes): the scheduler releases the held email, decided anew.
    local = datetime.now(ZoneInfo("Asia/Shanghai"))
    ended = {
        "start": (local - timedelta(hours=2)).strftime("%H:%M"),
        "end": (local - timedelta(minutes=1)).strftime("%H:%M"),
    }
    admin.put("/v1/recipients/u-1/preferences", json={"quiet_hours": ended}).raise_for_status()
    with db.session() as session:
        session.execute(
            update(Delivery)
            .where(col(Delivery.id) == int(email["id"]))
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    released = wait_for(
        lambda: (
            channels_of(settled(admin, promo) or {"deliveries": []}).get("email", {}).get("status")
            == "sent"
        )
    )
    assert released
    assert sorted(str(m["Subject"]) for m in smtp.messages) == ["new sign-in", "sale"]


def test_third_promotion_in_an_hour_is_dropped_or_deferred(
    admin: httpx.Client, pipeline: Processes
) -> None:
    cap = [{"count": 2, "per": "1h"}]
    category(admin, "promo.drop", caps=cap, over_cap="drop", channels=["inapp"])
    category(admin, "service.defer", kind="service", caps=cap, over_cap="defer", channels=["inapp"])
    recipient(admin, "u-1")
    for key, expected in (
        ("promo.drop", ("suppressed", "capped")),
        ("service.defer", ("scheduled", "capped")),
    ):
        views = [send_and_settle(admin, category=key, to=["u-1"]) for _ in range(3)]
        states = [
            (channels_of(v)["inapp"]["status"], channels_of(v)["inapp"]["reason"]) for v in views
        ]
        assert states[:2] == [("delivered", None), ("delivered", None)]
        assert states[2] == expected
    deferred = channels_of(views[2])["inapp"]
    assert datetime.fromisoformat(deferred["due_at"]) > datetime.now(UTC)


def test_global_cap_counts_every_optional_category(
    admin: httpx.Client, pipeline: Processes
) -> None:
    category(admin, "promo.a", channels=["inapp"])
    category(admin, "social.b", kind="social", channels=["inapp"])
    recipient(admin, "u-1")
    admin.put(
        "/v1/recipients/u-1/preferences", json={"caps": [{"count": 2, "per": "1d"}]}
    ).raise_for_status()
    reasons = [
        channels_of(send_and_settle(admin, category=k, to=["u-1"]))["inapp"]["reason"]
        for k in ("promo.a", "social.b", "promo.a")
    ]
    assert reasons == [None, None, "capped"]


def test_repeated_collapse_key_is_delivered_once(admin: httpx.Client, pipeline: Processes) -> None:
    category(admin, "order.update", kind="transactional", collapse_window="1h", channels=["inapp"])
    recipient(admin, "u-1")
    first = send_and_settle(admin, category="order.update", to=["u-1"], collapse_key="o-9")
    second = send_and_settle(admin, category="order.update", to=["u-1"], collapse_key="o-9")
    other = send_and_settle(admin, category="order.update", to=["u-1"], collapse_key="o-10")
    assert channels_of(first)["inapp"]["status"] == "delivered"
    assert (channels_of(second)["inapp"]["status"], channels_of(second)["inapp"]["reason"]) == (
        "suppressed",
        "duplicate",
    )
    assert channels_of(other)["inapp"]["status"] == "delivered"
    assert admin.get("/v1/recipients/u-1/inbox").json()["unread"] == 2


def test_read_in_app_cancels_the_pending_email_and_unread_escalates(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(
        admin,
        "promo.normal",
        priority="normal",
        channels=["inapp", "push", "email"],
        escalate_after="3s",
    )
    recipient(admin, "reader", email="reader@example.com", push_tokens=["tok-r"])
    recipient(admin, "ignorer", email="ignorer@example.com", push_tokens=["tok-i"])
    nid = send(admin, category="promo.normal", to=["reader", "ignorer"], data={"t": "deal"})
    view = wait_for(lambda: settled(admin, nid))
    reader = channels_of(view, "reader")
    assert reader["push"]["status"] == "sent"  # the primary interrupting channel goes now
    assert (reader["email"]["status"], reader["email"]["reason"]) == ("scheduled", "escalation")
    read = admin.post(f"/v1/deliveries/{reader['inapp']['id']}/events", json={"type": "read"})
    assert read.json()["cancelled"] == [reader["email"]["id"]]

    def escalated() -> dict[str, Any] | None:
        current = admin.get(f"/v1/notifications/{nid}").json()
        return current if channels_of(current, "ignorer")["email"]["status"] == "sent" else None

    final = wait_for(escalated, timeout=20)
    assert (
        channels_of(final, "reader")["email"]["status"],
        channels_of(final, "reader")["email"]["reason"],
    ) == ("suppressed", "seen_elsewhere")
    assert [m["To"] for m in smtp.messages] == ["ignorer@example.com"]


@pytest.mark.parametrize("broker_url", ["redis", "rabbitmq"], indirect=True)
def test_failing_webhook_retries_then_fails_with_its_error(
    admin: httpx.Client, pipeline: Processes, sink: tuple[Sink, str]
) -> None:
    receiver, url = sink
    category(admin, "order.hook", kind="transactional", channels=["webhook"])
    recipient(admin, "flaky", webhook_url=f"{url}/fail/flaky")
    recipient(admin, "gone", webhook_url=f"{url}/gone/gone")
    nid = send(
        admin, category="order.hook", to=["flaky", "gone"], content={"title": "hi", "body": "there"}
    )

    def finished() -> dict[str, Any] | None:
        view = admin.get(f"/v1/notifications/{nid}").json()
        done = view["deliveries"] and all(d["status"] == "failed" for d in view["deliveries"])
        return view if done else None

    view = wait_for(finished, timeout=30)
    flaky, gone = channels_of(view, "flaky")["webhook"], channels_of(view, "gone")["webhook"]
    assert flaky["attempts"] == 3 and "500" in flaky["error"]
    assert [e["status"] for e in flaky["events"]].count("retrying") == 2
    assert gone["attempts"] == 1 and "410" in gone["error"]  # permanent: no retry
    hits = receiver.by_path()
    assert len(hits["/fail/flaky"]) == 3 and len(hits["/gone/gone"]) == 1
    assert (
        len({h["webhook-id"] for h in hits["/fail/flaky"]}) == 1
    )  # every retry is the same message


def test_template_error_fails_that_delivery_not_the_batch(
    admin: httpx.Client, pipeline: Processes
) -> None:
    category(
        admin,
        "promo.tpl",
        channels=["inapp", "email"],
        templates={
            "inapp": {"en": {"title": "fine", "body": "fine"}},
            "email": {"en": {"subject": "{{ data.subjects[recipient.id].deeper }}", "text": "x"}},
        },
    )
    recipient(admin, "u-1", email="u1@example.com")
    recipient(admin, "u-2", email="u2@example.com")
    # Data every recipient lacks is refused at accept; data some lack fails their emails.
    missing = admin.post("/v1/notifications", json={"category": "promo.tpl", "to": ["u-1"]})
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "data.subjects"
    data = {"subjects": {"u-1": {"deeper": "For you"}}}
    view = send_and_settle(admin, category="promo.tpl", to=["u-1", "u-2"], data=data)
    assert channels_of(view, "u-1")["email"]["status"] == "sent"
    for rid in ("u-1", "u-2"):
        assert channels_of(view, rid)["inapp"]["status"] == "delivered"
    failed = channels_of(view, "u-2")["email"]
    assert failed["status"] == "failed" and "template subject" in failed["error"]


def test_expired_and_future_notifications(
    admin: httpx.Client, pipeline: Processes, db: Database
) -> None:
    category(admin, "promo.sale", channels=["inapp"])
    recipient(admin, "u-1")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = send_and_settle(admin, category="promo.sale", to=["u-1"], expires_at=past)
    assert (channels_of(expired)["inapp"]["status"], channels_of(expired)["inapp"]["reason"]) == (
        "suppressed",
        "expired",
    )

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    nid = send(admin, category="promo.sale", to=["u-1"], send_at=later)
    assert admin.get(f"/v1/notifications/{nid}").json()["status"] == "accepted"
    with db.session() as session:  # an hour passes
        session.execute(
            update(Notification)
            .where(col(Notification.id) == int(nid))
            .values(send_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    view = wait_for(lambda: settled(admin, nid))
    assert channels_of(view)["inapp"]["status"] == "delivered"


def test_segment_broadcast_reaches_only_the_segment(
    admin: httpx.Client, pipeline: Processes
) -> None:
    category(admin, "promo.sale", channels=["inapp"])
    recently = datetime.now(UTC).isoformat()
    recipient(
        admin, "whale-gamer", annual_spend=9000, last_active_at=recently, tags=["game.mobile"]
    )
    recipient(
        admin, "whale-reader", annual_spend=9000, last_active_at=recently, tags=["video.anime"]
    )
    recipient(admin, "minnow-gamer", annual_spend=10, last_active_at=recently, tags=["game.mobile"])
    segment = {"segment": {"tier": ["whale"], "activity": ["active"], "tags_any": ["game.mobile"]}}
    view = send_and_settle(admin, category="promo.sale", to=segment)
    assert [d["recipient"] for d in view["deliveries"]] == ["whale-gamer"]


def test_a_pause_holds_optional_messages_only(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(
        admin, "order.receipt", kind="transactional", required=True, channels=["inapp", "email"]
    )
    category(admin, "order.shipped", kind="transactional", priority="normal", channels=["email"])
    category(admin, "promo.sale", channels=["inapp", "email"])
    category(admin, "service.notice", kind="service", channels=["email"])
    recipient(admin, "u-1", email="u1@example.com")
    until = (datetime.now(UTC) + timedelta(days=14)).isoformat()
    admin.put(
        "/v1/recipients/u-1/preferences",
        json={"paused_until": until, "caps": [{"count": 1, "per": "1d"}]},
    ).raise_for_status()
    receipt = send_and_settle(admin, category="order.receipt", to=["u-1"], data={"t": "receipt"})
    shipped = send_and_settle(admin, category="order.shipped", to=["u-1"], data={"t": "shipped"})
    assert channels_of(receipt)["email"]["status"] == "sent"
    assert channels_of(shipped)["email"]["status"] == "sent"
    # The recipient's one-a-day cap is spent by the first promotion's inbox copy; the
    # second promotion's email still reports the pause, not the cap.
    promos = [send_and_settle(admin, category="promo.sale", to=["u-1"]) for _ in range(2)]
    for view in promos:
        email = channels_of(view)["email"]
        assert (email["status"], email["reason"]) == ("suppressed", "paused")
    notice = channels_of(send_and_settle(admin, category="service.notice", to=["u-1"]))["email"]
    assert (notice["status"], notice["reason"]) == ("scheduled", "paused")
    assert datetime.fromisoformat(notice["due_at"]) == datetime.fromisoformat(until)
    assert sorted(str(m["Subject"]) for m in smtp.messages) == ["receipt", "shipped"]


def test_the_global_cap_never_holds_a_transactional_message(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(admin, "promo.a", channels=["email"])
    category(admin, "order.shipped", kind="transactional", priority="normal", channels=["email"])
    category(admin, "service.digest", kind="service", channels=["email"], global_cap=True)
    category(admin, "social.quiet", kind="social", channels=["email"], global_cap=False)
    assert admin.get("/v1/categories/order.shipped").json()["global_cap"] is False
    assert admin.get("/v1/categories/promo.a").json()["global_cap"] is True
    recipient(admin, "u-1", email="u1@example.com")
    admin.put(
        "/v1/recipients/u-1/preferences", json={"caps": [{"count": 1, "per": "1d"}]}
    ).raise_for_status()

    def fate(key: str) -> tuple[str, str | None]:
        email = channels_of(send_and_settle(admin, category=key, to=["u-1"], data={"t": key}))
        return email["email"]["status"], email["email"]["reason"]

    assert fate("promo.a") == ("sent", None)
    assert fate("promo.a") == ("suppressed", "capped")
    assert fate("order.shipped") == ("sent", None)  # not held to the next day
    assert fate("social.quiet") == ("sent", None)  # this category opted out of the global cap
    assert fate("service.digest") == ("scheduled", "capped")  # ...and this one opted in
    assert sorted(str(m["Subject"]) for m in smtp.messages) == [
        "order.shipped",
        "promo.a",
        "social.quiet",
    ]


def test_a_held_delivery_obeys_the_preferences_of_when_it_is_released(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox, db: Database
) -> None:
    category(admin, "promo.sale", channels=["inapp", "email"])
    people = ("clicked", "muted", "paused", "erased", "kept")
    for rid in people:
        recipient(admin, rid, email=f"{rid}@example.com", timezone="Asia/Shanghai", quiet=True)
        quiet = _quiet_now("Asia/Shanghai")
        admin.put(f"/v1/recipients/{rid}/preferences", json={"quiet_hours": quiet})
    nid = send(admin, category="promo.sale", to=list(people), data={"t": "sale"})
    held = wait_for(lambda: settled(admin, nid))
    assert {channels_of(held, rid)["email"]["reason"] for rid in people} == {"quiet_hours"}

    # While the emails wait: a one-click unsubscribe (RFC 8058 POST), the category's email
    # switched off, a pause, an erasure; and a later notification expires.
    links = admin.post("/v1/recipients/clicked/links").json()
    with httpx.Client(base_url=admin.base_url) as browserless:  # no key, no cookie
        assert browserless.post(urlsplit(links["unsubscribe"]).path).status_code == 200
    admin.put(
        "/v1/recipients/muted/preferences",
        json={"categories": {"promo.sale": {"channels": {"email": False}}}},
    ).raise_for_status()
    until = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    admin.put("/v1/recipients/paused/preferences", json={"paused_until": until})
    admin.delete("/v1/recipients/erased").raise_for_status()
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    late = send(
        admin, category="promo.sale", to=["kept"], data={"t": "late"}, expires_at=in_an_hour
    )
    wait_for(lambda: settled(admin, late))
    for rid in people:
        if rid != "erased":
            admin.put(f"/v1/recipients/{rid}/preferences", json={"quiet_hours": {"enabled": False}})
    with db.session() as session:  # the windows end; the hour passes for the late one
        session.execute(
            update(Notification)
            .where(col(Notification.id) == int(late))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.execute(
            update(Delivery)
            .where(col(Delivery.status) == "scheduled")
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    def released() -> dict[str, tuple[str, str | None]] | None:
        views = {"": settled(admin, nid), ":late": settled(admin, late)}
        emails = {
            erased_as(d["recipient"], "erased") + tag: (d["status"], d["reason"])
            for tag, view in views.items()
            for d in (view or {"deliveries": []})["deliveries"]
            if d["channel"] == "email"
        }
        done = len(emails) == 6 and all(status != "scheduled" for status, _ in emails.values())
        return emails if done else None

    assert wait_for(released) == {
        "clicked": ("suppressed", "unsubscribed"),
        "muted": ("suppressed", "opted_out"),
        "paused": ("suppressed", "paused"),
        "erased": ("suppressed", "erased"),
        "kept": ("sent", None),
        "kept:late": ("suppressed", "expired"),
    }
    assert [m["To"] for m in smtp.messages] == ["kept@example.com"]


def test_a_recipient_created_again_under_an_erased_id_inherits_nothing(
    admin: httpx.Client, pipeline: Processes
) -> None:
    category(admin, "promo.sale")
    recipient(admin, "u-2")
    first = send_and_settle(admin, category="promo.sale", to=["u-2"])
    assert channels_of(first)["inapp"]["status"] == "delivered"
    assert admin.get("/v1/recipients/u-2/inbox").json()["unread"] == 1

    assert admin.delete("/v1/recipients/u-2").json()["erased"] is True
    recipient(admin, "u-2")
    # The new person behind the old id sees none of the previous one's messages or receipts.
    inbox = admin.get("/v1/recipients/u-2/inbox").json()
    assert (inbox["unread"], inbox["items"]) == (0, [])
    assert admin.get("/v1/recipients/u-2/deliveries").json()["items"] == []
    # The receipts themselves stay, without content, for the counts.
    kept = admin.get(f"/v1/notifications/{first['id']}").json()
    assert channels_of(kept)["inapp"]["status"] == "delivered"
    assert all(d["recipient"] != "u-2" for d in kept["deliveries"])
