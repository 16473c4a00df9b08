"""The recipient pages over real HTTP, the way a browser without JavaScript uses them:
plain form posts, redirect after post, CSRF, one-click unsubscribe, refusals."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from itsdangerous import TimestampSigner
from sqlmodel import col, select

from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Category, Delivery, DeliveryEvent, Feedback, Preference, Recipient
from engine.timeutil import now
from preferences.links import Links
from preferences.pages import csrf
from tests.support import Server

FLASH = "promo.flash_sale"


def seed(db: Database, *, locale: str = "en", rid: str = "u-1") -> None:
    """Three categories (one required) and a recipient reachable by email and push."""
    with db.session() as session:
        if session.get(Category, FLASH) is None:
            session.add(
                Category(
                    key="order.delivered",
                    name="Order delivered",
                    kind="transactional",
                    priority="critical",
                    channels=["inapp", "email"],
                    required=True,
                )
            )
            session.add(
                Category(
                    key=FLASH,
                    name="Flash sales",
                    kind="promotional",
                    priority="normal",
                    channels=["push", "inapp", "email"],
                    caps=[{"count": 2, "per": 86400}],
                )
            )
            session.add(
                Category(
                    key="promo.member_day",
                    name="Member day",
                    kind="promotional",
                    priority="normal",
                    channels=["inapp", "email"],
                )
            )
        session.add(
            Recipient(
                id=rid,
                email=f"{rid}@example.com",
                push_tokens=["tok"],
                timezone="Asia/Shanghai",
                locale=locale,
            )
        )


def message(
    db: Database,
    *,
    rid: str = "u-1",
    category: str = FLASH,
    title: str = "Flash sale",
    notification_id: int = 1,
    action_url: str | None = None,
    status: str = "delivered",
) -> int:
    """An in-app message in the recipient's inbox, as the pipeline stores it."""
    with db.session() as session:
        row = Delivery(
            notification_id=notification_id,
            recipient_id=rid,
            channel="inapp",
            category=category,
            status=status,
            title=title,
            body="Tonight only",
            action_url=action_url,
        )
        session.add(row)
        session.flush()
        return int(row.id or 0)


def link(
    settings: Settings, server: Server, purpose: str, rid: str = "u-1", version: int = 0
) -> str:
    """A signed page link pointing at the test server, carrying the recipient row's salt."""
    database = Database(settings)
    try:
        with database.session() as session:
            row = session.get(Recipient, rid)
            salt = row.links_salt if row else None
    finally:
        database.close()
    return server.url + urlsplit(Links(settings).url(rid, version, purpose, salt)).path


def tamper(url: str) -> str:
    """The link with one character of its signature changed."""
    return url[:-5] + ("A" if url[-5] != "A" else "B") + url[-4:]


class Forms(HTMLParser):
    """The forms of a page, with what a browser would submit for each (no JavaScript)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._select: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "fields": []})
        elif not self.forms or "disabled" in a:
            return
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.forms[-1]["fields"].append(
                (a["name"], a.get("value") or ("on" if kind == "checkbox" else ""))
            )
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select and "selected" in a:
            self.forms[-1]["fields"].append((self._select, a.get("value") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None

    def main(self) -> tuple[str, list[tuple[str, str]]]:
        """The preference form: (action, fields)."""
        form = next(f for f in self.forms if ("action", "save") in f["fields"])
        return form["action"], list(form["fields"])


def edit(fields: list[tuple[str, str]], **changes: str | None) -> list[tuple[str, str]]:
    """Fields with some replaced (None unticks a checkbox); names use `__` for `.`."""
    names = {k.replace("__", "."): v for k, v in changes.items()}
    kept = [(k, v) for k, v in fields if k not in names]
    return kept + [(k, v) for k, v in names.items() if v is not None]


def body(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Form fields as httpx sends them, repeated names (the weekdays) included."""
    out: dict[str, list[str]] = {}
    for name, value in fields:
        out.setdefault(name, []).append(value)
    return out


@pytest.fixture
def web(server: Server, db: Database) -> Iterator[httpx.Client]:
    """A browser-like client: no API key, no redirects followed automatically."""
    seed(db)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def text(response: httpx.Response) -> str:
    """A page's HTML with entities decoded, to look for what a person reads."""
    return html.unescape(response.text)


def stored(db: Database, rid: str = "u-1") -> Preference | None:
    with db.session() as session:
        return session.get(Preference, rid)


def test_token_pages_send_privacy_headers_and_speak_the_recipients_language(
    web: httpx.Client, settings: Settings, server: Server
) -> None:
    page = web.get(link(settings, server, "preferences"))
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    assert '<html lang="en">' in text(page)
    # Grouped by kind; the required category is locked and says why.
    assert page.text.index("Orders and payments") < page.text.index("Offers and promotions")
    assert "Always on" in text(page) and "Receipts for your orders" in text(page)
    chinese = web.get(link(settings, server, "preferences") + "?lang=zh-CN")
    assert '<html lang="zh-CN">' in text(chinese) and "通知偏好设置" in text(chinese)
    css = web.get(re.search(r'href="(/assets/pages\.css[^"]*)"', page.text)[1])  # type: ignore[index]
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")


def test_saving_the_form_without_javascript_redirects_and_lists_what_changed(
    web: httpx.Client, settings: Settings, server: Server, admin: httpx.Client, db: Database
) -> None:
    url = link(settings, server, "preferences")
    action, fields = Forms(web.get(url).text).main()
    fields = edit(
        fields,
        channel__email=None,
        cat__promo__flash_sale__ch__push=None,
        cat__promo__flash_sale__cap_count="1",
        quiet_start="23:00",
        quiet_end="07:30",
    )
    saved = web.post(action, data=body(fields))
    assert saved.status_code == 303
    assert "saved=" in saved.headers["Location"]
    shown = web.get(saved.headers["Location"])
    assert "Here's what changed" in text(shown)
    assert "Email: off" in text(shown)
    assert "“Flash sales” by Push notifications: off" in text(shown)
    assert "“Flash sales” limit: 1 per day" in text(shown)
    assert "Quiet hours: 23:00–07:30" in text(shown)

    prefs = admin.get("/v1/recipients/u-1/preferences").json()
    assert prefs["channels"]["email"] is False
    assert prefs["categories"][FLASH]["channels"]["push"] is False
    assert prefs["categories"][FLASH]["caps"] == [{"count": 1, "per": "1d"}]
    assert prefs["quiet_hours"]["start"] == "23:00" and prefs["quiet_hours"]["end"] == "07:30"
    # Only what changed is stored: the untouched global cap stays the platform default.
    row = stored(db)
    assert row is not None and row.caps is None and row.digest is None


def test_a_post_without_a_valid_csrf_token_changes_nothing(
    web: httpx.Client, settings: Settings, server: Server, db: Database
) -> None:
    seed(db, rid="u-2")
    url = link(settings, server, "preferences")
    action, fields = Forms(web.get(url).text).main()
    unsubscribe = {"action": "unsubscribe"}
    _, other_fields = Forms(web.get(link(settings, server, "preferences", "u-2")).text).main()
    other_token = dict(other_fields)["csrf_token"]
    for data in (
        unsubscribe,
        {**unsubscribe, "csrf_token": "forged"},
        {**unsubscribe, "csrf_token": other_token},  # issued for another recipient's page
    ):
        refused = web.post(action, data=data)
        assert refused.status_code == 403
        assert "This form has expired" in text(refused)
    cross_site = web.post(
        action,
        data=body([*fields, ("action", "unsubscribe")]),
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross_site.status_code == 403
    foreign = web.post(action, data=body(fields), headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert stored(db) is None


def test_an_old_csrf_token_is_refused(
    web: httpx.Client,
    settings: Settings,
    server: Server,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Yesterday(TimestampSigner):
        def get_timestamp(self) -> int:
            return super().get_timestamp() - 13 * 3600

    monkeypatch.setattr(csrf, "_signer", lambda secret: Yesterday(secret, salt="tidings.csrf"))
    action, fields = Forms(web.get(link(settings, server, "preferences")).text).main()
    monkeypatch.undo()
    assert web.post(action, data=body(edit(fields, channel__email=None))).status_code == 403
    assert stored(db) is None


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"quiet_start": "25:00"}, "quiet_start", "“25:00” is not a time of day. Use 00:00 to"),
        ({"quiet_end": "7h"}, "quiet_end", "“7h” is not a time of day"),
        ({"cap_count": "lots"}, "cap_count", "Enter a whole number from 1 to 1000"),
        (
            {"cat__promo__flash_sale__cap_count": "0"},
            "cat.promo.flash_sale.cap_count",
            "Enter a whole number from 1 to 1000",
        ),
        ({"quiet_timezone": "Mars/Olympus"}, "quiet_timezone", "Choose a time zone from the list."),
        ({"pause_until": "2020-01-01"}, "pause_until", "Pick a date after today."),
        ({"quiet_days": None}, "quiet_days", "Pick at least one day"),
    ],
)
def test_invalid_input_is_shown_next_to_its_field_and_nothing_is_saved(
    web: httpx.Client,
    settings: Settings,
    server: Server,
    db: Database,
    changes: dict[str, str | None],
    field: str,
    message: str,
) -> None:
    action, fields = Forms(web.get(link(settings, server, "preferences")).text).main()
    answer = web.post(action, data=body(edit(fields, channel__email=None, **changes)))
    assert answer.status_code == 422
    error = re.search(rf'<p class="field-error" id="e-{re.escape(field)}">([^<]*)</p>', answer.text)
    assert error is not None and message in html.unescape(error[1])
    assert f'aria-describedby="e-{field}"' in text(answer) and 'aria-invalid="true"' in text(answer)
    assert f'href="#f-{field}"' in text(answer)  # the summary at the top links to the field
    assert stored(db) is None


def test_quiet_hours_over_midnight_are_fine(
    web: httpx.Client, settings: Settings, server: Server, admin: httpx.Client
) -> None:
    action, fields = Forms(web.get(link(settings, server, "preferences")).text).main()
    answer = web.post(action, data=body(edit(fields, quiet_start="21:30", quiet_end="6:45")))
    assert answer.status_code == 303
    quiet = admin.get("/v1/recipients/u-1/preferences").json()["quiet_hours"]
    assert (quiet["start"], quiet["end"]) == ("21:30", "06:45")


def test_a_form_sent_unchanged_stores_nothing_and_says_so(
    web: httpx.Client, settings: Settings, server: Server, db: Database
) -> None:
    action, fields = Forms(web.get(link(settings, server, "preferences")).text).main()
    answer = web.post(action, data=body(fields))
    assert "Nothing needed changing" in text(web.get(answer.headers["Location"]))
    row = stored(db)
    assert row is None or (row.channels, row.categories, row.caps, row.quiet_hours) == (None,) * 4


def test_one_click_unsubscribe_get_asks_and_post_unsubscribes(
    web: httpx.Client, settings: Settings, server: Server, admin: httpx.Client
) -> None:
    url = link(settings, server, "unsubscribe")
    asked = web.get(url)
    assert asked.status_code == 200 and "Stop all optional messages?" in text(asked)
    assert asked.headers["Cache-Control"] == "no-store"
    assert admin.get("/v1/recipients/u-1/preferences").json()["unsubscribed"] is False
    # RFC 8058: what a mail client sends, with no cookie and no CSRF token.
    done = httpx.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=30)
    assert done.status_code == 200 and "You're unsubscribed" in text(done)
    assert admin.get("/v1/recipients/u-1/preferences").json()["unsubscribed"] is True
    # The confirmation offers to resubscribe, through the preference center's own CSRF check.
    forms = Forms(done.text).forms
    back = next(f for f in forms if ("action", "resubscribe") in f["fields"])
    assert web.post(back["action"], data=body(back["fields"])).status_code == 303
    assert admin.get("/v1/recipients/u-1/preferences").json()["unsubscribed"] is False


def test_bad_links_get_a_clear_page_and_never_the_data(
    web: httpx.Client,
    settings: Settings,
    server: Server,
    db: Database,
    admin: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = link(settings, server, "preferences")
    tampered = tamper(good)
    page = web.get(tampered, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert page.status_code == 403
    assert "链接无效" in text(page)
    assert "Flash sales" not in text(page) and "u-1@example.com" not in text(page)
    assert page.headers["Cache-Control"] == "no-store"
    assert web.post(tampered, data={"action": "unsubscribe"}).status_code == 403
    assert web.post(tamper(link(settings, server, "unsubscribe"))).status_code == 403

    wrong_page = web.get(
        server.url + urlsplit(link(settings, server, "inbox")).path.replace("/inbox/", "/p/")
    )
    assert wrong_page.status_code == 403

    real = TimestampSigner.get_timestamp
    monkeypatch.setattr(
        TimestampSigner, "get_timestamp", lambda self: real(self) - settings.link_ttl - 60
    )
    expired_link = link(settings, server, "preferences")
    monkeypatch.undo()
    expired = web.get(expired_link)
    assert expired.status_code == 410 and "This link has expired" in text(expired)

    assert admin.post("/v1/recipients/u-1/links/revoke").status_code == 200
    revoked = web.get(good)
    assert revoked.status_code == 410 and "This link has been turned off" in text(revoked)
    assert "Flash sales" not in text(revoked)
    assert web.get(link(settings, server, "preferences", version=1)).status_code == 200


def test_a_refusal_speaks_the_language_of_the_recipient_it_names(
    db: Database, settings: Settings, server: Server, admin: httpx.Client
) -> None:
    seed(db, locale="zh-CN")
    url = link(settings, server, "inbox")
    admin.post("/v1/recipients/u-1/links/revoke")
    page = httpx.get(url, headers={"Accept-Language": "en"}, timeout=30)
    assert page.status_code == 410 and "链接已停用" in text(page)


def test_inbox_lists_newest_first_and_opening_marks_read_and_cancels_other_channels(
    web: httpx.Client, settings: Settings, server: Server, db: Database
) -> None:
    older = message(db, title="Older news", notification_id=1)
    newer = message(db, title="Newer news", notification_id=2)
    with db.session() as session:  # the same notification, still waiting to go out by email
        pending = Delivery(
            notification_id=2,
            recipient_id="u-1",
            channel="email",
            category=FLASH,
            status="scheduled",
            reason="quiet_hours",
            due_at=now() + timedelta(hours=3),
        )
        session.add(pending)
        session.flush()
        pending_id = pending.id
    url = link(settings, server, "inbox")
    page = web.get(url)
    assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    assert page.text.index("Newer news") < page.text.index("Older news")
    assert "2 unread" in text(page)
    opened = Forms(page.text).forms
    read_form = next(f for f in opened if f["action"].split("?")[0].endswith(f"/{newer}/read"))
    answer = web.post(read_form["action"], data=body(read_form["fields"]))
    assert answer.status_code == 303 and f"#m-{newer}" in answer.headers["Location"]
    after = web.get(answer.headers["Location"])
    assert "1 unread" in text(after)
    with db.session() as session:
        assert session.get(Delivery, newer).read_at is not None  # type: ignore[union-attr]
        assert session.get(Delivery, older).read_at is None  # type: ignore[union-attr]
        cancelled = session.get(Delivery, pending_id)
        assert cancelled is not None and (cancelled.status, cancelled.reason) == (
            "suppressed",
            "seen_elsewhere",
        )
    # Without a CSRF token nothing is marked.
    assert web.post(url + f"/{older}/read").status_code == 403


def test_unread_count_reads_99_plus_past_99(
    web: httpx.Client, settings: Settings, server: Server, db: Database
) -> None:
    with db.session() as session:
        session.add_all(
            Delivery(
                notification_id=n,
                recipient_id="u-1",
                channel="inapp",
                category=FLASH,
                status="delivered",
                title=f"Deal {n}",
            )
            for n in range(1, 101)
        )
    page = web.get(link(settings, server, "inbox")).text
    assert (
        "99+ unread" in page
        and '<span class="badge" aria-label="Unread messages: 99+">99+</span>' in page
    )
    assert "100 unread" not in page


def test_feedback_down_is_recorded_and_suggests_turning_the_category_off(
    web: httpx.Client, settings: Settings, server: Server, db: Database, admin: httpx.Client
) -> None:
    did = message(db)
    page = web.get(link(settings, server, "inbox")).text
    rate = next(
        f for f in Forms(page).forms if f["action"].split("?")[0].endswith(f"/{did}/feedback")
    )
    answer = web.post(rate["action"], data=body(rate["fields"] + [("rating", "down")]))
    assert answer.status_code == 303
    shown = text(web.get(answer.headers["Location"]))
    # The 👎 tightened the recipient's cap for the category, and the page says so.
    assert "We'll send you fewer of these: at most 3 per week from now on." in shown
    assert "Don't want “Flash sales” messages at all?" in shown
    assert 'value="down" class="rate-btn" aria-pressed="true"' in shown
    with db.session() as session:
        feedback = session.exec(select(Feedback).where(col(Feedback.delivery_id) == did)).one()
        assert (feedback.rating, feedback.category) == ("down", FLASH)
    # The preference center suggests it too (SPEC §4 feedback loop).
    center = text(web.get(link(settings, server, "preferences")))
    assert "You rated a “Flash sales” message 👎. Stop getting these?" in center
    mute = next(f for f in Forms(shown).forms if ("category", FLASH) in f["fields"])
    muted = web.post(mute["action"], data=body(mute["fields"]))
    assert muted.status_code == 303 and "You won't get “Flash sales” any more." in text(
        web.get(muted.headers["Location"])
    )
    assert (
        admin.get("/v1/recipients/u-1/preferences").json()["categories"][FLASH]["enabled"] is False
    )
    assert "Stop getting these?" not in web.get(link(settings, server, "preferences")).text


def test_inbox_refuses_messages_of_someone_else(
    web: httpx.Client, settings: Settings, server: Server, db: Database
) -> None:
    seed(db, rid="u-2")
    message(db, title="Yours")
    theirs = message(db, rid="u-2", title="Not yours", notification_id=2)
    inbox = link(settings, server, "inbox")
    page = web.get(inbox)
    assert "Not yours" not in text(page)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    data = {"csrf_token": token[1], "rating": "down"}
    answer = web.post(inbox + f"/{theirs}/feedback", data=data)
    assert answer.status_code == 404 and "Message not found" in text(answer)
    with db.session() as session:
        assert session.exec(select(Feedback)).first() is None


def test_inbox_refuses_to_rate_or_open_a_message_that_never_arrived(
    web: httpx.Client, settings: Settings, server: Server, db: Database
) -> None:
    message(db, title="Arrived")
    held = message(db, title="Suppressed", notification_id=2, status="suppressed")
    inbox = link(settings, server, "inbox")  # one link: its form token belongs to it
    page = web.get(inbox)
    assert "Suppressed" not in text(page)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    url = inbox + f"/{held}"
    rated = web.post(url + "/feedback", data={"csrf_token": token[1], "rating": "down"})
    assert rated.status_code == 404 and "Message not found" in text(rated)
    opened = web.post(url + "/read", data={"csrf_token": token[1]})
    assert opened.status_code == 404
    with db.session() as session:
        assert session.exec(select(Feedback)).first() is None
        assert session.get(Delivery, held).read_at is None  # type: ignore[union-attr]


def test_following_an_action_link_records_the_click(
    web: httpx.Client, settings: Settings, server: Server, db: Database
) -> None:
    did = message(db, action_url="https://shop.example.com/deal")
    answer = web.get(link(settings, server, "inbox") + f"/{did}/go")
    assert (
        answer.status_code == 303 and answer.headers["Location"] == "https://shop.example.com/deal"
    )
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    with db.session() as session:
        statuses = [
            e.status
            for e in session.exec(
                select(DeliveryEvent).where(col(DeliveryEvent.delivery_id) == did)
            )
        ]
        assert "clicked" in statuses


def test_category_names_and_descriptions_follow_the_page_language(
    web: httpx.Client, settings: Settings, server: Server, db: Database, admin: httpx.Client
) -> None:
    admin.put(
        f"/v1/categories/{FLASH}",
        json={
            "name": {"en": "Flash sales", "zh-CN": "限时抢购", "zh-TW": "限時搶購"},
            "description": {"en": "Deals for a few hours", "zh-CN": "几小时内有效的优惠"},
            "kind": "promotional",
            "priority": "normal",
            "channels": ["push", "inapp", "email"],
            "templates": {"inapp": {"en": {"title": "Sale", "body": "today"}}},
        },
    ).raise_for_status()
    message(db, title="Deal")
    chinese = text(web.get(link(settings, server, "preferences") + "?lang=zh-CN"))
    assert '<h4 class="category-name">限时抢购</h4>' in chinese
    assert "几小时内有效的优惠" in chinese and "Flash sales" not in chinese
    english = text(web.get(link(settings, server, "preferences") + "?lang=en"))
    assert '<h4 class="category-name">Flash sales</h4>' in english
    assert "Deals for a few hours" in english and "限时抢购" not in english
    inbox = text(web.get(link(settings, server, "inbox") + "?lang=zh-CN"))
    assert "限时抢购" in inbox and "Flash sales" not in inbox
