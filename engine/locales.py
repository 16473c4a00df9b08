"""Choosing a locale: which of the locales we have best serves a reader of another one.

One rule everywhere a locale is chosen (a template's copy, a category's name, the pages'
language): BCP 47 matching with script and region, by the CLDR language-matching
distances that `langcodes` implements. A `zh-SG` or `zh-Hans` reader gets Simplified
Chinese (`zh-CN`), a `zh-HK`, `zh-MO` or `zh-Hant` reader Traditional (`zh-TW`), and is
not handed the other script when only that one exists; `en-US` gets `en`. The answer
never depends on the order in which the locales were listed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import langcodes

# CLDR's distance at which a match is still "usable" (langcodes' own default).
MAX_DISTANCE = 25


@functools.lru_cache(maxsize=4096)
def _closest(desired: str, available: tuple[str, ...]) -> str | None:
    try:
        found = langcodes.closest_supported_match(desired, available, MAX_DISTANCE)
    except (ValueError, LookupError):  # not a language tag langcodes can read
        return None
    return str(found) if found is not None else None


def match(desired: str | None, available: Iterable[str]) -> str | None:
    """The available locale that best serves a reader of `desired`, or None when none is
    close enough (a different language, or Chinese in the other script)."""
    if not desired:
        return None
    ordered = tuple(sorted(set(available)))  # ties go the same way whatever the order
    if desired in ordered:
        return desired
    return _closest(desired, ordered) if ordered else None


def choose(desired: str | None, available: Iterable[str], default: str) -> str | None:
    """The locale to use for a reader of `desired`: the best match, else the best match
    for the `default` locale, else the first available in sorted order (None if empty)."""
    have = sorted(set(available))
    if not have:
        return None
    return match(desired, have) or match(default, have) or have[0]


# langcodes reads its CLDR matching data on first use (~0.5 s): pay that when the process
# starts, not in the first notification or page it serves.
_closest("en-US", ("en",))
