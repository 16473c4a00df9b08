"""What a delivery says: literal content, or the category's templates for its channel and
locale (with fallback), rendered in the sandbox. Renders once per notification, channel
and locale when the templates do not mention the recipient; templates that do
(`{{ recipient.name }}`, `{{ recipient.attributes.level }}`) render per recipient."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
from engine.pipeline.variants import Variant, copy_inputs
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


def check(
    category: Category,
    channels: Sequence[str],
    data: Mapping[str, Any],
    overrides: Mapping[Any, Mapping[str, Mapping[str, str]]] | None = None,
) -> None:
    """Render every template these channels would use, in every locale, against `data`
    for a recipient left open (`templates.check_data`); raises `DataError` naming the
    channel and locale too (`templates.email.en.title`).

    `overrides` are a variant's own templates: a channel they cover uses them instead of
    the category's, as `Composer` does, and a failure in one is `DataError.overridden`."""
    done: set[int] = set()
    for channel in channels:
        own = (overrides or {}).get(channel)
        by_locale = own or fields_for(category, channel)
        if id(by_locale) in done:
            continue
        done.add(id(by_locale))
        for locale, fields in by_locale.items():
            try:
                check_data(fields, data)
            except DataError as exc:
                where = f"templates.{channel}.{locale}.{exc.template}"
                raise DataError(
                    where, exc.field, f"{exc.message} ({where})", overridden=bool(own)
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
        data, content, templates = copy_inputs(notification, variant)
        if content:
            return Copy(
                title=str(content.get("title", "")),
                body=str(content.get("body", "")),
                html=content.get("html"),
                action_url=content.get("action_url") or data.get("action_url"),
                locale=locale_wanted,
            )
        by_locale = templates.get(channel) or fields_for(category, channel)
        locale = pick_locale(by_locale, locale_wanted, category.default_locale) or locale_wanted
        fields = by_locale.get(locale, {})
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
        out = render(fields, context)
        copy = Copy(
            title=out.get("title") or out.get("subject") or "",
            body=out.get("body") or out.get("text") or "",
            html=out.get("html"),
            action_url=out.get("action_url") or data.get("action_url"),
            locale=locale,
        )
        if shared:
            self._shared[key] = self._asked[asked] = copy
        return copy
