"""`tidings up --demo`: the playbook's catalog, in the voice of the platform's mascot 卡卡,
a few recipients across tiers and interests, and links to see the product at once."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import itertools
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from engine.catalog import categories, follows, keys, recipients
from engine.pipeline import campaigns
from engine.schemas.campaigns import CampaignIn
from engine.schemas.catalog import CategoryIn, RecipientIn
from engine.schemas.preferences import PreferencesIn
from engine.settings import Settings
from engine.store import installation
from engine.store.db import Database
from engine.store.models import ApiKey, Campaign
from engine.timeutil import aware, now
from preferences import store
from preferences.links import Links


def _copy(zh: tuple[str, str], en: tuple[str, str]) -> dict[str, dict[str, str]]:
    return {"zh-CN": {"title": zh[0], "body": zh[1]}, "en": {"title": en[0], "body": en[1]}}


def _email(zh: tuple[str, str], en: tuple[str, str]) -> dict[str, dict[str, str]]:
    return {
        "zh-CN": {"subject": zh[0], "text": zh[1], "html": f"<p>{zh[1]}</p>"},
        "en": {"subject": en[0], "text": en[1], "html": f"<p>{en[1]}</p>"},
    }


CATALOG: dict[str, dict[str, Any]] = {
    "order.delivered": {
        "name": "Order delivered",
        "kind": "transactional",
        "priority": "critical",
        "channels": ["inapp", "email"],
        "required": True,
        "collapse_window": "1h",
        "copy": (
            ("卡卡送货上门啦!", "您的{{ data.card }}已到账,订单 {{ data.order_id }},请查收~"),
            ("卡卡delivered!", "Your {{ data.card }} is here (order {{ data.order_id }}). Enjoy!"),
        ),
    },
    "payment.failed": {
        "name": "Payment failed",
        "kind": "transactional",
        "priority": "high",
        "channels": ["inapp", "email", "sms"],
        "required": True,
        "copy": (
            (
                "哎呀,支付没成功",
                "订单 {{ data.order_id }} 支付失败,卡卡帮您保留了 30 分钟,再试一次吧~",
            ),
            (
                "Oops, the payment did not go through",
                "Order {{ data.order_id }} was not paid. 卡卡 is holding it for 30 minutes.",
            ),
        ),
    },
    "account.security": {
        "name": "Account security",
        "kind": "service",
        "priority": "critical",
        "channels": ["inapp", "email", "sms"],
        "required": True,
        "copy": (
            (
                "卡卡发现异常登录",
                "检测到新设备登录({{ data.device }}),如果不是您本人,请立即修改密码。",
            ),
            (
                "卡卡 spotted a new sign-in",
                "A new device signed in ({{ data.device }}). Not you? Change your password now.",
            ),
        ),
    },
    "promo.flash_sale": {
        "name": "Flash sales",
        "kind": "promotional",
        "priority": "normal",
        "channels": ["push", "inapp", "email"],
        "caps": [{"count": 2, "per": "1d"}],
        "over_cap": "drop",
        "collapse_window": "6h",
        "escalate_after": "30m",
        "copy": (
            (
                "限时优惠:{{ data.card }}",
                "卡卡悄悄告诉你:{{ data.card }} 今天 {{ data.discount }} 折,只到午夜哦~",
            ),
            (
                "Flash sale: {{ data.card }}",
                "Psst, 卡卡 here: {{ data.card }} is {{ data.discount }}% off until midnight.",
            ),
        ),
    },
    "promo.member_day": {
        "name": "Member day",
        "kind": "promotional",
        "priority": "normal",
        "channels": ["inapp", "email"],
        "caps": [{"count": 1, "per": "7d"}],
        "copy": (
            ("会员日到啦", "积分加倍、专属折扣,卡卡把好东西都留给你了~"),
            (
                "It's member day",
                "Double points and member prices: 卡卡 saved the good stuff for you.",
            ),
        ),
    },
    "social.new_card": {
        "name": "New cards",
        "kind": "social",
        "priority": "low",
        "channels": ["inapp", "email"],
        "copy": (
            ("您关注的卡牌明日返场", "{{ data.card }} 明天回来啦,卡卡帮你盯着呢。"),
            (
                "A card you follow is back tomorrow",
                "{{ data.card }} returns tomorrow. 卡卡 is keeping watch.",
            ),
        ),
    },
    "service.points_expiring": {
        "name": "Points expiring",
        "kind": "service",
        "priority": "normal",
        "channels": ["inapp", "email"],
        "over_cap": "defer",
        "copy": (
            (
                "您的积分即将过期",
                "您有 {{ data.points }} 积分将在 {{ data.date }} 过期,卡卡想你了,回来看看吧~",
            ),
            (
                "Your points are about to expire",
                "{{ data.points }} points expire on {{ data.date }}. 卡卡 misses you!",
            ),
        ),
    },
}

RECIPIENTS: dict[str, dict[str, Any]] = {
    "demo-whale": {
        "email": "whale@example.com",
        "phone": "+8613800000001",
        "timezone": "Asia/Shanghai",
        "locale": "zh-CN",
        "annual_spend": 8800,
        "tags": ["game.mobile", "video.anime"],
    },
    "demo-dolphin": {
        "email": "dolphin@example.com",
        "timezone": "Europe/London",
        "locale": "en",
        "annual_spend": 1200,
        "tags": ["utility.transit"],
    },
    "demo-minnow": {
        "email": "minnow@example.com",
        "timezone": "America/New_York",
        "locale": "en",
        "annual_spend": 80,
        "tags": ["game.console"],
    },
}


def demo_key(session: Session, settings: Settings) -> str:
    """The demo's admin key, the same on every `up --demo` of this installation.

    It is derived from the installation's secret (so no one else can know it) and stored
    like any key; once revoked, the next one in the series takes its place.
    """
    secret = settings.signing_keys[-1].encode()
    for n in itertools.count():
        mac = hmac.new(secret, f"tidings.demo-key.{n}".encode(), hashlib.sha256).digest()
        plain = "tk_demo_" + base64.urlsafe_b64encode(mac).decode().rstrip("=")
        row = session.exec(select(ApiKey).where(col(ApiKey.key_hash) == keys.digest(plain))).first()
        if row is None:
            keys.create(session, name="demo", scopes=["send", "read", "admin"], plain=plain)
            return plain
        if row.revoked_at is None:
            return plain
    raise AssertionError("unreachable")


# The demo platform: a card shop whose notifications speak as its mascot 卡卡.
BRAND = {
    "brand_name": "卡卡发卡",
    "brand_logo_url": "/assets/kaka.svg",
    "brand_color": "#ea580c",
    "brand_support_url": "mailto:help@kaka-cards.example",
}


# The flash sale the demo campaign announces: its two A/B variants of the copy, the
# category's own and 卡卡's friendlier one, half the recipients each.
SALE_TOPIC = "card.genshin-monthly"
SALE_DATA = {"card": "原神月卡", "discount": "8"}
FRIENDLY = (
    (
        "卡卡给你留了好价:{{ data.card }}",
        "{{ data.card }} 马上 {{ data.discount }} 折开抢,卡卡先帮你占个位~",
    ),
    (
        "卡卡 saved you a deal: {{ data.card }}",
        "{{ data.card }} goes on sale soon. 卡卡 is holding you a spot!",
    ),
)
VARIANTS = [
    {"name": "plain", "weight": 1},
    {
        "name": "friendly",
        "weight": 1,
        "templates": {
            "inapp": _copy(*FRIENDLY),
            "push": _copy(*FRIENDLY),
            "email": _email(*FRIENDLY),
        },
    },
]


def demo_campaign(session: Session, settings: Settings) -> int:
    """The demo's flash-sale campaign on the "3-2-1" rhythm (3 days, 2 days and 1 hour
    before a sale 4 days from now, at 20:00 in Shanghai) with two variants, to every
    recipient; the one created before while its sale is still ahead, else a new one."""
    at = now()
    for found in session.exec(
        select(Campaign)
        .where(col(Campaign.category) == "promo.flash_sale", col(Campaign.cancelled_at).is_(None))
        .order_by(col(Campaign.id).desc())
    ):
        if (aware(found.event_at) or at) > at + timedelta(hours=1) and found.id is not None:
            return found.id
    local = (at + timedelta(days=4)).astimezone(ZoneInfo("Asia/Shanghai"))
    event = local.replace(hour=20, minute=0, second=0, microsecond=0)
    spec = CampaignIn.model_validate(
        {
            "name": "Monthly card flash sale",
            "category": "promo.flash_sale",
            "to": {"all": True},
            "event_at": event.isoformat(),
            "data": SALE_DATA,
            "variants": VARIANTS,
        }
    )
    return int(campaigns.create(session, spec, settings=settings)["id"])


def load(settings: Settings, *, port: int) -> None:
    """Upsert the demo catalog and recipients (one following the sale's card, one reading
    low-priority news as a digest), create the flash-sale campaign, then print the
    recipients' page links, an API key and `curl`s to try."""
    database = Database(settings)
    bound = installation.bind(settings, database)
    links = Links(bound)
    try:
        with database.session() as session:
            for key, spec in CATALOG.items():
                body = {k: v for k, v in spec.items() if k != "copy"}
                zh, en = spec["copy"]
                body["templates"] = {
                    "inapp": _copy(zh, en),
                    "push": _copy(zh, en),
                    "sms": _copy(zh, en),
                    "email": _email(zh, en),
                }
                body["templates"] = {
                    c: t for c, t in body["templates"].items() if c in body["channels"]
                }
                body["default_locale"] = "zh-CN"
                categories.upsert(session, key, CategoryIn.model_validate(body))
            seen = now() - timedelta(days=2)
            rows = [
                recipients.upsert(
                    session, rid, RecipientIn.model_validate({**fields, "last_active_at": seen})
                )
                for rid, fields in RECIPIENTS.items()
            ]
            follows.follow(session, "demo-whale", SALE_TOPIC)
            known = store.load_categories(session)
            store.update(
                session,
                "demo-minnow",
                PreferencesIn.model_validate({"digest": {"enabled": True, "at": "20:00"}}),
                categories=known,
            )
            key = demo_key(session, bound)
            campaign_id = demo_campaign(session, bound)
        print("\nTidings demo is loaded. Open a recipient's pages:")
        for row in rows:
            url = functools.partial(links.url, row.id, row.links_version, salt=row.links_salt)
            print(f"  {row.id}: preferences {url('preferences')}")
            print(f"  {' ' * len(row.id)}  inbox       {url('inbox')}")
        print("\nSend one with the demo API key:")
        print(
            f"  curl -s -X POST http://127.0.0.1:{port}/v1/notifications "
            f"-H 'Authorization: Bearer {key}' "
            '-H \'content-type: application/json\' -d \'{"category": "order.delivered", '
            '"to": ["demo-whale"], "data": {"card": "原神月卡", "order_id": "456"}}\'',
        )
        print("and follow it (the id is in the answer) until its deliveries are sent:")
        print(
            f"  curl -s http://127.0.0.1:{port}/v1/notifications/ID "
            f"-H 'Authorization: Bearer {key}'",
        )
        print("\nA flash-sale campaign on the 3-2-1 rhythm, with two variants of its copy:")
        print(
            f"  curl -s http://127.0.0.1:{port}/v1/campaigns/{campaign_id} "
            f"-H 'Authorization: Bearer {key}'",
        )
        print(f"demo-whale follows {SALE_TOPIC}; tell its followers the card is back:")
        print(
            f"  curl -s -X POST http://127.0.0.1:{port}/v1/notifications "
            f"-H 'Authorization: Bearer {key}' "
            '-H \'content-type: application/json\' -d \'{"category": "social.new_card", '
            f'"to": {{"topic": "{SALE_TOPIC}"}}, "data": {{"card": "原神月卡"}}}}\'',
        )
        print("demo-minnow reads low-priority news as one digest a day, at 20:00.\n", flush=True)
    finally:
        database.close()
