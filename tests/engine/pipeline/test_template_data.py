"""Template data through the real pipeline: what every recipient would miss is refused at
accept (see test_api_notifications), what only some recipients miss fails only theirs."""

from __future__ import annotations

import httpx

from tests.engine.conftest import Processes, recipient, send, settled, wait_for

GREETING = {
    "name": "Greeting",
    "kind": "transactional",
    "priority": "high",
    "channels": ["inapp"],
    "templates": {
        "inapp": {"en": {"title": "Hi {{ data.names[recipient.id] }}", "body": "{{ data.what }}"}}
    },
}


def test_a_recipient_dependent_template_error_fails_only_that_delivery(
    admin: httpx.Client, pipeline: Processes
) -> None:
    admin.put("/v1/categories/greeting", json=GREETING).raise_for_status()
    for rid in ("u-1", "u-2", "u-3"):
        recipient(admin, rid)
    data = {"names": {"u-1": "Ann", "u-3": "Cai"}, "what": "welcome"}
    nid = send(admin, category="greeting", to=["u-1", "u-2", "u-3"], data=data)
    view = wait_for(lambda: settled(admin, nid))
    by_recipient = {d["recipient"]: d for d in view["deliveries"]}
    assert by_recipient["u-2"]["status"] == "failed"
    assert "template title" in by_recipient["u-2"]["error"]
    assert "u-2" in by_recipient["u-2"]["error"]
    for rid, name in (("u-1", "Ann"), ("u-3", "Cai")):
        assert by_recipient[rid]["status"] == "delivered"
        inbox = admin.get(f"/v1/recipients/{rid}/inbox").json()["items"]
        assert [(m["title"], m["body"]) for m in inbox] == [(f"Hi {name}", "welcome")]
    # Data every recipient needs is checked before anything is accepted.
    refused = admin.post(
        "/v1/notifications",
        json={"category": "greeting", "to": ["u-1"], "data": {"names": {"u-1": "Ann"}}},
    )
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "data.what"
