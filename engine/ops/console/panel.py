"""The data panel: outcomes over time and rates, suppressions and 👍/😕/👎 per category,
channel, campaign or variant over a chosen range, as charts and a figures table."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from babel.dates import format_skeleton
from sqlmodel import Session

from engine.ops import stats
from engine.ops.console import charts
from engine.ops.console.web import ROOT, Desk, Refused, console_page
from engine.timeutil import now

routes = web.RouteTableDef()
BY = ("category", "channel", "campaign", "variant")
RATES = ("open_rate", "click_rate", "conversion_rate", "unsubscribe_rate", "complaint_rate")
RATINGS = ("up", "meh", "down")
DEFAULT_DAYS = 7
# Ranges past this many days are refused; hour buckets past 1000 hours as well.
MAX_DAYS = 400


def _day(raw: str | None, field: str) -> date | None:
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        message = "expected a date such as 2026-11-30"
        raise Refused("invalid", field=field, message=message) from None
    if day >= date.max:  # the range runs to the end of its last day
        raise Refused("invalid", field=field, message="expected a date before 9999-12-31")
    return day


def window(query: dict[str, str], today: date) -> tuple[date, date, stats.Bucket, str]:
    """(first day, last day, bucket, by) from the panel's query; 422 names a bad field.

    `from`/`to`: ISO dates, both included (default: the last 7 days); `bucket`: `hour` or
    `day` (default: hours for up to two days, days beyond); `by`: one of `BY`.
    """
    last = _day(query.get("to"), "to") or today
    first = _day(query.get("from"), "from")
    if first is None:
        back = min(DEFAULT_DAYS - 1, (last - date.min).days)
        first = last - timedelta(days=back)
    if first > last:
        raise Refused("invalid", field="from", message="must not be after to")
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise Refused("invalid", field="from", message=f"the range is at most {MAX_DAYS} days")
    bucket = query.get("bucket") or ("hour" if days <= 2 else "day")
    if bucket not in ("hour", "day"):
        raise Refused("invalid", field="bucket", message="expected hour or day")
    if bucket == "hour" and days * 24 > 1000:
        raise Refused("invalid", field="bucket", message="hour buckets cover at most 41 days")
    by = query.get("by") or "category"
    if by not in BY:
        raise Refused("invalid", field="by", message="expected one of " + ", ".join(BY))
    return first, last, bucket, by  # type: ignore[return-value]


@routes.get(ROOT)
@console_page()
async def panel(desk: Desk) -> web.Response:
    """The data panel for `?from=&to=&bucket=&by=` (see `window`)."""
    t = desk.t
    first, last, bucket, by = window(dict(desk.request.query), now().date())
    since = datetime.combine(first, datetime.min.time(), UTC)
    until = datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)

    rows, buckets = await desk.db.read(_figures, by=by, since=since, until=until, bucket=bucket)
    locale = t.locale.replace("-", "_")
    labels = [format_skeleton("MMMd", b["start"], tzinfo=UTC, locale=locale) for b in buckets]
    if bucket == "hour":
        hours = [format_skeleton("Hm", b["start"], tzinfo=UTC, locale=locale) for b in buckets]
        labels = [f"{day} {hour}" for day, hour in zip(labels, hours, strict=True)]
    names = [_name(row, by, t("panel.none")) for row in rows]
    figures = {k: t(f"figure.{k}") for k in ("sent", "delivered", "failed", "suppressed", *RATES)}
    pictures: dict[str, str] = {}
    if rows:
        pictures["over_time"] = charts.over_time(
            labels,
            {figures[k]: [b[k] for b in buckets] for k in stats.OUTCOMES},
            number=t.number,
        )
        pictures["rates"] = charts.grouped_bars(
            names, {figures[k]: [row[k] for row in rows] for k in RATES}, percent=t.percent
        )
        reasons = sorted({r for row in rows for r in row["suppressed_by_reason"]})
        if reasons:
            pictures["suppressed"] = charts.stacked(
                names,
                {r: [row["suppressed_by_reason"].get(r, 0) for row in rows] for r in reasons},
                formatter=t.number,
            )
        if any(sum(row["feedback"].values()) for row in rows):
            pictures["feedback"] = charts.stacked(
                names,
                {t(f"feedback.{r}"): [_share(row["feedback"], r) for row in rows] for r in RATINGS},
                formatter=t.percent,
                shares=True,
            )
    context = {
        "section": "panel",
        "first": first.isoformat(),
        "last": last.isoformat(),
        "bucket": bucket,
        "by": by,
        "choices": BY,
        "rows": rows,
        "names": names,
        "pictures": pictures,
        "rates": RATES,
        "ratings": RATINGS,
        "shares": [{r: _share(row["feedback"], r) for r in RATINGS} for row in rows],
    }
    return desk.render("panel.html", context)


def _figures(
    session: Session, *, by: str, since: datetime, until: datetime, bucket: stats.Bucket
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows per group and the outcomes per bucket the panel draws."""
    rows = stats.rates(session, by=by, since=since, until=until)
    return rows, stats.series(session, since=since, until=until, bucket=bucket)


def _name(row: dict[str, Any], by: str, none: str) -> str:
    """A group as people call it: a campaign by its name and id, anything else by its key."""
    value = row[by]
    if value is None:
        return none
    if row.get("campaign_name"):
        return f"{row['campaign_name']} · #{value}"
    return f"#{value}" if by == "campaign" else str(value)


def _share(feedback: dict[str, int], rating: str) -> float:
    total = sum(feedback.values())
    return feedback[rating] / total if total else 0.0
