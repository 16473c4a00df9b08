"""Screenshots of the recipient pages and the ops console for the README, in English and
Chinese, phone and desktop.

Builds a throwaway SQLite database with a small catalog, two recipients (one per
language), a few inbox messages and a week of deliveries for the console's data panel
and message log, serves the pages on a free local port, and drives Debian's headless
Chromium through Playwright:

    python scripts/screenshots.py [--out docs/screenshots]

Chinese text needs a CJK font (Debian: fonts-noto-cjk) and the 👍 / 😕 / 👎 buttons an
emoji font (fonts-noto-color-emoji); the script warns when they are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import Page, ViewportSize, async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import col, select  # noqa: E402

from engine.api.app import create_app  # noqa: E402
from engine.catalog import keys  # noqa: E402
from engine.ops.demo import BRAND  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.store.db import Database, migrate  # noqa: E402
from engine.store.models import (  # noqa: E402
    Category,
    Delivery,
    Feedback,
    Notification,
    Preference,
    Recipient,
)
from engine.store.states import Reason  # noqa: E402
from engine.timeutil import now  # noqa: E402
from preferences.links import Links  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = ViewportSize(width=375, height=812)
DESKTOP = ViewportSize(width=1100, height=1300)

# key: (kind, priority, channels, required, caps, English name, Chinese name)
CATALOG: dict[str, tuple[str, str, list[str], bool, list[dict[str, int]], str, str]] = {
    "order.delivered": (
        "transactional",
        "critical",
        ["inapp", "email"],
        True,
        [],
        "Order delivered",
        "订单到账",
    ),
    "payment.failed": (
        "transactional",
        "high",
        ["inapp", "email", "sms"],
        True,
        [],
        "Payment problems",
        "支付异常",
    ),
    "account.security": (
        "service",
        "critical",
        ["inapp", "email", "sms"],
        True,
        [],
        "Sign-in and security",
        "登录与账户安全",
    ),
    "points.expiring": (
        "service",
        "normal",
        ["inapp", "email"],
        False,
        [],
        "Points about to expire",
        "积分即将过期",
    ),
    "promo.flash_sale": (
        "promotional",
        "normal",
        ["push", "inapp", "email"],
        False,
        [{"count": 2, "per": 86400}],
        "Flash sales",
        "限时闪购",
    ),
    "promo.member_day": (
        "promotional",
        "normal",
        ["inapp", "email", "push"],
        False,
        [{"count": 1, "per": 604800}],
        "Member day",
        "会员日",
    ),
    "promo.new_card": (
        "promotional",
        "low",
        ["inapp", "push"],
        False,
        [],
        "New cards for games you play",
        "新卡上架",
    ),
}

# (category, hours ago, read, rating, English title/body, Chinese title/body)
MESSAGES = [
    (
        "points.expiring",
        50,
        True,
        "up",
        ("1,200 points expire soon", "Your points expire on Dec 31. Swap them for a top-up card."),
        ("积分即将过期", "您有 1,200 积分将于 12 月 31 日过期，快去兑换点卡吧~"),
    ),
    (
        "promo.member_day",
        26,
        True,
        None,
        ("Member day: double points", "Every purchase today earns double points, members only."),
        ("会员日：积分翻倍", "今天每笔订单积分翻倍，会员专享。"),
    ),
    (
        "promo.flash_sale",
        3,
        False,
        None,
        ("Flash sale: 20% off game credits", "Tonight from 20:00, for two hours only. Be quick!"),
        ("限时优惠：游戏点券 8 折", "今晚 20:00 开抢，仅限 2 小时，手慢无！"),
    ),
    (
        "order.delivered",
        1,
        False,
        None,
        ("Your card is here!", "Your Genshin monthly card (order 8841) is ready. Enjoy!"),
        ("卡卡送货上门啦！", "您的原神月卡已到账，订单 8841，请查收~"),
    ),
]


FLASH_TITLES = {"en": "Flash sale: 20% off game credits", "zh-CN": "限时优惠"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed(db: Database, locale: str) -> str:
    """A catalog named in `locale`, a recipient who reads it, and their inbox."""
    zh = locale == "zh-CN"
    rid = f"demo-{locale}"
    with db.session() as session:
        for key, (kind, priority, channels, required, caps, en_name, zh_name) in CATALOG.items():
            session.add(
                Category(
                    key=key,
                    name=zh_name if zh else en_name,
                    kind=kind,
                    priority=priority,
                    channels=channels,
                    required=required,
                    caps=caps,
                )
            )
        session.add(
            Recipient(
                id=rid,
                email="kaka@example.com",
                phone="+8613800000000",
                push_tokens=["device-1"],
                timezone="Asia/Shanghai" if zh else "Europe/London",
                locale=locale,
            )
        )
        session.add(
            Preference(
                recipient_id=rid,
                channels={"sms": False},
                categories={
                    "promo.member_day": {"channels": {"email": False}},
                    "promo.new_card": {"enabled": False},
                },
            )
        )
        session.flush()
        for seq, (key, hours, read, rating, en, zh_copy) in enumerate(MESSAGES, start=1):
            title, body = zh_copy if zh else en
            at = now() - timedelta(hours=hours)
            delivery = Delivery(
                notification_id=seq,
                recipient_id=rid,
                channel="inapp",
                category=key,
                status="read" if read else "delivered",
                title=title,
                body=body,
                locale=locale,
                created_at=at,
                read_at=at + timedelta(minutes=5) if read else None,
                action_url="https://shop.example.com/",
            )
            session.add(delivery)
            session.flush()
            if rating:
                session.add(
                    Feedback(
                        delivery_id=delivery.id or 0, recipient_id=rid, category=key, rating=rating
                    )
                )
    return rid


# (category, channels, campaign, variants, share opened, share clicked) for the console
TRAFFIC = [
    ("promo.flash_sale", ["push", "inapp", "email"], 1, ["a", "b"], 0.45, 0.18),
    ("promo.member_day", ["inapp", "email"], 2, [None], 0.35, 0.08),
    ("points.expiring", ["inapp", "email"], None, [None], 0.6, 0.25),
    ("order.delivered", ["inapp", "email"], None, [None], 0.85, 0.3),
]
# Why the seeded suppressions were suppressed: reasons a suppression can have (quiet hours
# hold a delivery, they never suppress one).
SUPPRESSIONS = [
    Reason.CAPPED,
    Reason.SEEN_ELSEWHERE,
    Reason.OPTED_OUT,
    Reason.UNSUBSCRIBED,
    Reason.DUPLICATE,
]


def seed_console(db: Database) -> str:
    """A week of broadcasts and receipts with every outcome; returns an admin API key."""
    rng = random.Random(7)
    start = now() - timedelta(days=6, hours=now().hour)
    with db.session() as session:
        session.add_all(Recipient(id=f"fan-{n:03d}", locale="en") for n in range(60))
        session.flush()
        number = 1000
        for day in range(7):
            for category, channels, campaign, variants, opened, clicked in TRAFFIC:
                number += 1
                at = start + timedelta(days=day, hours=rng.randint(8, 21))
                size = rng.randint(12, 30)
                session.add(
                    Notification(
                        id=number,
                        category=category,
                        audience={"ids": [f"fan-{n:03d}" for n in range(size)]},
                        recipients=size,
                        campaign_id=campaign,
                        status="planned",
                        created_at=at,
                    )
                )
                for n in range(size):
                    for channel in channels:
                        session.add(
                            _delivery(
                                rng, number, n, category, channel, at, variants, opened, clicked
                            )
                        )
        session.flush()
        for row in session.exec(select(Delivery).where(col(Delivery.status).in_(READ))).all():
            if rng.random() < 0.3:
                rating = rng.choices(["up", "meh", "down"], weights=[6, 2, 1])[0]
                session.add(
                    Feedback(
                        delivery_id=row.id or 0,
                        recipient_id=row.recipient_id,
                        category=row.category,
                        variant=row.variant,
                        rating=rating,
                    )
                )
        return keys.create(session, name="ops", scopes=["admin"])[1]


READ = ("read", "clicked", "converted")


def _delivery(
    rng: random.Random,
    notification: int,
    n: int,
    category: str,
    channel: str,
    at: Any,
    variants: list[str | None],
    opened: float,
    clicked: float,
) -> Delivery:
    roll = rng.random()
    status, reason, error = "delivered" if channel != "email" else "sent", None, None
    if roll < 0.08:
        status, reason = "suppressed", rng.choice(SUPPRESSIONS)
    elif roll < 0.11:
        status, error = "failed", "550 mailbox unavailable" if channel == "email" else "410 gone"
    elif roll < 0.11 + clicked:
        status = "converted" if rng.random() < 0.3 else "clicked"
    elif roll < 0.11 + opened:
        status = "read"
    return Delivery(
        notification_id=notification,
        recipient_id=f"fan-{n:03d}",
        channel=channel,
        category=category,
        status=status,
        reason=reason,
        error=error,
        variant=rng.choice(variants),
        created_at=at + timedelta(minutes=rng.randint(0, 50)),
    )


async def console(phone: Page, desktop: Page, base: str, key: str, out: Path) -> None:
    """The console's data panel and message log, in English on a desktop and in
    Chinese on a phone."""
    for page in (desktop, phone):
        await page.goto(f"{base}/console/sign-in")
        await page.fill("#key", key)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/console?lang=*")
    for page, path, name in (
        (desktop, "/console?lang=en&by=category", "console-panel-en-desktop.png"),
        (phone, "/console?lang=zh-CN&by=channel", "console-panel-zh-CN-phone.png"),
        (desktop, "/console/messages?lang=en", "console-log-en-desktop.png"),
        (phone, "/console/messages?lang=zh-CN", "console-log-zh-CN-phone.png"),
    ):
        await shoot(page, base + path, out / name)


def fonts_missing() -> list[str]:
    """Debian font packages the screenshots need but this machine lacks."""
    if shutil.which("fc-list") is None:
        return []
    missing = []
    for package, query in (("fonts-noto-cjk", ":lang=zh"), ("fonts-noto-color-emoji", "emoji")):
        listed = subprocess.run(["fc-list", query], capture_output=True, text=True).stdout
        if not listed.strip() and not (query == "emoji" and "Emoji" in _all_fonts()):
            missing.append(package)
    return missing


def _all_fonts() -> str:
    return subprocess.run(["fc-list"], capture_output=True, text=True).stdout


async def snap(page: Page, path: Path) -> None:
    """What the screen shows now (a phone-sized view, not the whole scrolled page)."""
    await page.wait_for_load_state("networkidle")
    await page.wait_for_timeout(150)
    await page.screenshot(path=str(path))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


async def shoot(page: Page, url: str, path: Path) -> None:
    await page.goto(url)
    await snap(page, path)


async def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tidings-shots-"))
    port = free_port()
    apps: dict[str, tuple[Any, str, Settings]] = {}
    runners: list[web.AppRunner] = []
    for offset, locale in enumerate(("en", "zh-CN")):
        settings = Settings(
            database_url=f"sqlite:///{work / (locale + '.db')}",
            public_url=f"http://127.0.0.1:{port + offset}",
            secret_key="screenshots",
            **BRAND,  # the demo platform's face: 卡卡发卡 and its mascot
        )
        migrate(settings)
        db = Database(settings)
        rid = seed(db, locale)
        runner = web.AppRunner(create_app(settings, database=db))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port + offset).start()
        runners.append(runner)
        apps[locale] = (db, rid, settings)
        if locale == "en":
            admin_key = seed_console(db)
    try:
        async with async_playwright() as pw:
            for locale, (db, rid, settings) in apps.items():
                links = Links(settings)
                with db.session() as session:
                    row = session.get(Recipient, rid)
                    salt = row.links_salt if row else None
                prefs = links.url(rid, 0, "preferences", salt)
                inbox = links.url(rid, 0, "inbox", salt)
                # Run the browser in the page's language, as the recipient's phone would.
                ui = "zh-CN" if locale == "zh-CN" else "en-GB"
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM,
                    args=[*CHROMIUM_ARGS, f"--lang={ui}"],
                    env={**os.environ, "LANG": ui.replace("-", "_") + ".UTF-8"},
                )
                phone = await browser.new_page(viewport=PHONE, device_scale_factor=2, locale=ui)
                desktop = await browser.new_page(viewport=DESKTOP, locale=ui)
                await shoot(phone, prefs, out / f"preferences-{locale}-phone.png")
                await phone.locator("#s-frequency").scroll_into_view_if_needed()
                await phone.evaluate(
                    "window.scrollBy(0, document.querySelector('#s-frequency')"
                    ".getBoundingClientRect().top - 64)"
                )
                await snap(phone, out / f"preferences-{locale}-phone-quiet-hours.png")
                await shoot(desktop, prefs, out / f"preferences-{locale}-desktop.png")
                await shoot(phone, inbox, out / f"inbox-{locale}-phone.png")
                # 👎 on the flash sale: the inbox thanks and suggests turning the category off.
                await phone.goto(inbox)
                flash = FLASH_TITLES[locale]
                await phone.locator("li.msg", has_text=flash).get_by_role("button").last.click()
                await snap(phone, out / f"inbox-{locale}-feedback-phone.png")
                await shoot(desktop, inbox, out / f"inbox-{locale}-desktop.png")
                if locale == "en":
                    await saved_and_invalid(phone, prefs, out)
                    await console(phone, desktop, settings.public_url, admin_key, out)
                else:
                    await shoot(
                        phone,
                        links.url(rid, 0, "unsubscribe", salt),
                        out / "unsubscribe-zh-CN-phone.png",
                    )
                await browser.close()
    finally:
        for runner in runners:
            await runner.cleanup()
        shutil.rmtree(work, ignore_errors=True)


async def saved_and_invalid(page: Page, prefs: str, out: Path) -> None:
    """The page after saving (what changed), and a form sent back with `25:00`."""
    await page.goto(prefs)
    await page.get_by_label("Email", exact=True).uncheck()
    await page.get_by_label("From", exact=True).fill("23:00")
    await page.get_by_label("Until", exact=True).fill("07:30")
    await page.get_by_role("button", name="Save preferences").click()
    await snap(page, out / "saved-en-phone.png")
    await page.goto(prefs)
    # A browser's time picker cannot produce 25:00; someone typing into a plain form can.
    await page.eval_on_selector("#f-quiet_start", "el => { el.type = 'text'; el.value = '25:00'; }")
    await page.get_by_role("button", name="Save preferences").click()
    await page.locator("#f-quiet_start").scroll_into_view_if_needed()
    await snap(page, out / "invalid-en-phone.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: install Debian's chromium package")
    if missing := fonts_missing():
        print(f"warning: install {' '.join(missing)} or some text shows as boxes", file=sys.stderr)
    asyncio.run(run(args.out))


if __name__ == "__main__":
    main()
