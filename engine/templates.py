"""Sandboxed Jinja2 rendering of category templates, per channel and locale with fallback."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

SANDBOX = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
HTML_SANDBOX = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


class RenderError(Exception):
    """A template failed to render; the delivery fails with this message.

    Any exception a template raises counts, not only Jinja's: `{{ data.a / data.b }}`
    with `b: 0` raises `ZeroDivisionError`, the sandbox raises `OverflowError` for a
    too-large range, and arithmetic on mixed types `TypeError`. One bad template or one
    recipient's odd data fails that delivery, never its neighbours.
    """


@lru_cache(maxsize=4096)
def _compile(source: str, html: bool) -> tuple[Template, bool]:
    env = HTML_SANDBOX if html else SANDBOX
    uses_recipient = bool(
        {"recipient", "links"} & meta.find_undeclared_variables(env.parse(source))
    )
    return env.from_string(source), uses_recipient


def pick_locale(
    templates: Mapping[str, Mapping[str, Any]], locale: str | None, default: str
) -> str | None:
    """The best locale available: exact, then language (`zh` for `zh-CN`), then the default."""
    if not templates:
        return None
    if locale:
        if locale in templates:
            return locale
        language = locale.split("-")[0]
        for candidate in templates:
            if candidate.split("-")[0] == language:
                return candidate
    if default in templates:
        return default
    return next(iter(templates))


def uses_recipient(fields: Mapping[str, str]) -> bool:
    """Whether rendering these fields depends on the recipient (else it can be shared)."""
    return any(_compile(source, name == "html")[1] for name, source in fields.items())


def render(fields: Mapping[str, str], context: Mapping[str, Any]) -> dict[str, str]:
    """Render each template field; any failure is one `RenderError` naming the field."""
    out: dict[str, str] = {}
    for name, source in fields.items():
        try:
            out[name] = _compile(source, name == "html")[0].render(context)
        except TemplateError as exc:
            raise RenderError(f"template {name}: {exc}") from None
        except Exception as exc:  # the template's own arithmetic or data, see RenderError
            raise RenderError(f"template {name}: {type(exc).__name__}: {exc}") from None
    return out
