"""The planning rules as pure functions: no Redis, no SQL."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.pipeline import policy
from engine.pipeline.policy import Decision, Previous, Request, Rules
from engine.settings import Settings
from preferences.model import Cap, CategoryPreference, Digest, EffectivePreferences, QuietHours
from preferences.store import resolve

NOON = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai
NIGHT = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # 23:00 in Asia/Shanghai
EVERYWHERE = ("inapp", "push", "email", "sms")


def prefs(**changes: object) -> EffectivePreferences:
    base = resolve(
        None, None, settings=Settings(default_timezone="Asia/Shanghai"), recipient_id="u-1"
    )
    return base.__class__(**{**base.__dict__, **changes})


def rules(**changes: object) -> Rules:
    spec: dict[str, object] = {
        "key": "promo",
        "kind": "promotional",
        "priority": "high",
        "channels": ("inapp", "push", "email"),
    }
    spec.update(changes)
    return Rules(**spec)  # type: ignore[arg-type]


def by_channel(decisions: list[Decision]) -> dict[str, tuple[str, str | None]]:
    return {d.channel: (d.status, d.reason) for d in decisions}


def test_high_priority_goes_everywhere_at_once() -> None:
    got = by_channel(policy.decide(rules(), Request(), prefs(), EVERYWHERE, NOON))
    assert got == {"inapp": ("queued", None), "push": ("queued", None), "email": ("queued", None)}


def test_normal_priority_sends_the_primary_and_escalates_the_rest() -> None:
    decisions = policy.decide(
        rules(priority="normal", escalate_after=1800), Request(), prefs(), EVERYWHERE, NOON
    )
    got = {d.channel: d for d in decisions}
    assert got["push"].status == "queued" and got["inapp"].status == "queued"
    assert (got["email"].status, got["email"].reason) == ("scheduled", "escalation")
    assert got["email"].due_at == NOON + timedelta(minutes=30)


def test_low_priority_goes_to_the_inbox_or_the_digest() -> None:
    low = rules(priority="low")
    assert by_channel(policy.decide(low, Request(), prefs(), EVERYWHERE, NOON)) == {
        "inapp": ("queued", None)
    }
    digest = prefs(digest=Digest(enabled=True, at=time(20, 0)))
    decisions = {d.channel: d for d in policy.decide(low, Request(), digest, EVERYWHERE, NOON)}
    assert (decisions["push"].status, decisions["push"].reason) == ("scheduled", "digest")
    assert decisions["push"].due_at == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # 20:00 Shanghai


def test_opt_outs_addresses_and_expiry() -> None:
    chosen = prefs(
        channels={"email": False},
        categories={"promo": CategoryPreference(channels={"push": False})},
    )
    got = by_channel(policy.decide(rules(), Request(), chosen, ("inapp", "push"), NOON))
    assert got == {
        "email": ("suppressed", "opted_out"),
        "push": ("suppressed", "opted_out"),
        "inapp": ("queued", None),
    }
    assert by_channel(policy.decide(rules(), Request(), prefs(), ("inapp",), NOON))["email"] == (
        "suppressed",
        "no_address",
    )
    gone = policy.decide(rules(), Request(expires_at=NOON), prefs(), EVERYWHERE, NOON)
    assert {d.reason for d in gone} == {"expired"}
    unsubscribed = policy.decide(rules(), Request(), prefs(unsubscribed=True), EVERYWHERE, NOON)
    assert {d.reason for d in unsubscribed} == {"unsubscribed"}
    required = policy.decide(
        rules(required=True), Request(), prefs(unsubscribed=True), EVERYWHERE, NOON
    )
    assert {d.status for d in required} == {"queued"}


def test_quiet_hours_and_pause_hold_interruptions_but_not_the_inbox_or_critical() -> None:
    got = {d.channel: d for d in policy.decide(rules(), Request(), prefs(), EVERYWHERE, NIGHT)}
    assert got["inapp"].status == "queued"
    assert (got["push"].status, got["push"].reason) == ("scheduled", "quiet_hours")
    assert got["push"].due_at == datetime(2026, 11, 21, 0, 0, tzinfo=UTC)  # 08:00 Shanghai
    critical = policy.decide(rules(priority="critical"), Request(), prefs(), EVERYWHERE, NIGHT)
    assert {d.status for d in critical} == {"queued"}
    paused = prefs(paused_until=NOON + timedelta(days=2))
    promo = by_channel(policy.decide(rules(), Request(), paused, EVERYWHERE, NOON))
    assert promo["push"] == ("suppressed", "paused") and promo["inapp"] == ("queued", None)
    service = by_channel(policy.decide(rules(kind="service"), Request(), paused, EVERYWHERE, NOON))
    assert service["push"] == ("scheduled", "paused")


def test_a_pause_holds_or_drops_only_optional_messages() -> None:
    paused = prefs(paused_until=NOON + timedelta(days=14))
    for essential in (rules(kind="transactional"), rules(kind="service", required=True)):
        got = by_channel(policy.decide(essential, Request(), paused, EVERYWHERE, NOON))
        assert got == {
            "inapp": ("queued", None),
            "push": ("queued", None),
            "email": ("queued", None),
        }
    for optional in ("promotional", "social"):
        got = by_channel(policy.decide(rules(kind=optional), Request(), paused, EVERYWHERE, NOON))
        assert got["email"] == ("suppressed", "paused") and got["push"] == ("suppressed", "paused")
    # An essential in quiet hours still waits for the window's end, as without a pause.
    night = prefs(paused_until=NIGHT + timedelta(days=14))
    held = by_channel(
        policy.decide(rules(kind="transactional"), Request(), night, EVERYWHERE, NIGHT)
    )
    assert held["email"] == ("scheduled", "quiet_hours")


def test_collapse_replaces_pending_and_suppresses_after_sent() -> None:
    fresh = [Decision("inapp", "queued"), Decision("email", "suppressed", "opted_out")]
    after_sent, replaced = policy.collapse(fresh, [Previous(7, "delivered")])
    assert by_channel(after_sent) == {
        "inapp": ("suppressed", "duplicate"),
        "email": ("suppressed", "opted_out"),
    }
    assert replaced == []
    kept, replaced = policy.collapse(fresh, [Previous(8, "scheduled"), Previous(9, "suppressed")])
    assert kept == fresh and replaced == [8]


def test_caps_apply_per_category_recipient_and_globally_but_spare_required_and_critical() -> None:
    chosen = prefs(categories={"promo": CategoryPreference(caps=(Cap(1, 86400),))})
    limits = policy.cap_limits(rules(caps=(Cap(2, 3600),)), chosen)
    assert [name for name, _ in limits] == ["c:promo", "r:promo", "g"]
    assert [
        name for name, _ in policy.cap_limits(rules(required=True, caps=(Cap(2, 3600),)), chosen)
    ] == ["c:promo"]
    assert policy.cap_limits(rules(priority="critical"), chosen) == []
    # The global cap is a marketing cap: the optional kinds only, unless a category says so.
    for kind, expected in (
        ("promotional", ["r:promo", "g"]),
        ("social", ["r:promo", "g"]),
        ("service", ["r:promo"]),
        ("transactional", ["r:promo"]),
    ):
        assert [name for name, _ in policy.cap_limits(rules(kind=kind), chosen)] == expected
    assert [
        name for name, _ in policy.cap_limits(rules(kind="service", global_cap=True), chosen)
    ] == ["r:promo", "g"]
    assert [name for name, _ in policy.cap_limits(rules(global_cap=False), chosen)] == ["r:promo"]
    resets = NOON + timedelta(hours=1)
    decisions = [
        Decision("inapp", "queued"),
        Decision("push", "scheduled", "quiet_hours", NOON + timedelta(hours=3)),
    ]
    dropped = policy.over_cap(rules(over_cap="drop"), decisions, resets)
    assert {d.reason for d in dropped} == {"capped"} and {d.status for d in dropped} == {
        "suppressed"
    }
    deferred = policy.over_cap(rules(over_cap="defer"), decisions, resets)
    assert [d.due_at for d in deferred] == [resets, NOON + timedelta(hours=3)]


def test_release_collapse() -> None:
    rows = [
        (1, "u-1", "push", "key:a"),
        (2, "u-1", "push", "key:a"),
        (3, "u-1", "email", "key:a"),
        (4, "u-2", "push", "key:a"),
        (5, "u-1", "push", None),
    ]
    assert policy.release_collapse(rows) == {1}


def test_deciding_a_chunk_at_once_gives_each_recipient_their_own_fate() -> None:
    # Recipients on the shared defaults are decided once per situation; whoever differs
    # (other addresses, a stored choice, another time zone) must not inherit their fate.
    settings = Settings(default_timezone="Asia/Shanghai")

    def default(rid: str, zone: str | None = None) -> EffectivePreferences:
        if zone is None:
            return resolve(None, None, settings=settings, recipient_id=rid)
        shifted = settings.model_copy(update={"default_timezone": zone})
        return resolve(None, None, settings=shifted, recipient_id=rid)

    no_email = prefs(channels={"email": False})
    chunk = [
        ("a", default("a"), EVERYWHERE),
        ("b", default("b"), ("inapp",)),
        ("c", default("c"), EVERYWHERE),
        ("d", no_email, EVERYWHERE),
        ("e", default("e", "America/New_York"), EVERYWHERE),  # 23:00 at NIGHT in Shanghai
    ]
    got = policy.decide_many(rules(), Request(), chunk, NIGHT)
    assert got == {rid: policy.decide(rules(), Request(), p, ch, NIGHT) for rid, p, ch in chunk}
    assert by_channel(got["a"])["email"] == ("scheduled", "quiet_hours")
    assert "email" not in {d.channel for d in got["b"] if d.status != "suppressed"}
    assert by_channel(got["d"])["email"] == ("suppressed", "opted_out")
    assert by_channel(got["e"])["email"] == ("queued", None)  # 10:00 in New York


def test_a_held_delivery_is_decided_again_by_the_same_rules() -> None:
    def again(chosen: EffectivePreferences, at: datetime = NOON, **request: object) -> Decision:
        return policy.recheck(rules(), Request(**request), chosen, EVERYWHERE, "email", at)  # type: ignore[arg-type]

    assert again(prefs()) == Decision("email", "queued")
    assert again(prefs(unsubscribed=True)).reason == "unsubscribed"
    assert again(prefs(channels={"email": False})).reason == "opted_out"
    assert again(prefs(paused_until=NOON + timedelta(days=1))) == Decision(
        "email", "suppressed", "paused"
    )
    assert again(prefs(), expires_at=NOON).reason == "expired"
    night = again(prefs(), NIGHT)
    assert (night.status, night.reason) == ("scheduled", "quiet_hours")
    assert policy.recheck(rules(), Request(), prefs(), ("inapp",), "email", NOON).reason == (
        "no_address"
    )
    essential = policy.recheck(
        rules(required=True), Request(), prefs(unsubscribed=True), EVERYWHERE, "email", NOON
    )
    assert essential == Decision("email", "queued")


ZONES = ("UTC", "Asia/Shanghai", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe")


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    quiet=st.one_of(st.none(), st.tuples(st.integers(0, 23), st.integers(0, 23))),
    step=st.integers(60, 6 * 3600),
    clock=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
    wait=st.integers(0, 47 * 3600),
)
def test_a_best_time_send_escalates_counting_from_the_best_time(
    zone: str, quiet: tuple[int, int] | None, step: int, clock: datetime, wait: int
) -> None:
    # Normal priority: push now, email and sms as escalations if push is not seen. With
    # send_at "best", what goes now waits for the best hour; each escalation then waits
    # its own `escalate_after` from that moment, never from the accept.
    window = (
        QuietHours(True, time(quiet[0]), time(quiet[1]), zone)
        if quiet
        else QuietHours(False, time(22), time(8), zone)
    )
    reader = prefs(quiet_hours=window)
    normal = rules(priority="normal", escalate_after=step, channels=EVERYWHERE)
    decided = policy.decide(normal, Request(), reader, EVERYWHERE, clock)
    best = clock + timedelta(seconds=wait) if wait else None
    moved = policy.at_best_time(normal, reader, decided, best, clock)
    first = {d.due_at or clock for d in moved if d.reason != "escalation" and d.channel != "inbox"}
    assert len(first) == 1, moved
    (due,) = first
    assert due >= (best or clock), moved
    escalations = [d for d in moved if d.reason == "escalation"]
    assert [d.channel for d in escalations] == ["email", "sms"], moved
    for i, d in enumerate(escalations, start=1):
        assert d.due_at == due + timedelta(seconds=step * i), (i, moved)
