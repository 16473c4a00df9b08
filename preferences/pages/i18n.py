"""The pages' words in English and Simplified Chinese, and choosing which one a visitor reads."""

from __future__ import annotations

from datetime import datetime

from engine import locales
from engine.timeutil import format_duration

LOCALES = ("en", "zh-CN")
LANGUAGE_NAMES = {"en": "English", "zh-CN": "中文"}

# key -> (English, 简体中文); `{name}` placeholders are filled by `Translator.__call__`.
STRINGS: dict[str, tuple[str, str]] = {
    "support": ("Questions? Contact {name} support", "有疑问?联系{name}客服"),
    "language": ("Language", "语言"),
    "nav.preferences": ("Preferences", "通知设置"),
    "nav.inbox": ("Inbox", "消息中心"),
    "footer": (
        "This page was opened from a personal link. Please don't share it.",
        "这是您的专属链接，请勿转发给他人。",
    ),
    # Refusals
    "error.invalid.title": ("This link doesn't work", "链接无效"),
    "error.invalid.body": (
        "The link is incomplete or has been changed. Open it again from the latest message"
        " we sent you.",
        "链接不完整或已被修改。请从我们最近发给您的消息中重新打开。",
    ),
    "error.expired.title": ("This link has expired", "链接已过期"),
    "error.expired.body": (
        "For your security, links stop working after a while. Every new message from us"
        " carries a fresh one.",
        "为了您的账户安全，链接会在一段时间后失效。我们发给您的每条新消息都附有新链接。",
    ),
    "error.revoked.title": ("This link has been turned off", "链接已停用"),
    "error.revoked.body": (
        "A newer link has replaced it. Please use the link in our latest message.",
        "它已被新的链接取代，请使用我们最新消息中的链接。",
    ),
    "error.csrf.title": ("This form has expired", "表单已过期"),
    "error.csrf.body": (
        "For your security, please reload the page and try again. Nothing was changed.",
        "为了您的安全，请刷新页面后重试。本次没有做任何修改。",
    ),
    "error.not_found.title": ("Message not found", "找不到这条消息"),
    "error.not_found.body": (
        "It may have been removed. Your other messages are in your inbox.",
        "它可能已被删除。您的其他消息仍在消息中心里。",
    ),
    "error.reload": ("Reload the page", "刷新页面"),
    # Preference center
    "center.title": ("Notification preferences", "通知偏好设置"),
    "center.lead": (
        "Choose what we send you, where, how often, and when to stay quiet.",
        "选择接收哪些通知、通过什么渠道、多久一次，以及何时免打扰。",
    ),
    "channels.title": ("Where we reach you", "接收渠道"),
    "channels.hint": (
        "Turning a channel off stops every optional message on it.",
        "关闭某个渠道后，该渠道上的所有非必要通知都会停止。",
    ),
    "channel.inapp": ("In-app inbox", "站内信"),
    "channel.email": ("Email", "邮件"),
    "channel.push": ("Push notifications", "推送通知"),
    "channel.sms": ("Text messages", "短信"),
    "channel.webhook": ("Connected apps", "已连接的应用"),
    "channel.log": ("Log", "日志"),
    "categories.title": ("What we send you", "通知类型"),
    "kind.transactional": ("Orders and payments", "订单与支付"),
    "kind.service": ("Account and service", "账户与服务"),
    "kind.promotional": ("Offers and promotions", "优惠与活动"),
    "kind.social": ("Social", "社交动态"),
    "required.badge": ("Always on", "始终开启"),
    "required.transactional": (
        "Receipts for your orders and payments are always sent, so you never miss what you"
        " paid for.",
        "订单与支付通知会始终发送，确保您不会错过已购买的内容。",
    ),
    "required.service": (
        "Security and account notices are always sent to keep your account safe.",
        "安全与账户通知会始终发送，以保护您的账户。",
    ),
    "required.other": (
        "This message is essential and can't be turned off.",
        "这是必要通知，无法关闭。",
    ),
    "category.enabled": ("Receive “{name}”", "接收「{name}」"),
    "category.channel": ("“{name}” by {channel}", "通过{channel}接收「{name}」"),
    "category.cap": ("At most, for “{name}”", "「{name}」最多"),
    "category.default_cap": ("We never send more than {caps}.", "平台上限：{caps}。"),
    "cap.label": ("At most", "最多"),
    "cap.unit": ("Per", "周期"),
    "cap.count": ("{count} per {unit}", "每{unit} {count} 条"),
    "cap.none": ("no limit", "不限"),
    "cap.hint": ("Leave empty for no limit of your own.", "留空表示不设个人上限。"),
    "per.3600": ("hour", "小时"),
    "per.86400": ("day", "天"),
    "per.604800": ("week", "周"),
    "per.option.3600": ("per hour", "每小时"),
    "per.option.86400": ("per day", "每天"),
    "per.option.604800": ("per week", "每周"),
    "per.2592000": ("30 days", "30 天"),
    "per.option.2592000": ("per 30 days", "每 30 天"),
    "frequency.title": ("How often", "接收频率"),
    "frequency.overall": ("Across all optional messages", "所有非必要通知合计"),
    "frequency.hint": (
        "Receipts and security alerts never count toward this limit.",
        "订单回执和安全提醒不计入此上限。",
    ),
    "quiet.title": ("Quiet hours", "免打扰时段"),
    "quiet.enabled": ("Don't disturb me during quiet hours", "在免打扰时段内不打扰我"),
    "quiet.start": ("From", "开始"),
    "quiet.end": ("Until", "结束"),
    "quiet.timezone": ("Time zone", "时区"),
    "quiet.days": ("On these days", "生效日期"),
    "quiet.hint": (
        "Messages that arrive during quiet hours wait until they end; urgent security alerts"
        " still come through. Over midnight is fine, such as 22:00 until 08:00.",
        "免打扰时段内的通知会延后到时段结束再发送，紧急安全提醒除外。可以跨越午夜，"
        "例如 22:00 至 08:00。",
    ),
    "day.mon": ("Mon", "周一"),
    "day.tue": ("Tue", "周二"),
    "day.wed": ("Wed", "周三"),
    "day.thu": ("Thu", "周四"),
    "day.fri": ("Fri", "周五"),
    "day.sat": ("Sat", "周六"),
    "day.sun": ("Sun", "周日"),
    "day.every": ("every day", "每天"),
    "pause.title": ("Take a break", "暂停通知"),
    "pause.label": ("Pause optional messages until", "暂停非必要通知，直到"),
    "pause.hint": (
        "They resume at 00:00 on that day. Essentials such as receipts and security alerts"
        " still arrive. Leave empty to keep notifications on.",
        "当天 00:00 起恢复。订单回执、安全提醒等必要通知仍会送达。留空则不暂停。",
    ),
    "pause.banner": ("Optional messages are paused until {date}.", "非必要通知已暂停至 {date}。"),
    "follows.title": ("What you follow", "我的关注"),
    "follows.hint": (
        "We tell you when something you follow has news, such as a card coming back.",
        "您关注的内容有新动态时(例如卡券重新上架)，我们会通知您。",
    ),
    "follows.drop": ("Unfollow", "取消关注"),
    "follows.drop_label": ("Unfollow {topic}", "取消关注 {topic}"),
    "change.unfollow": ("No longer following {topic}", "已取消关注 {topic}"),
    "digest.title": ("Daily digest", "每日摘要"),
    "digest.enabled": (
        "Bundle low-priority messages into one digest",
        "将低优先级通知合并为一份摘要",
    ),
    "digest.at": ("Send it at", "发送时间"),
    "save": ("Save preferences", "保存设置"),
    "saved.title": ("Saved. Here's what changed:", "已保存，以下设置已更新："),
    "saved.nothing": ("Saved. Nothing needed changing.", "已保存，没有需要更新的设置。"),
    "saved.more": ("…and {count} more", "……另有 {count} 项"),
    "state.on": ("on", "开启"),
    "state.off": ("off", "关闭"),
    "change.channel": ("{channel}: {state}", "{channel}：{state}"),
    "change.category": ("“{name}”: {state}", "「{name}」：{state}"),
    "change.category_channel": ("“{name}” by {channel}: {state}", "「{name}」{channel}：{state}"),
    "change.cap": ("Overall limit: {cap}", "总上限：{cap}"),
    "change.category_cap": ("“{name}” limit: {cap}", "「{name}」上限：{cap}"),
    "change.quiet": ("Quiet hours: {summary}", "免打扰时段：{summary}"),
    "change.pause": ("Paused until {date}", "暂停至 {date}"),
    "change.unpause": ("Pause lifted", "已取消暂停"),
    "change.digest": ("Daily digest: {summary}", "每日摘要：{summary}"),
    "change.unsubscribed": (
        "Unsubscribed from all optional messages",
        "已退订所有非必要通知",
    ),
    "change.resubscribed": ("Optional messages are back on", "已恢复接收非必要通知"),
    "quiet.summary": ("{start}–{end}, {days}, {timezone}", "{start}–{end}，{days}，{timezone}"),
    "digest.summary": ("at {at}", "{at} 发送"),
    "errors.title": ("Please fix the highlighted fields:", "请修改下列标出的内容："),
    "invalid.time": (
        "“{value}” is not a time of day. Use 00:00 to 23:59.",
        "「{value}」不是有效时间，请填写 00:00 至 23:59 之间的时间。",
    ),
    "invalid.time_empty": ("Enter a time such as 22:00.", "请填写时间，例如 22:00。"),
    "invalid.same_time": (
        "Start and end can't be the same time.",
        "开始和结束时间不能相同。",
    ),
    "invalid.count": (
        "Enter a whole number from 1 to 1000, or leave it empty.",
        "请填写 1 至 1000 之间的整数，或留空。",
    ),
    "invalid.per": ("Choose hour, day or week.", "请选择每小时、每天或每周。"),
    "invalid.timezone": ("Choose a time zone from the list.", "请从列表中选择时区。"),
    "invalid.days": (
        "Pick at least one day, or turn quiet hours off.",
        "请至少选择一天，或关闭免打扰。",
    ),
    "invalid.date": ("Enter a date such as 2026-12-31.", "请按 2026-12-31 的格式填写日期。"),
    "invalid.date_past": ("Pick a date after today.", "请选择今天之后的日期。"),
    "invalid.date_far": ("You can pause for up to a year.", "最多可暂停一年。"),
    "unsubscribe.section": ("Unsubscribe from everything optional", "退订所有非必要通知"),
    "unsubscribe.hint": (
        "You will still get order receipts and security alerts.",
        "您仍会收到订单回执和安全提醒。",
    ),
    "unsubscribe.button": ("Unsubscribe from all optional messages", "退订全部非必要通知"),
    "unsubscribed.banner": (
        "You're unsubscribed from all optional messages. Essentials such as receipts and"
        " security alerts still arrive.",
        "您已退订所有非必要通知，仍会收到订单回执、安全提醒等必要通知。",
    ),
    "resubscribe": ("Resubscribe", "重新订阅"),
    "suggest.title": (
        "You rated a “{name}” message 👎. Stop getting these?",
        "您给一条「{name}」消息点了 👎。要关闭这类通知吗？",
    ),
    "suggest.button": ("Turn off “{name}”", "关闭「{name}」"),
    "muted.banner": (
        "“{name}” is off. You can turn it back on below at any time.",
        "已关闭「{name}」，随时可以在下方重新开启。",
    ),
    "open_inbox": ("Open your inbox", "打开消息中心"),
    # Inbox
    "inbox.title": ("Inbox", "消息中心"),
    "inbox.unread": ("{count} unread", "{count} 条未读"),
    "inbox.unread_badge": ("Unread messages: {count}", "未读消息：{count}"),
    "inbox.all_read": ("You're all caught up.", "消息已全部读完。"),
    "inbox.mark_all": ("Mark all as read", "全部标为已读"),
    "inbox.marked_all": ("Marked {count} as read.", "已将 {count} 条消息标为已读。"),
    "inbox.empty": ("No messages yet.", "还没有消息。"),
    "inbox.unread_mark": ("Unread", "未读"),
    "inbox.open": ("Open “{title}”", "打开「{title}」"),
    "inbox.action": ("View details", "查看详情"),
    "inbox.older": ("Older messages", "更早的消息"),
    "inbox.newest": ("Back to the newest", "回到最新消息"),
    "feedback.question": ("Was this useful?", "这条消息有用吗？"),
    "feedback.up": ("Useful", "有用"),
    "feedback.meh": ("So-so", "一般"),
    "feedback.down": ("Not useful", "没用"),
    "feedback.thanks": ("Thanks, your feedback was recorded.", "感谢反馈，已记录。"),
    "feedback.fewer": (
        "Thanks. We'll send you fewer of these: at most {cap} from now on.",
        "感谢反馈。之后这类消息会减少：最多{cap}。",
    ),
    "feedback.suggest": (
        "Don't want “{name}” messages at all?",
        "不想再收到「{name}」类消息？",
    ),
    "inbox.muted": ("You won't get “{name}” any more.", "您将不再收到「{name}」。"),
    "manage": ("Manage preferences", "管理通知设置"),
    # One-click unsubscribe
    "unsubscribe.title": ("Unsubscribe", "退订"),
    "unsubscribe.question": ("Stop all optional messages?", "停止接收所有非必要通知？"),
    "unsubscribe.explain": (
        "You'll stop getting promotions and other optional messages on every channel."
        " Order receipts and security alerts will still arrive.",
        "您将不再通过任何渠道收到促销等非必要通知。订单回执和安全提醒仍会正常送达。",
    ),
    "unsubscribe.confirm": ("Unsubscribe", "确认退订"),
    "unsubscribe.done": ("You're unsubscribed", "已退订"),
    "unsubscribe.done_body": (
        "You won't get optional messages from us any more. Changed your mind? You can"
        " resubscribe or pick exactly what you want.",
        "您将不再收到我们的非必要通知。改变主意了？可以重新订阅，或者只选择您想要的通知。",
    ),
    "unsubscribe.choose": ("Choose what I get instead", "改为自选通知类型"),
    "unsubscribe.send_link": ("Email me a link to choose what I get", "把设置链接发到我的邮箱"),
    "unsubscribe.link_why": (
        "This page can only unsubscribe: whoever a message is forwarded to can open it."
        " Your preferences and inbox open with a link of their own.",
        "此页面只能退订：邮件被转发后，任何人都能打开它。通知设置和收件箱需要专属链接。",
    ),
    "unsubscribe.link_sent": (
        "If we have an email address for you, a link to your preferences is on its way.",
        "如果我们有您的邮箱地址，设置链接已发往该邮箱。",
    ),
    "linkmail.subject": ("Your notification preferences", "您的通知设置"),
    "linkmail.body": (
        "Here is your link to choose which messages you get:\n\n{url}\n\n"
        "It works for {days} days. Did not ask for it? You can ignore this email.",
        "这是您的通知设置链接，可以选择接收哪些通知：\n\n{url}\n\n"
        "链接 {days} 天内有效。如果不是您本人申请，请忽略此邮件。",
    ),
}


def normalise(value: str | None) -> str | None:
    """The pages' language that best serves a reader of `value` (`engine.locales`): `zh`,
    `zh-SG` and `zh-Hans` read `zh-CN`; Traditional Chinese readers have no pages of
    their own and are not handed Simplified ones."""
    if not value:
        return None
    return locales.match(value.strip().replace("_", "-"), LOCALES)


def from_accept_language(header: str | None) -> str | None:
    """The most preferred supported locale in an `Accept-Language` header."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        if (locale := normalise(tag)) is not None and weight > 0:
            ranked.append((-weight, index, locale))
    return min(ranked)[2] if ranked else None


def choose(*candidates: str | None) -> str:
    """The first candidate that names a supported locale; English when none does."""
    for candidate in candidates:
        if (locale := normalise(candidate)) is not None:
            return locale
    return "en"


class Translator:
    """The pages' strings in one locale: `t("inbox.unread", count=3)`."""

    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in LOCALES else "en"
        self._index = LOCALES.index(self.locale)

    def __call__(self, key: str, **params: object) -> str:
        text = STRINGS[key][self._index]
        return text.format(**params) if params else text

    def sentences(self, *parts: str) -> str:
        """Sentences run together as the language writes them (Chinese needs no spaces)."""
        return ("" if self.locale == "zh-CN" else " ").join(p for p in parts if p)

    def cap(self, count: int | None, per: int) -> str:
        """A cap said in words: `3 per week`, `每周 3 条`, or `no limit`."""
        if count is None:
            return self("cap.none")
        unit = self(f"per.{per}") if f"per.{per}" in STRINGS else format_duration(per)
        return self("cap.count", count=count, unit=unit)

    def period(self, per: int) -> str:
        """A cap's period as the picker lists it: `per day`, `每天`."""
        key = f"per.option.{per}"
        return self(key) if key in STRINGS else "/ " + format_duration(per)

    def stamp(self, value: datetime, *, today: datetime) -> str:
        """A local date and time, with the year only when it is not this year."""
        other_year = value.year != today.year
        if self.locale == "zh-CN":
            year = f"{value.year}年" if other_year else ""
            return f"{year}{value.month}月{value.day}日 {value:%H:%M}"
        year = f", {value.year}" if other_year else ""
        return f"{value:%b} {value.day}{year}, {value:%H:%M}"
