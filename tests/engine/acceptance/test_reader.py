"""Copy that knows its reader and caps that know their activity, through real worker and
scheduler processes, a real SMTP server, Redis and SQL."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.engine.conftest import Processes, recipient, send_and_settle
from tests.support import Mailbox


def test_templates_name_the_reader_and_attribute_segments_pick_them(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    subject_en = (
        "Hi {{ recipient.name or 'there' }}, level {{ recipient.attributes.level | default('?') }}"
    )
    admin.put(
        "/v1/categories/promo.level_up",
        json={
            "name": "Level rewards",
            "kind": "promotional",
            "priority": "high",
            "channels": ["inapp", "email"],
            "templates": {
                "inapp": {"en": {"title": "Rewards for {{ data.game }}", "body": "."}},
                "email": {
                    "en": {"subject": subject_en, "text": "{{ data.game }}"},
                    "zh-CN": {"subject": "{{ recipient.name }}，您好", "text": "{{ data.game }}"},
                },
            },
        },
    ).raise_for_status()
    south = {"region": "south"}
    recipient(admin, "ada", email="ada@example.com", name="Ada", attributes={**south, "level": 12})
    recipient(
        admin, "ming", email="ming@example.com", name="阿明", locale="zh-CN", attributes=south
    )
    recipient(admin, "anon", email="anon@example.com", attributes=south)
    recipient(admin, "off", email="off@example.com", name="Off", attributes=south)
    recipient(
        admin, "north", email="north@example.com", name="Nora", attributes={"region": "north"}
    )
    admin.put(
        "/v1/recipients/off/preferences", json={"channels": {"email": False}}
    ).raise_for_status()

    view = send_and_settle(
        admin,
        category="promo.level_up",
        to={"segment": {"attributes": {"region": {"eq": "south"}}}},
        data={"game": "Genshin"},
    )
    assert view["recipients"] == 4
    subjects = {str(m["To"]): str(m["Subject"]) for m in smtp.messages}
    assert subjects == {
        "ada@example.com": "Hi Ada, level 12",
        "ming@example.com": "阿明，您好",
        "anon@example.com": "Hi there, level ?",
    }
    off = [d for d in view["deliveries"] if d["recipient"] == "off" and d["channel"] == "email"]
    assert (off[0]["status"], off[0]["reason"]) == ("suppressed", "opted_out")


def test_category_caps_differ_by_the_recipients_activity(
    admin: httpx.Client, pipeline: Processes
) -> None:
    admin.put(
        "/v1/categories/promo.weekly",
        json={
            "name": "Weekly picks",
            "kind": "promotional",
            "priority": "normal",
            "channels": ["inapp"],
            "caps_by_activity": {
                "active": [{"count": 2, "per": "1w"}],
                "churned": [{"count": 1, "per": "30d"}],
            },
            "templates": {"inapp": {"en": {"title": "Picks", "body": "."}}},
        },
    ).raise_for_status()
    recipient(admin, "active", last_active_at=datetime.now(UTC).isoformat())
    recipient(admin, "churned")  # never seen
    outcomes: dict[str, list[tuple[str, str | None]]] = {"active": [], "churned": []}
    for _ in range(3):
        view = send_and_settle(admin, category="promo.weekly", to=["active", "churned"])
        for d in view["deliveries"]:
            outcomes[d["recipient"]].append((d["status"], d["reason"]))
    delivered = ("delivered", None)
    capped = ("suppressed", "capped")
    assert outcomes["active"] == [delivered, delivered, capped]
    assert outcomes["churned"] == [delivered, capped, capped]
