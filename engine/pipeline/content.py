"""What a delivery says: literal content, or the category's templates for its channel and
locale (with fallback), rendered in the sandbox. Renders once per notification, channel
and locale when the templates do not mention the recipient; templates that do
(`{{ recipient.name }}`, `{{ recipient.attributes.level }}`) render per recipient.

An A/B variant overrides only the fields it gives (`title`, `body`, `html`,
`action_url`; an email's subject is its title and its text the body): its literal
`content`, else its templates for the channel, laid over what the notification would
have sent without it. A field it leaves out comes from the notification's own `content`,
else from the category's templates for that channel and locale."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.pipeline.templates import (
    DataError,
    check_data,
    pick_locale,
    render,
    uses_links,
    uses_recipient,
)
from engine.pipeline.variants import CopyInputs, Variant, copy_inputs
from engine.store.models import Category, Notification, Recipient


@dataclass(frozen=True)
class Copy:
    title: str
    body: str
    html: str | None
    action_url: str | None
    locale: str


def fields_for(category: Category, channel: str) -> Mapping[str, Mapping[str, str]]:
    """The templates (by locale) a channel uses: its own, else the inbox's, else any."""
    templates = category.templates
    if channel in templates:
        return templates[channel]
    if "inapp" in templates:
        return templates["inapp"]
    return next(iter(templates.values()), {})


# Template fields that say the same thing: an email's `subject` is a title, `text` a body.
ALIASES = ({"title", "subject"}, {"body", "text"})


def _aliases(names: Iterable[str]) -> set[str]:
    """Every name these fields go by."""
    return {alias for name in names for alias in next((g for g in ALIASES if name in g), {name})}


def _without(fields: Mapping[str, str], given: Iterable[str]) -> dict[str, str]:
    """`fields` without those a layer above gives (by name or alias)."""
    gone = _aliases(given)
    return {name: source for name, source in fields.items() if name not in gone}


def _layered(
    category: Category,
    channel: str,
    locale: str | None,
    inputs: CopyInputs,
) -> tuple[str | None, dict[str, str], dict[str, str], dict[str, Any]]:
    """For one channel and the locale asked for: the locale picked, the templates to render
    (the category's unless the notification has literal `content`, under the variant's),
    which of those are the variant's own, and the literal fields (the notification's
    `content`, under the variant's)."""
    own_by_locale = inputs.templates.get(channel) or {}
    base_by_locale = {} if inputs.content else fields_for(category, channel)
    default = category.default_locale
    # The variant's own templates choose the locale, so one copy speaks one language.
    picked = pick_locale(own_by_locale or base_by_locale, locale, default)
    own = dict(own_by_locale.get(picked, {})) if picked else {}
    base_locale = pick_locale(base_by_locale, picked or locale, default) if base_by_locale else None
    base = base_by_locale.get(base_locale, {}) if base_locale else {}
    literal: dict[str, Any] = {
        k: v for k, v in (inputs.content or {}).items() if k not in _aliases(own)
    }
    literal.update(inputs.overrides)
    fields = _without({**_without(base, own), **own}, inputs.overrides)
    own = _without(own, inputs.overrides)
    return picked or base_locale, fields, own, literal


def check(
    category: Category,
    channels: Sequence[str],
    data: Mapping[str, Any],
    variant: Variant | None = None,
    content: Mapping[str, Any] | None = None,
) -> None:
    """Render every template these channels would use, in every locale, against `data`
    for a recipient left open (`templates.check_data`); raises `DataError` naming the
    channel and locale too (`templates.email.en.title`).

    With `variant`, the fields it gives (its `content`, its `templates`) stand in for the
    category's as `Composer` lays them; a failure in one of the variant's own templates
    is `DataError.overridden`. With the notification's literal `content`, only the
    variant's templates render."""
    inputs = CopyInputs(
        dict(data),
        content,
        (variant.templates or {}) if variant else {},
        dict(variant.content or {}) if variant else {},
    )
    done: set[tuple[str, ...]] = set()
    for channel in channels:
        own_by_locale = inputs.templates.get(channel) or {}
        base_by_locale = {} if content else fields_for(category, channel)
        for asked in own_by_locale or base_by_locale:
            locale, fields, own, _ = _layered(category, channel, asked, inputs)
            seen = (str(locale), *sorted(f"{k}={v}" for k, v in fields.items()))
            if seen in done:
                continue
            done.add(seen)
            try:
                check_data(fields, data)
            except DataError as exc:
                where = f"templates.{channel}.{locale}.{exc.template}"
                raise DataError(
                    where, exc.field, f"{exc.message} ({where})", overridden=exc.template in own
                ) from None


def reader(recipient: Recipient) -> dict[str, Any]:
    """What templates know of the reader: `recipient.id`, `.locale`, `.name` (None when
    not given) and `.attributes` (the platform's own, `{}` when none)."""
    return {
        "id": recipient.id,
        "locale": recipient.locale,
        "name": recipient.name,
        "attributes": recipient.attributes or {},
    }


class Composer:
    """Renders copy for deliveries, caching what does not depend on the recipient."""

    def __init__(self) -> None:
        # by (notification, variant, channel, locale)
        self._shared: dict[tuple[int, str, str, str], Copy] = {}
        # by the locale asked for, not the one picked: the cache hit costs one lookup
        self._asked: dict[tuple[int, str, str, str], Copy] = {}

    def compose(
        self,
        notification: Notification,
        category: Category,
        channel: str,
        recipient: Recipient | None,
        links: Callable[[], Mapping[str, str]],
        variant: Variant | None = None,
    ) -> Copy:
        """The copy for one delivery, in `variant` when it is in an A/B test; raises
        `RenderError` if a template fails."""
        locale_wanted = (recipient.locale if recipient else None) or category.default_locale
        assert notification.id is not None
        test = variant.name if variant else ""
        asked = (notification.id, test, channel, locale_wanted)
        if (found := self._asked.get(asked)) is not None:
            return found
        inputs = copy_inputs(notification, variant)
        data = inputs.data
        found_locale, fields, _, literal = _layered(category, channel, locale_wanted, inputs)
        locale = found_locale or locale_wanted
        shared = not uses_recipient(fields)
        key = (notification.id, test, channel, locale)
        if shared and key in self._shared:
            self._asked[asked] = self._shared[key]
            return self._shared[key]
        context: dict[str, Any] = {
            "data": data,
            "recipient": reader(recipient) if recipient else {},
            "links": links() if not shared and uses_links(fields) else {},
        }
        out: dict[str, Any] = {**render(fields, context), **literal}
        copy = Copy(
            title=str(out.get("title") or out.get("subject") or ""),
            body=str(out.get("body") or out.get("text") or ""),
            html=out.get("html"),
            action_url=out.get("action_url") or data.get("action_url"),
            locale=locale,
        )
        if shared:
            self._shared[key] = self._asked[asked] = copy
        return copy
