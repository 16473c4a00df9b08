"""The preference center (`/p/{token}`) and one-click unsubscribe (`/u/{token}`, RFC 8058)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from itsdangerous import BadSignature, URLSafeSerializer
from sqlmodel import Session, col, select

from engine.api.context import REDIS
from engine.catalog import follows
from engine.catalog import topics as catalog_topics
from engine.catalog.segments import activity
from engine.errors import FieldError
from engine.schemas.preferences import PreferencesIn
from engine.store.models import Category, Feedback
from engine.timeutil import now
from preferences import store
from preferences.links import DELIVERY
from preferences.model import WEEKDAYS
from preferences.pages import forms, linkmail
from preferences.pages.forms import Change, FormState, Layout, Problem
from preferences.pages.i18n import Translator
from preferences.pages.web import Visit, check_form, page, redirect, render, unread_count

routes = web.RouteTableDef()
SHOWN_CHANGES = 12
SUGGEST_AFTER = timedelta(days=30)


@dataclass
class Snapshot:
    """What the page needs from SQL, read in one go."""

    categories: dict[str, Category]
    layout: Layout
    state: FormState
    unread: int
    suggest: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    # What each followed topic is called for this reader (its key when nobody named it).
    topic_names: dict[str, str] = field(default_factory=dict)


def _snapshot(session: Session, visit: Visit) -> Snapshot:
    settings = visit.settings
    categories = store.load_categories(session)
    prefs = store.load_one(session, visit.recipient, settings=settings)
    reader = activity(visit.recipient.last_active_at, now(), settings)
    view = forms.layout(visit.recipient, categories.values(), visit.lang, reader)
    state = forms.current(prefs, view, at=now())
    # SPEC §4: a 👎 on a category makes the page suggest turning it off.
    disliked = session.exec(
        select(Feedback.category).where(
            col(Feedback.recipient_id) == visit.recipient.id,
            col(Feedback.rating) == "down",
            col(Feedback.created_at) >= now() - SUGGEST_AFTER,
        )
    )
    suggest = sorted(
        {
            key
            for key in disliked
            if key in state.categories
            and state.categories[key].enabled
            and not categories[key].required
        }
    )
    topics = [row.topic for row in follows.topics_of(session, visit.recipient.id)]
    names = catalog_topics.labels(session, topics, visit.lang)
    unread = unread_count(session, visit.recipient.id)
    return Snapshot(categories, view, state, unread, suggest, topics, names)


def _saved_codec(visit: Visit) -> URLSafeSerializer:
    return URLSafeSerializer(visit.settings.signing_keys, salt="tidings.saved")


def _quiet_text(t: Translator, state: FormState) -> str:
    if not state.quiet_enabled:
        return t("state.off")
    days = (
        t("day.every")
        if len(state.quiet_days) == 7
        else " ".join(t(f"day.{d}") for d in state.quiet_days)
    )
    return t(
        "quiet.summary",
        start=state.quiet_start,
        end=state.quiet_end,
        days=days,
        timezone=state.quiet_timezone,
    )


def describe(change: Sequence[Any], t: Translator, snap: Snapshot) -> str:
    """One change, said in the recipient's language."""
    kind, *args = change
    names = {row.key: row.name for row in snap.layout.rows()}

    def state(on: bool) -> str:
        return t("state.on") if on else t("state.off")

    if kind == "channel":
        return t("change.channel", channel=t(f"channel.{args[0]}"), state=state(args[1]))
    if kind == "category":
        return t("change.category", name=names.get(args[0], args[0]), state=state(args[1]))
    if kind == "category_channel":
        return t(
            "change.category_channel",
            name=names.get(args[0], args[0]),
            channel=t(f"channel.{args[1]}"),
            state=state(args[2]),
        )
    if kind == "category_cap":
        return t(
            "change.category_cap",
            name=names.get(args[0], args[0]),
            cap=t.cap(args[1], args[2]),
        )
    if kind == "cap":
        return t("change.cap", cap=t.cap(args[0], args[1]))
    if kind == "quiet":
        return t("change.quiet", summary=_quiet_text(t, snap.state))
    if kind == "pause":
        return t("change.pause", date=args[0])
    if kind == "unfollow":
        return t("change.unfollow", topic=args[1] if len(args) > 1 else args[0])
    if kind == "digest":
        summary = t("digest.summary", at=snap.state.digest_at)
        return t("change.digest", summary=summary if snap.state.digest_enabled else t("state.off"))
    return t(f"change.{kind}")


def _saved(visit: Visit, snap: Snapshot) -> dict[str, Any] | None:
    raw = visit.request.query.get("saved")
    if not raw:
        return None
    try:
        data = _saved_codec(visit).loads(raw)
        lines = [describe(change, visit.t, snap) for change in data["c"]]
        more = int(data["n"]) - len(lines)
    except (BadSignature, KeyError, IndexError, TypeError, ValueError):
        return None
    return {"lines": lines, "more": more}


def _show(
    visit: Visit,
    snap: Snapshot,
    *,
    state: FormState | None = None,
    problems: dict[str, Problem] | None = None,
) -> web.Response:
    t = visit.t
    errors = {name: t(p.key, **p.params) for name, p in (problems or {}).items()}
    context = {
        "visit": visit,
        "layout": snap.layout,
        "state": state or snap.state,
        "errors": errors,
        "saved": None if errors else _saved(visit, snap),
        "unread": snap.unread,
        "suggest": snap.suggest,
        "topics": snap.topics,
        "topic_names": snap.topic_names,
        "names": {row.key: row.name for row in snap.layout.rows()},
        "default_caps": {
            row.key: ", ".join(t.cap(c.count, c.per) for c in row.default_caps)
            for row in snap.layout.rows()
        },
        "per_label": t.period,
        "weekdays": WEEKDAYS,
        "zones": forms.zone_choices((state or snap.state).quiet_timezone),
        "csrf": visit.csrf(),
        "inbox": visit.link("inbox"),
        "action": visit.here(),
    }
    return render(visit.request, "center.html", context, t=t, status=422 if errors else 200)


@routes.get("/p/{token}")
@page("preferences")
async def preference_center(visit: Visit) -> web.StreamResponse:
    """The preference center: channels, categories, follows, caps, quiet hours, pause and
    digest."""
    return _show(visit, await visit.db.read(_snapshot, visit))


def _today(state: FormState, fallback: FormState) -> date:
    zone = state.quiet_timezone if state.quiet_timezone in forms.all_zones() else None
    return now().astimezone(ZoneInfo(zone or fallback.quiet_timezone)).date()


@routes.post("/p/{token}")
@page("preferences", form=True)
async def save_preferences(visit: Visit) -> web.StreamResponse:
    """Save the form (or unsubscribe, resubscribe, mute one category, stop following a
    topic), then show what changed."""
    form = await visit.request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    days = [v for v in form.getall("quiet_days", []) if isinstance(v, str)]
    action = fields.get("action", "save")

    def write(
        session: Session,
    ) -> tuple[Snapshot, FormState | None, dict[str, Problem], list[Change]]:
        snap = _snapshot(session, visit)
        if action == "save":
            after = forms.submitted(fields, days, snap.layout, snap.state)
            if problems := forms.validate(after, today=_today(after, snap.state)):
                return snap, after, problems, []
            changes_in, changes = forms.difference(snap.state, after)
        elif action in ("unsubscribe", "resubscribe"):
            on = action == "unsubscribe"
            changes_in = PreferencesIn(unsubscribed=on)
            changes = [("unsubscribed",) if on else ("resubscribed",)]
        elif action == "unfollow" and fields.get("topic") in snap.topics:
            follows.unfollow(session, visit.recipient.id, fields["topic"])
            topic = fields["topic"]
            return snap, None, {}, [("unfollow", topic, snap.topic_names.get(topic, topic))]
        elif action == "mute" and fields.get("category") in snap.state.categories:
            key = fields["category"]
            changes_in = forms.turn_off(key)
            changes = [("category", key, False)]
        else:
            return snap, None, {}, []
        store.update(session, visit.recipient.id, changes_in, categories=snap.categories)
        return snap, None, {}, changes

    try:
        snap, state, problems, changes = await visit.db.write(write)
    except FieldError:  # a required category cannot be muted
        return redirect(visit.here())
    if problems:
        return _show(visit, snap, state=state, problems=problems)
    summary = _saved_codec(visit).dumps({"c": changes[:SHOWN_CHANGES], "n": len(changes)})
    return redirect(visit.here(saved=summary) + "#saved")


async def _unsubscribe_page(visit: Visit, *, done: bool) -> web.Response:
    """The unsubscribe page. It links nowhere else: this token opens only this page."""

    def read(session: Session) -> bool:
        return store.load_one(session, visit.recipient, settings=visit.settings).unsubscribed

    already = await visit.db.read(read)
    query = visit.request.query
    context = {
        "done": done or already,
        "action": visit.here(**_message(visit)),
        "csrf": visit.csrf(),
        "send_link": visit.here("/link"),
        "link_sent": query.get("sent") == "1",
        "resubscribed": query.get("saved") == "resubscribed" and not already,
    }
    return render(visit.request, "unsubscribe.html", context, t=visit.t)


def _message(visit: Visit) -> dict[str, str]:
    """The `?d=` naming the message this unsubscribe link came with, kept by the page's
    own forms so that confirming on the page is counted against that message too."""
    given = visit.request.query.get(DELIVERY)
    return {DELIVERY: given} if given else {}


@routes.get("/u/{token}")
@page("unsubscribe")
async def unsubscribe_confirm(visit: Visit) -> web.StreamResponse:
    """Ask before unsubscribing: a GET (a link scanner, a preview) never changes anything."""
    return await _unsubscribe_page(visit, done=False)


@routes.post("/u/{token}")
@page("unsubscribe")
async def unsubscribe(visit: Visit) -> web.StreamResponse:
    """One-click unsubscribe (RFC 8058): a POST unsubscribes, with no cookie or CSRF token.

    The unsubscribe is counted against the message the link came with (`?d=`) when that
    message is this recipient's own; a link naming none (one minted by the API, or sent
    before links named their message) unsubscribes all the same, counted against none.
    Undoing it (`action=resubscribe`) is a form of this page and needs its CSRF token.
    """
    form = await visit.request.post()
    on = form.get("action") != "resubscribe"
    if not on:
        await check_form(visit)
    given = visit.request.query.get(DELIVERY)

    def write(session: Session) -> None:
        rid = visit.recipient.id
        store.update(
            session,
            rid,
            PreferencesIn(unsubscribed=on),
            categories=store.load_categories(session),
            delivery_id=store.source_delivery(session, rid, given) if on else None,
        )

    await visit.db.write(write)
    if not on:
        return redirect(visit.here(saved="resubscribed", **_message(visit)) + "#saved")
    return await _unsubscribe_page(visit, done=True)


@routes.post("/u/{token}/link")
@page("unsubscribe", form=True)
async def email_preferences_link(visit: Visit) -> web.StreamResponse:
    """Email the recipient a link to their preference center, which this page never opens.

    The answer is the same whether or not an email went out.
    """
    await linkmail.send_preferences_link(
        visit.recipient, visit.settings, visit.request.app[REDIS], visit.t
    )
    return redirect(visit.here(sent="1") + "#sent")
