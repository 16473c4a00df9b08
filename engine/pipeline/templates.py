"""Sandboxed Jinja2 rendering of category templates, per channel and locale with fallback.

Every field renders within the limits of `engine.pipeline.template_limits` (operations, time,
size): a template that goes past one fails its delivery with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from jinja2 import (
    ChainableUndefined,
    StrictUndefined,
    Template,
    TemplateError,
    Undefined,
    UndefinedError,
    meta,
)
from jinja2.utils import missing

from engine import locales
from engine.pipeline.template_limits import BoundedSandbox, bounded, field_limit

SANDBOX = BoundedSandbox(undefined=StrictUndefined, autoescape=False)
HTML_SANDBOX = BoundedSandbox(undefined=StrictUndefined, autoescape=True)


class RenderError(Exception):
    """A template failed to render; the delivery fails with this message.

    Any exception a template raises counts, not only Jinja's: `{{ data.a / data.b }}`
    with `b: 0` raises `ZeroDivisionError`, the sandbox raises `OverflowError` for a
    too-large range, and arithmetic on mixed types `TypeError`. One bad template or one
    recipient's odd data fails that delivery, never its neighbours.
    """


@lru_cache(maxsize=4096)
def _compile(source: str, html: bool) -> tuple[Template, frozenset[str]]:
    """The template, and which of the per-reader names (`recipient`, `links`) it uses."""
    env = HTML_SANDBOX if html else SANDBOX
    tree = env.parse(source)
    personal = frozenset({"recipient", "links"} & meta.find_undeclared_variables(tree))
    return env.from_string(env.bound(tree)), personal


def pick_locale(
    templates: Mapping[str, Mapping[str, Any]], locale: str | None, default: str
) -> str | None:
    """The locale of the copy to use for a reader of `locale`: the best BCP 47 match
    (script and region, `engine.locales`), else the default's, else the first in order."""
    return locales.choose(locale, templates, default)


def uses_recipient(fields: Mapping[str, str]) -> bool:
    """Whether rendering these fields depends on the recipient (else it can be shared)."""
    return any(_compile(source, name == "html")[1] for name, source in fields.items())


def uses_links(fields: Mapping[str, str]) -> bool:
    """Whether these fields show the reader's signed page links (`links.…`): only then
    are they signed, three HMACs a recipient."""
    return any("links" in _compile(source, name == "html")[1] for name, source in fields.items())


def render(fields: Mapping[str, str], context: Mapping[str, Any]) -> dict[str, str]:
    """Render each template field; any failure is one `RenderError` naming the field."""
    out: dict[str, str] = {}
    for name, source in fields.items():
        try:
            template = _compile(source, name == "html")[0]
            out[name] = bounded(template, context, max_chars=field_limit(name))
        except TemplateError as exc:
            raise RenderError(f"template {name}: {exc}") from None
        except Exception as exc:  # the template's own arithmetic or data, see RenderError
            raise RenderError(f"template {name}: {type(exc).__name__}: {exc}") from None
    return out


class DataError(Exception):
    """A template cannot be rendered with a notification's `data`, whoever receives it.

    `field` is the data the template needs (`data.order.id`), or `category` for a name
    nothing defines. `overridden`: the template is a variant's own, not the category's.
    """

    def __init__(
        self, template: str, field: str, message: str, *, overridden: bool = False
    ) -> None:
        super().__init__(message)
        self.template = template
        self.field = field
        self.message = message
        self.overridden = overridden


class _MissingData(UndefinedError):
    """A name or key the data does not have was used (not just tested or defaulted)."""


_DATA: ContextVar[Any] = ContextVar("tidings_template_data")


def _path(root: Any, target: Any, prefix: str = "data", depth: int = 0) -> str | None:
    """Where `target` (an object inside the data) is, as `data.a.b.0`."""
    if target is root:
        return prefix
    if isinstance(root, Mapping):
        items: Any = root.items()
    elif isinstance(root, list | tuple):
        items = enumerate(root)
    else:
        return None
    for key, value in items:
        if depth < 8 and (found := _path(value, target, f"{prefix}.{key}", depth + 1)):
            return found
    return None


class _Strict(StrictUndefined):
    """StrictUndefined that says which data is missing (`data.order.id`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "exc": _MissingData})

    @property
    def _undefined_message(self) -> str:
        name, owner = self._undefined_name, self._undefined_obj
        if owner is None or isinstance(owner, type(missing)):  # a top-level name
            return str(name)
        where = _path(_DATA.get(None), owner)
        return f"{where}.{name}" if where else str(name)


class _Probe(BoundedSandbox):
    """Renders as for an unknown recipient: what depends on the recipient (`recipient.*`,
    `links.*`, `data.by_id[recipient.id]`) is left open, everything else is strict; within
    the same limits as a delivery, so no request's data makes the API work unboundedly."""

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, _Strict):  # looking inside data that is missing uses it
            obj._fail_with_undefined_error()
        if isinstance(argument, Undefined) or isinstance(obj, ChainableUndefined):
            return ChainableUndefined()
        return super().getitem(obj, argument)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, _Strict):
            obj._fail_with_undefined_error()
        if isinstance(obj, ChainableUndefined):
            return ChainableUndefined()
        return super().getattr(obj, attribute)


PROBE = _Probe(undefined=_Strict, autoescape=False)
HTML_PROBE = _Probe(undefined=_Strict, autoescape=True)


@lru_cache(maxsize=4096)
def _probe(source: str, html: bool) -> Template:
    return (HTML_PROBE if html else PROBE).compile_bounded(source)


def check_data(fields: Mapping[str, str], data: Mapping[str, Any]) -> None:
    """Render each template field against `data` for a recipient left open, with strict
    undefined; raises `DataError` for a variable the data lacks (or a name nothing
    defines), which would fail the notification for every recipient.

    A template that fails only for some recipients (`data.names[recipient.id]`) passes
    here and fails just those deliveries when they are rendered; so does any other error
    the data causes (`data.a / data.b` with `b: 0`), which the delivery then reports.
    """
    context = {"data": data, "recipient": ChainableUndefined(), "links": ChainableUndefined()}
    token = _DATA.set(data)
    try:
        for name, source in fields.items():
            html = name == "html"
            try:
                bounded(_probe(source, html), context, max_chars=field_limit(name))
            except _MissingData as exc:
                variable = str(exc.message)
                if variable.startswith("data"):
                    raise DataError(
                        name, variable, f"template {name} uses {variable}, which the data lacks"
                    ) from None
                raise DataError(
                    name, "category", f"template {name} uses {variable}, which is not defined"
                ) from None
            except Exception:  # arithmetic and the like: the delivery reports it
                pass
    finally:
        _DATA.reset(token)
