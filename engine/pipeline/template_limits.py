"""Bounded work for category templates: operations, time and size.

Jinja's sandbox stops a template from reaching Python's internals and caps each
`range()`, but not the work a template does: `{{ 'x' * 10**7 }}` renders ten megabytes,
two nested loops over a `range(100000)` run 10^10 times, and `'x'.center(10**9)` asks
for a gigabyte. Here every field renders under

- an operation budget (`MAX_OPERATIONS`): each loop iteration, call, filter, attribute
  lookup and intercepted operator spends one;
- a time limit (`MAX_SECONDS`), checked at each operation;
- a size limit per field (`FIELD_CHARS`), checked for the output as it is produced and for
  every string or list an operator, concatenation, call or filter makes on the way;
- numeric arguments to calls and filters of at most `MAX_ARGUMENT` (widths, counts), and
  integer arithmetic of at most `MAX_INT_BITS` bits.

Going past any of them raises `Limited`, which fails the delivery with its message.
Loops and `~` concatenations are bounded by rewriting the parsed template (`bound`), the
rest through the sandbox's own hooks (`call`, `call_binop`, `getattr`, `getitem`).
"""

from __future__ import annotations

import contextvars
import math
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import ChainableUndefined, Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg, pass_context
from jinja2.visitor import NodeTransformer

MAX_OPERATIONS = 200_000
MAX_SECONDS = 2.0
MAX_ARGUMENT = 100_000
MAX_INT_BITS = 4096
# Characters a rendered field may have; the longest an intermediate value may be too.
FIELD_CHARS = {"title": 1_000, "subject": 1_000, "action_url": 4_000, "html": 500_000}
DEFAULT_CHARS = 100_000
# Filters whose numeric arguments size what they make (widths, padded batches).
SIZING_FILTERS = frozenset({"center", "indent", "batch", "slice", "wordwrap", "truncate"})
ITERATE = "__tidings_iterate__"
CONCAT = "__tidings_concat__"
PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


class Limited(SecurityError):
    """A template went past one of its limits."""


def field_limit(name: str) -> int:
    """The most characters a field (`title`, `body`, `html`, …) may render to."""
    return FIELD_CHARS.get(name, DEFAULT_CHARS)


@dataclass
class Budget:
    """What one field's render may still spend."""

    max_chars: int
    operations: int = MAX_OPERATIONS
    deadline: float = field(default_factory=lambda: time.monotonic() + MAX_SECONDS)

    def spend(self) -> None:
        self.operations -= 1
        if self.operations < 0:
            raise Limited(f"the template does too much work (over {MAX_OPERATIONS:,} operations)")
        if time.monotonic() > self.deadline:
            raise Limited(f"the template takes too long (over {MAX_SECONDS:g} s)")

    def check(self, value: Any) -> Any:
        """`value`, unless it is a string or list longer than a field may be."""
        if isinstance(value, str | list | tuple | bytes) and len(value) > self.max_chars:
            raise Limited(
                f"the template makes a value of {len(value):,} characters or items,"
                f" over the limit of {self.max_chars:,}"
            )
        return value


# The render under way; none while Jinja folds constants at compile time, when only sizes
# and arguments are checked.
_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "tidings_template_budget", default=None
)
_UNBOUNDED = Budget(max_chars=max(DEFAULT_CHARS, *FIELD_CHARS.values()))


def _current() -> Budget:
    budget = _budget.get()
    if budget is None:
        return _UNBOUNDED
    budget.spend()
    return budget


def _check_arguments(args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT:
            raise Limited(f"the template passes {value:,}, over the limit of {MAX_ARGUMENT:,}")


def _check_format(fmt: str) -> None:
    """Refuse a `str.format` string whose widths or precisions ask for too much."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # the call itself reports the malformed format
    for _, _, spec, _ in parsed:
        for number in re.findall(r"\d+", spec or ""):
            if int(number) > MAX_ARGUMENT:
                raise Limited(f"the template formats with a width of {int(number):,}")


def _check_printf(fmt: str, values: Any) -> None:
    """Refuse a `%` format whose widths or precisions ask for too much (a `*` takes its
    width from the values, so then they are checked too)."""
    for match in PRINTF.finditer(fmt):
        for group in match.groups():
            if group == "*":
                _check_arguments(values if isinstance(values, tuple) else (values,), {})
            elif group and int(group) > MAX_ARGUMENT:
                raise Limited(f"the template formats with a width of {int(group):,}")


def _iterate(iterable: Any) -> Iterator[Any]:
    """A loop's items, each spending one operation."""
    for item in iterable:
        budget = _budget.get()
        if budget is not None:
            budget.spend()
        yield item


def _limited_filter(filter_name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that spends the budget, takes no huge numbers and makes no huge value.

    It asks for the context, so Jinja never runs it at compile time, outside the budget.
    """
    kind = _PassArg.from_obj(func)

    @pass_context
    def limited(context: Context, *args: Any, **kwargs: Any) -> Any:
        budget = _current()
        if filter_name in SIZING_FILTERS:
            _check_arguments(args[1:], kwargs)
        if filter_name == "format" and args and isinstance(args[0], str):
            _check_printf(args[0], tuple(args[1:]))
        if kind is _PassArg.context:
            result = func(context, *args, **kwargs)
        elif kind is _PassArg.eval_context:
            result = func(context.eval_ctx, *args, **kwargs)
        elif kind is _PassArg.environment:
            result = func(context.environment, *args, **kwargs)
        else:
            result = func(*args, **kwargs)
        return budget.check(result)

    return limited


class _Bound(NodeTransformer):
    """Sends every loop's items and every `~` concatenation through the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _call(ITERATE, [node.iter], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _call(CONCAT, list(node.nodes), node.lineno)


def _call(name: str, args: list[Any], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.Name(name, "load", lineno=lineno), args, [], None, None, lineno=lineno)


def _ints(left: Any, right: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right))


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with every operation spending the current render's budget."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)  # pages of filler text on demand
        self.globals[ITERATE] = _iterate
        self.globals[CONCAT] = self._concat
        self.filters = {name: _limited_filter(name, f) for name, f in self.filters.items()}

    def bound(self, tree: nodes.Template) -> nodes.Template:
        """The parsed template, rewritten so its loops and concatenations are bounded."""
        rewritten = _Bound().visit(tree)
        assert isinstance(rewritten, nodes.Template)
        rewritten.set_environment(self)
        return rewritten

    def compile_bounded(self, source: str) -> Template:
        """A template from `source` whose rendering `bounded` keeps within the limits."""
        return self.from_string(self.bound(self.parse(source)))

    def _concat(self, *parts: Any) -> Any:
        budget = _current()
        total = sum(len(part) for part in parts if isinstance(part, str))
        if total > budget.max_chars:
            raise Limited(f"the template joins text over the limit of {budget.max_chars:,}")
        return (markup_join if self.autoescape else str_join)(parts)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _current()
        if operator == "**" and _ints(left, right):
            if right > 0 and abs(left) > 1 and right * math.log2(abs(left)) > MAX_INT_BITS:
                raise Limited(f"the template computes a number over {MAX_INT_BITS} bits")
        elif operator == "*":
            if _ints(left, right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise Limited(f"the template computes a number over {MAX_INT_BITS} bits")
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if sized and len(seq) * count > budget.max_chars:
                    raise Limited(
                        f"the template repeats a value to {len(seq) * count:,} characters"
                        f" or items, over the limit of {budget.max_chars:,}"
                    )
        elif operator == "+" and isinstance(left, str | list | tuple):
            if isinstance(right, str | list | tuple) and len(left) + len(right) > budget.max_chars:
                raise Limited(f"the template joins values over the limit of {budget.max_chars:,}")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        return budget.check(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _current()
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str) and getattr(method, "__name__", "") in ("format", "format_map"):
            _check_format(owner)
        elif isinstance(owner, str | bytes | list | tuple):  # 'x'.center(10**9), .zfill, …
            _check_arguments(args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return result if __obj is _iterate else budget.check(result)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _current()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _current()
        return super().getitem(obj, argument)


def bounded(template: Template, context: Mapping[str, Any], *, max_chars: int) -> str:
    """Render within the limits; `Limited` when the template goes past one."""
    token = _budget.set(Budget(max_chars=max_chars))
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > max_chars:
                raise Limited(f"the template renders over {max_chars:,} characters for this field")
            out.append(chunk)
        return "".join(out)
    finally:
        _budget.reset(token)


# For judging a template when its category is written, before any data exists.
LENIENT = BoundedSandbox(undefined=ChainableUndefined, autoescape=False)
LENIENT_HTML = BoundedSandbox(undefined=ChainableUndefined, autoescape=True)


def limit_problem(source: str, field_name: str) -> str | None:
    """Why a template would break its limits whatever the data, or None.

    Used when a category is written: the template renders with every name undefined but
    forgiving, and only a limit it breaks then (a constant `'x' * 10**7`, loops over
    constant ranges) is reported; what depends on the data is judged per delivery.
    """
    env = LENIENT_HTML if field_name == "html" else LENIENT
    try:
        bounded(env.compile_bounded(source), {}, max_chars=field_limit(field_name))
    except Limited as exc:
        return str(exc)
    except Exception:  # anything else depends on data the category does not know yet
        return None
    return None
