"""An A/B test's statistics: Wilson confidence intervals for each variant's rates and a
chi-squared test of whether the variants differ, both from scipy.

Rates are proportions of recipients reached (`sent`); a variant with nothing sent has no
interval. The difference of a metric is significant when the chi-squared test over the
variants × (did, did not) table gives p < `ALPHA`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scipy.stats import binomtest, chi2_contingency

ALPHA = 0.05
# The figure each rate counts, out of `sent`.
METRICS = {
    "open_rate": "opened",
    "click_rate": "clicked",
    "conversion_rate": "converted",
    "unsubscribe_rate": "unsubscribed",
    "complaint_rate": "complained",
}


def wilson(successes: int, trials: int) -> tuple[float, float] | None:
    """The 95% Wilson score interval of `successes` out of `trials`, or None for no trials."""
    if trials <= 0:
        return None
    low, high = binomtest(min(successes, trials), trials).proportion_ci(
        confidence_level=0.95, method="wilson"
    )
    return round(float(low), 4), round(float(high), 4)


def p_value(table: Sequence[tuple[int, int]]) -> float | None:
    """The chi-squared test's p-value over rows of (successes, trials); None when fewer
    than two rows have trials or the metric never (or always) happened."""
    rows = [(s, t - s) for s, t in table if t > 0]
    if len(rows) < 2 or not any(s for s, _ in rows) or not any(f for _, f in rows):
        return None
    result = chi2_contingency([list(r) for r in rows])
    return float(result.pvalue)


def compare(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """For rows of `rates` grouped by variant: each row's `ci95` (metric → [low, high]) and
    the test's `significant` (metric → bool) and `p_values` (metric → p or None)."""
    intervals: list[dict[str, list[float]]] = []
    for row in rows:
        found = {}
        for metric, figure in METRICS.items():
            interval = wilson(_figure(row, figure), row["sent"])
            if interval is not None:
                found[metric] = list(interval)
        intervals.append(found)
    p_values = {
        metric: p_value([(_figure(row, figure), row["sent"]) for row in rows])
        for metric, figure in METRICS.items()
    }
    return {
        "ci95": intervals,
        "p_values": {m: round(p, 6) if p is not None else None for m, p in p_values.items()},
        "significant": {m: p is not None and p < ALPHA for m, p in p_values.items()},
    }


def _figure(row: Mapping[str, Any], figure: str) -> int:
    return int(row[figure])
