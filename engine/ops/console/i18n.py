"""The console's words in English and Simplified Chinese, and its numbers, shares and
times formatted for the reader's locale by Babel."""

from __future__ import annotations

from datetime import UTC, datetime

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal, format_percent

from preferences.pages.i18n import LANGUAGE_NAMES, LOCALES, choose, from_accept_language

__all__ = ["LANGUAGE_NAMES", "LOCALES", "Translator", "choose", "from_accept_language"]

# key -> (English, 简体中文); `{name}` placeholders are filled by `Translator.__call__`.
STRINGS: dict[str, tuple[str, str]] = {
    "console": ("Ops console", "运营控制台"),
    "language": ("Language", "语言"),
    "nav": ("Console sections", "控制台栏目"),
    "nav.panel": ("Data", "数据"),
    "nav.messages": ("Messages", "消息记录"),
    "nav.recipients": ("Recipients", "用户"),
    "nav.health": ("Health", "运行状态"),
    "nav.endpoints": ("Event endpoints", "事件推送"),
    "nav.send": ("Test send", "测试发送"),
    "sign_out": ("Sign out", "退出登录"),
    "signed_in_as": ("Signed in with key “{name}”", "当前密钥：“{name}”"),
    # Sign-in
    "sign_in.title": ("Sign in", "登录"),
    "sign_in.lead": (
        "Sign in with an API key that has the admin scope. The key is checked once and is"
        " not kept by your browser.",
        "请使用具有 admin 权限的 API 密钥登录。密钥只校验一次，不会保存在浏览器中。",
    ),
    "sign_in.key": ("Admin API key", "管理员 API 密钥"),
    "sign_in.button": ("Sign in", "登录"),
    "sign_in.refused": (
        "That key is unknown, revoked, or lacks the admin scope.",
        "密钥无效、已吊销或没有 admin 权限。",
    ),
    "sign_in.missing": ("Sign in to open the console.", "请先登录控制台。"),
    "sign_in.invalid": ("Sign in to open the console.", "请先登录控制台。"),
    "sign_in.expired": (
        "Your sign-in has expired. Please sign in again.",
        "登录已过期，请重新登录。",
    ),
    "sign_in.revoked": (
        "The key you signed in with was revoked. Sign in with a live admin key.",
        "您登录所用的密钥已被吊销，请使用有效的管理员密钥登录。",
    ),
    "sign_in.signed_out": ("You are signed out.", "您已退出登录。"),
    # Refusals
    "error.csrf.title": ("This form has expired", "表单已过期"),
    "error.csrf.body": (
        "For your security, reload the page and try again. Nothing was changed.",
        "为了安全，请刷新页面后重试。本次没有做任何修改。",
    ),
    "error.invalid.title": ("That request is not valid", "请求无效"),
    "error.not_found.title": ("Not found", "未找到"),
    "error.not_found.body": (
        "The console has no page at this address.",
        "控制台没有这个地址的页面。",
    ),
    "error.field": ("Field “{field}”: {message}", "字段“{field}”：{message}"),
    "error.back": ("Back", "返回"),
    # Data panel
    "panel.title": ("Data", "数据"),
    "panel.range": ("Range", "时间范围"),
    "panel.from": ("From", "开始"),
    "panel.to": ("To", "结束"),
    "panel.bucket": ("Bucket", "粒度"),
    "panel.by": ("Group by", "分组"),
    "panel.show": ("Show", "查看"),
    "bucket.hour": ("Hour", "小时"),
    "bucket.day": ("Day", "天"),
    "by.category": ("Category", "类别"),
    "by.channel": ("Channel", "渠道"),
    "by.campaign": ("Campaign", "活动"),
    "by.variant": ("Variant", "变体"),
    "panel.over_time": ("Deliveries over time", "投递趋势"),
    "panel.rates": ("Engagement rates", "互动率"),
    "panel.suppressed": ("Suppressed, by reason", "被抑制的投递（按原因）"),
    "panel.feedback": ("👍 / 😕 / 👎 shares", "👍 / 😕 / 👎 占比"),
    "panel.figures": ("Figures", "明细"),
    "panel.empty": ("Nothing was sent in this range.", "该时间范围内没有发送记录。"),
    "panel.none": ("(none)", "（无）"),
    "figure.deliveries": ("Deliveries", "投递"),
    "figure.pending": ("Pending", "待发送"),
    "figure.sent": ("Sent", "已发送"),
    "figure.opened": ("Opened", "已打开"),
    "figure.clicked": ("Clicked", "已点击"),
    "figure.delivered": ("Delivered", "已送达"),
    "figure.failed": ("Failed", "失败"),
    "figure.suppressed": ("Suppressed", "被抑制"),
    "figure.open_rate": ("Open rate", "打开率"),
    "figure.click_rate": ("Click rate", "点击率"),
    "figure.conversion_rate": ("Conversion rate", "转化率"),
    "figure.complaint_rate": ("Complaint rate", "投诉率"),
    "panel.complaint_note": (
        "Rates are shares of the deliveries sent. A complaint is a sent delivery rated 👎 or"
        " whose own unsubscribe link was used, counted once if both; an unsubscribe made"
        " elsewhere counts against no message.",
        "各比率以已发送的投递为分母。投诉指被评为 👎 或经其自带退订链接退订的已发送投递，"
        "两者兼有只计一次；在别处退订不计入任何消息。",
    ),
    "figure.unsubscribe_rate": ("Unsubscribe rate", "退订率"),
    "feedback.up": ("👍 Useful", "👍 有用"),
    "feedback.meh": ("😕 So-so", "😕 一般"),
    "feedback.down": ("👎 Not useful", "👎 没用"),
    # Health
    "health.title": ("Health", "运行状态"),
    "health.queues": ("Queues", "队列"),
    "health.queue": ("Queue", "队列"),
    "health.waiting": ("Waiting", "等待中"),
    "health.delayed": ("Delayed", "延迟"),
    "health.in_flight": ("In flight", "处理中"),
    "health.dead": ("Dead letters", "死信"),
    "health.broker_down": ("The broker did not answer: {error}", "消息代理无响应：{error}"),
    "health.throughput": ("Throughput", "吞吐量"),
    "health.per_minute": (
        "{count} sent or delivered in the last minute ({rate}/s)",
        "最近一分钟发送或送达 {count} 条（每秒 {rate} 条）",
    ),
    "health.deliveries": ("Deliveries by status", "投递状态分布"),
    "health.processes": ("Workers seen", "已发现的进程"),
    "health.no_processes": (
        "No supervisor is running (tidings worker / tidings up).",
        "没有正在运行的守护进程（tidings worker / tidings up）。",
    ),
    "health.redis_down": ("Redis did not answer: {error}", "Redis 无响应：{error}"),
    "health.process": ("Process", "进程"),
    "health.host": ("Host", "主机"),
    "health.state": ("State", "状态"),
    "health.restarts": ("Restarts", "重启次数"),
    "health.running": ("running", "运行中"),
    "health.stopped": ("waiting", "等待中"),
    "health.scheduler": ("Scheduler's last run", "调度器上次运行"),
    "health.scheduler_never": ("No run recorded yet", "尚无运行记录"),
    "health.status": ("Status", "状态"),
    "health.count": ("Count", "数量"),
    # Recipients
    "recipient.id": ("Recipient id", "用户 ID"),
    "recipient.find": ("Look up", "查询"),
    "recipient.attributes": ("Attributes", "属性"),
    "recipient.custom": ("Custom attributes", "自定义属性"),
    "recipient.preferences": ("Effective preferences", "生效的通知设置"),
    "recipient.chosen": ("chosen", "用户设置"),
    "recipient.default": ("default", "默认"),
    "recipient.required": ("always on", "始终开启"),
    "recipient.caps": ("Overall limit", "总上限"),
    "recipient.quiet": ("Quiet hours", "免打扰"),
    "recipient.digest": ("Daily digest", "每日摘要"),
    "recipient.unsubscribed": (
        "Unsubscribed from all optional messages.",
        "已退订所有非必要通知。",
    ),
    "recipient.deliveries": ("Recent deliveries", "最近的投递"),
    "recipient.inbox": ("Inbox ({count} unread)", "站内信（{count} 条未读）"),
    "recipient.feedback": ("Feedback", "反馈"),
    "recipient.none": ("None yet.", "暂无。"),
    "recipient.mint": ("Mint page links", "生成页面链接"),
    "recipient.links": ("Page links", "页面链接"),
    "recipient.links_expire": (
        "They open the recipient's own pages: share them only with the recipient."
        " They expire on {at}.",
        "这些链接可打开该用户的个人页面，请只发给用户本人。有效期至 {at}。",
    ),
    "recipient.link.preferences": ("Preferences", "通知设置"),
    "recipient.link.inbox": ("Inbox", "站内信"),
    "recipient.link.unsubscribe": ("Unsubscribe", "退订"),
    "state.on": ("on", "开启"),
    "state.off": ("off", "关闭"),
    "delivery.recipient": ("Recipient", "用户"),
    "delivery.history": ("History", "记录"),
    # Messages
    "message.title": ("Notification {id}", "通知 {id}"),
    "message.summary": ("Summary", "概况"),
    "message.recipients": ("Recipients", "收件人数"),
    "message.created": ("Created", "创建时间"),
    "message.counts": ("Deliveries by status", "投递状态"),
    "message.funnel": ("Funnel", "转化漏斗"),
    "message.settling": ("settling; this page refreshes itself", "处理中，本页会自动刷新"),
    "message.more": ("More deliveries", "更多投递"),
    "funnel.deliveries": ("Planned", "已计划"),
    "funnel.sent": ("Sent", "已发送"),
    "funnel.delivered": ("Delivered", "已送达"),
    "funnel.opened": ("Opened", "已打开"),
    "funnel.clicked": ("Clicked", "已点击"),
    "funnel.converted": ("Converted", "已转化"),
    "message.cancel": ("Cancel this notification", "取消这条通知"),
    "message.cancel_hint": (
        "Scheduled and queued deliveries end suppressed (cancelled); sent ones stay as they are.",
        "已计划和排队中的投递将被取消；已发送的不受影响。",
    ),
    "message.cancelled": (
        "Cancelled. Nothing of it that had not gone out will go out.",
        "已取消，尚未发出的投递不会再发出。",
    ),
    # A/B test
    "ab.title": ("A/B test", "A/B 测试"),
    "ab.variant": ("Variant", "版本"),
    "ab.weight": ("Weight", "权重"),
    "ab.send_after": ("Sent after", "延迟发送"),
    "ab.seconds": ("{s} s", "{s} 秒"),
    "ab.slice": ("Test slice", "测试比例"),
    "ab.metric": ("Chosen on", "评判指标"),
    "ab.metric.open_rate": ("Open rate", "打开率"),
    "ab.metric.click_rate": ("Click rate", "点击率"),
    "ab.metric.conversion_rate": ("Conversion rate", "转化率"),
    "ab.decide_at": ("Winner chosen at", "决出时间"),
    "ab.winner": ("Winner", "胜出版本"),
    "ab.won": ("winner", "胜出"),
    "ab.undecided": ("not chosen yet", "尚未决出"),
    "ab.decided_at": ("chosen {at} UTC", "决出于 {at} UTC"),
    "ab.rule": ("Rule", "决出规则"),
    "ab.rule.best": ("the best rate over the slice", "测试人群中指标最佳"),
    "ab.rule.tie": (
        "a tie: the heaviest variant, then the first listed, won",
        "指标持平：权重最大者胜出，其次为排在最前者",
    ),
    "ab.rule.no_data": (
        "nothing to go on (no rate above zero, or a variant not yet sent): the heaviest"
        " variant, then the first listed, won",
        "无可比较的数据（指标均为零，或有版本未发出）：权重最大者胜出，其次为排在最前者",
    ),
    "log.all": ("All", "全部"),
    "log.created_after": ("Created from", "创建日期自"),
    "log.created_before": ("Created until", "创建日期至"),
    "log.audience": ("Audience", "受众"),
    "log.ids": ("{count} listed", "指定 {count} 人"),
    "log.segment": ("Segment", "人群"),
    "log.topic": ("Followers of {topic}", "关注 {topic} 的用户"),
    "log.everyone": ("Everyone", "全部用户"),
    "log.older": ("Older notifications", "更早的通知"),
    # Event endpoints
    "endpoints.title": ("Event endpoints", "事件推送端点"),
    "endpoints.lead": (
        "Where delivery events are pushed as signed webhooks. An endpoint that keeps failing"
        " is paused; its events are kept until you resume it.",
        "投递事件以签名 Webhook 推送到以下地址。连续失败的端点会被暂停，其事件会保留到您恢复为止。",
    ),
    "endpoints.none": (
        "No endpoint is registered (POST /v1/event-endpoints).",
        "尚未注册任何端点（POST /v1/event-endpoints）。",
    ),
    "endpoints.url": ("URL", "地址"),
    "endpoints.types": ("Event types", "事件类型"),
    "endpoints.state": ("State", "状态"),
    "endpoints.paused": ("paused", "已暂停"),
    "endpoints.active": ("active", "正常"),
    "endpoints.paused_at": ("Paused at", "暂停时间"),
    "endpoints.reason": ("Why it was paused", "暂停原因"),
    "endpoints.failures": ("Failures in a row", "连续失败次数"),
    "endpoints.last_error": ("Last error", "最近一次错误"),
    "endpoints.last_success": ("Last success", "最近一次成功"),
    "endpoints.waiting": ("Batches waiting", "待发送批次"),
    "endpoints.failed": ("Batches given up", "已放弃的批次"),
    "endpoints.never": ("never", "从未"),
    "endpoints.resume": ("Resume", "恢复推送"),
    "endpoints.resume_hint": (
        "Its waiting and given-up batches are posted again at once.",
        "待发送和已放弃的批次将立即重新推送。",
    ),
    "endpoints.resumed": (
        "Endpoint {id} resumed: its waiting events go out now.",
        "端点 {id} 已恢复，待发送的事件将立即推送。",
    ),
    # Test send
    "send.title": ("Test send", "测试发送"),
    "send.lead": (
        "Send one category's message to one recipient, exactly as the API would, and"
        " watch its deliveries settle.",
        "按 API 的方式向一位用户发送某个类别的消息，并实时查看投递结果。",
    ),
    "send.data": ("Template data (JSON)", "模板数据（JSON）"),
    "send.button": ("Send", "发送"),
    "send.accepted": (
        "Accepted. Its deliveries appear below as they settle.",
        "已受理，投递结果会陆续显示在下方。",
    ),
}


class Translator:
    """The console's strings and number formats in one locale: `t("nav.panel")`,
    `t.number(1200)` → `1,200`, `t.percent(0.125)` → `12.5%`."""

    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in LOCALES else "en"
        self._index = LOCALES.index(self.locale)
        self._babel = Locale.parse(self.locale, sep="-")

    def __call__(self, key: str, **params: object) -> str:
        text = STRINGS[key][self._index]
        return text.format(**params) if params else text

    def has(self, key: str) -> bool:
        return key in STRINGS

    def number(self, value: float | int | None) -> str:
        """A count or figure with the locale's grouping; `–` for none."""
        if value is None:
            return "–"
        return format_decimal(value, locale=self._babel)

    def percent(self, value: float | None) -> str:
        """A share from 0 to 1 as a percentage with one decimal; `–` when undefined."""
        if value is None:
            return "–"
        return format_percent(value, format="#,##0.0%", locale=self._babel)

    def moment(self, value: datetime | None) -> str:
        """A moment in UTC, written the locale's way; `–` for none."""
        if value is None:
            return "–"
        return format_datetime(value, "medium", tzinfo=UTC, locale=self._babel) + " UTC"
