"""The data panel's charts, drawn by pygal as SVG and handed to the page as `data:` images.

An SVG shown through `<img>` runs no script and loads nothing, so the console's strict
Content-Security-Policy (no script, images from itself or `data:`) holds; the numbers
behind every chart are also in the page's figures table.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from typing import Any

import pygal
from pygal.style import Style

FONTS = (
    'system-ui, "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif, '
    '"Noto Color Emoji"'
)
STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1b1c25",
    foreground_strong="#1b1c25",
    foreground_subtle="#5b6074",
    font_family=FONTS,
    label_font_family=FONTS,
    major_label_font_family=FONTS,
    legend_font_family=FONTS,
    title_font_family=FONTS,
    value_font_family=FONTS,
    label_font_size=15,
    major_label_font_size=15,
    legend_font_size=16,
    title_font_size=16,
    colors=("#4f46e5", "#0b8a5a", "#d92d20", "#d68a00", "#7a5af8", "#0e9384", "#c11574"),
)
# Drawn at this size (a desktop column); the page scales the image to its column, so on a
# 375 px phone the text reads at about two thirds of its size.
WIDTH, HEIGHT = 560, 420
LEGEND_ROW = 24


def _config(**extra: Any) -> dict[str, Any]:
    return {
        "style": STYLE,
        "width": WIDTH,
        "height": HEIGHT,
        "js": [],  # no script: the image is static
        "legend_at_bottom": True,
        "legend_at_bottom_columns": 2,
        "truncate_legend": 30,
        "truncate_label": 20,
        "print_values": False,
        "show_y_guides": True,
        "margin": 16,
        **extra,
    }


def data_url(chart: Any) -> str:
    """A chart as a `data:image/svg+xml;base64,…` URL for an `<img>`."""
    svg: bytes = chart.render()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode()


def over_time(
    labels: Sequence[str],
    lines: dict[str, Sequence[int]],
    *,
    number: Callable[[float], str],
) -> str:
    """Counts per hour or day: one line per outcome, x labels every few buckets."""
    chart = pygal.Line(
        **_config(
            x_label_rotation=0,
            show_minor_x_labels=False,
            dots_size=2,
            value_formatter=number,
            min_scale=4,
        )
    )
    chart.x_labels = list(labels)
    step = max(1, len(labels) // 8)
    chart.x_labels_major = list(labels)[::step]
    for name, values in lines.items():
        chart.add(name, list(values))
    return data_url(chart)


def grouped_bars(
    groups: Sequence[str],
    bars: dict[str, Sequence[float | None]],
    *,
    percent: Callable[[float], str],
) -> str:
    """Rates from 0 to 1 side by side per group: open, click, conversion, unsubscribe and
    complaint."""
    # Two rates to a legend row; the chart grows a line for each row past the second.
    more = LEGEND_ROW * max(0, math.ceil(len(bars) / 2) - 2)
    chart = pygal.Bar(
        **_config(
            value_formatter=lambda v: percent(v) if v is not None else "–",
            x_label_rotation=25 if len(groups) > 2 else 0,
            range=(0, 1),
            y_labels=[0, 0.25, 0.5, 0.75, 1],
            height=HEIGHT + more,
            margin_bottom=16 + more,
        )
    )
    chart.x_labels = list(groups)
    for name, values in bars.items():
        chart.add(name, list(values))
    return data_url(chart)


def stacked(
    groups: Sequence[str],
    parts: dict[str, Sequence[float]],
    *,
    formatter: Callable[[float], str],
    shares: bool = False,
) -> str:
    """Horizontal stacked bars per group: counts by reason, or shares from 0 to 1."""
    extra: dict[str, Any] = {"value_formatter": formatter}
    if shares:
        extra["range"] = (0, 1)
        extra["y_labels"] = [0, 0.25, 0.5, 0.75, 1]
    else:  # counts: whole-number ticks only
        top = max((sum(v) for v in zip(*parts.values(), strict=True)), default=0)
        step = max(1, math.ceil(top / 5))
        extra["y_labels"] = list(range(0, int(top) + step + 1, step))
    # Three parts to a legend row (two when a name is long enough to run into the next
    # one, such as "seen_elsewhere"); the chart grows a line for each further row.
    columns = 3 if max((len(name) for name in parts), default=0) <= 11 else 2
    rows = math.ceil(len(parts) / columns)
    extra["legend_at_bottom_columns"] = columns
    extra["height"] = HEIGHT + LEGEND_ROW * max(0, rows - 1)
    extra["margin_bottom"] = 16 + LEGEND_ROW * max(0, rows - 1)  # pygal leaves one row
    chart = pygal.HorizontalStackedBar(**_config(**extra))
    chart.x_labels = list(groups)
    for name, values in parts.items():
        chart.add(name, list(values))
    return data_url(chart)
