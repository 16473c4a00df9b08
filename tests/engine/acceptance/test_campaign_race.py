"""Steps of one campaign planned at the same moment by two worker processes (a scheduler
that was down releases them all at once): a recipient still ends with one step waiting
for them or in their inbox, never two messages at once."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from engine.settings import Settings
from tests.engine.acceptance.test_campaigns import campaign, step_view
from tests.engine.acceptance.test_pipeline_rules import category
from tests.engine.conftest import Processes
from tests.support import Mailbox

PEOPLE = 400


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Everyone's default quiet hours are on now (UTC) and for two hours more."""
    at = datetime.now(UTC)
    return settings.model_copy(
        update={
            "default_quiet_start": (at - timedelta(hours=1)).strftime("%H:%M"),
            "default_quiet_end": (at + timedelta(hours=2)).strftime("%H:%M"),
        }
    )


@pytest.mark.parametrize(
    ("channel", "kept"), [("email", "scheduled"), ("inapp", "delivered")], ids=["waits", "at-once"]
)
@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_steps_planned_at_once_leave_one_per_recipient(
    admin: httpx.Client, processes: Processes, smtp: Mailbox, channel: str, kept: str
) -> None:
    """By email every step waits for the quiet hours' end; in the inbox a step arrives
    as it is planned, so a step planned first must not arrive beside the latest."""
    category(admin, "promo.flash", channels=[channel])
    people = [f"u-{i:04d}" for i in range(PEOPLE)]
    for start in range(0, PEOPLE, 50):
        batch = [{"id": rid, "email": f"{rid}@example.com"} for rid in people[start : start + 50]]
        answer = admin.post("/v1/recipients/bulk", json={"recipients": batch})
        assert answer.status_code == 200, answer.text
    processes.worker("worker-1")
    processes.worker("worker-2")
    # Four steps fall due within seconds while no scheduler runs; the event is after the
    # quiet hours, so each step's email waits for them to end.
    event = datetime.now(UTC) + timedelta(hours=3)
    ahead = int((event - datetime.now(UTC)).total_seconds())
    created = campaign(
        admin,
        category="promo.flash",
        to=people,
        event_at=event.isoformat(),
        steps=[-(ahead - 2), -(ahead - 3), -(ahead - 4), -(ahead - 5)],
    )
    time.sleep(6)
    processes.scheduler()

    for number in (0, 1, 2, 3):  # all planned: now each view is final
        step_view(admin, created, number)
    reached: Counter[str] = Counter()
    steps_reaching: set[int] = set()
    for number in (0, 1, 2, 3):
        for d in step_view(admin, created, number)["deliveries"]:
            if d["status"] == kept:
                reached[d["recipient"]] += 1
                steps_reaching.add(number)
            else:
                assert (d["status"], d["reason"]) == ("suppressed", "collapsed"), d
    assert sorted(reached) == people  # everyone has a step waiting, or in their inbox
    twice = sorted(rid for rid, count in reached.items() if count > 1)
    assert twice == [], f"{len(twice)} recipients have two steps: {twice[:5]}"
    assert steps_reaching == {3}  # the latest step speaks for the campaign
    assert smtp.messages == []
