"""Request documents of the catalog: categories and their templates, recipients and their
attributes, segments and their attribute conditions, topics and follows."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from jinja2 import TemplateSyntaxError
from pydantic import (
    AfterValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    StrictBool,
    StrictFloat,
    Tag,
    WithJsonSchema,
    model_validator,
)

from engine.errors import FieldError
from engine.pipeline.template_limits import limit_problem
from engine.pipeline.templates import SANDBOX
from engine.schemas.common import (
    DIGEST_FIELDS,
    EMAIL,
    MAX_TEMPLATE_CHARS,
    PHONE,
    TEMPLATE_FIELDS,
    CapIn,
    ChannelName,
    Duration,
    Key,
    Locale,
    Strict,
    TimeZone,
    UtcDatetime,
    _unique,
    json_problem,
)


def _text_kind(value: Any) -> str:
    return "@by_locale" if isinstance(value, dict) else "@text"


Label = Annotated[str, Field(min_length=1, max_length=200)]


Blurb = Annotated[str, Field(min_length=1, max_length=1000)]


# A text given once for every reader, or per locale (`{"en": …, "zh-CN": …}`).
CategoryName = Annotated[
    Annotated[Label, Tag("@text")]
    | Annotated[dict[Locale, Label], Field(min_length=1), Tag("@by_locale")],
    Discriminator(_text_kind),
]


CategoryDescription = Annotated[
    Annotated[Blurb, Tag("@text")]
    | Annotated[dict[Locale, Blurb], Field(min_length=1), Tag("@by_locale")],
    Discriminator(_text_kind),
]


class CategoryIn(Strict):
    """`PUT /v1/categories/{key}`. `name` and `description` are one text for every
    reader or one per locale; a reader sees the best match for their locale
    (`engine.locales`), the default locale's otherwise."""

    name: CategoryName
    description: CategoryDescription | None = None
    kind: Literal["transactional", "service", "promotional", "social"]
    priority: Literal["critical", "high", "normal", "low"]
    channels: Annotated[list[ChannelName], AfterValidator(_unique)] = Field(min_length=1)
    required: StrictBool = False
    caps: list[CapIn] = Field(default_factory=list, max_length=10)
    caps_by_activity: (
        dict[Literal["active", "sleeping", "churned"], Annotated[list[CapIn], Field(max_length=10)]]
        | None
    ) = Field(
        default=None,
        description="More caps by the recipient's activity, on top of `caps`: "
        '{"active": [{"count": 2, "per": "1w"}], "churned": [{"count": 1, "per": "30d"}]}.',
    )
    over_cap: Literal["drop", "defer"] | None = None
    collapse_window: Duration | None = None
    escalate_after: Duration | None = None
    global_cap: StrictBool | None = None
    default_locale: Locale = "en"
    templates: dict[
        ChannelName, dict[Locale, dict[str, Annotated[str, Field(max_length=MAX_TEMPLATE_CHARS)]]]
    ] = Field(default_factory=dict)
    digest_templates: dict[
        ChannelName, dict[Locale, dict[str, Annotated[str, Field(max_length=MAX_TEMPLATE_CHARS)]]]
    ] = Field(
        default_factory=dict,
        description="The digest message this category's held copies go out in, per channel "
        "and locale, instead of the built-in one: `title` (an email's subject), `body` and "
        "`html`, using `count`, `items` (each `title`, `url`, `category`), `inbox_url` and "
        "`recipient`. A locale without one gets the built-in digest.",
    )

    @model_validator(mode="after")
    def _check(self) -> CategoryIn:
        if self.over_cap is None:
            self.over_cap = "defer" if self.kind in ("transactional", "service") else "drop"
        check_templates(self.templates)
        check_templates(self.digest_templates, field="digest_templates", names=DIGEST_FIELDS)
        return self


def check_templates(
    templates: Mapping[Any, Mapping[str, Mapping[str, str]]],
    *,
    field: str = "templates",
    names: tuple[str, ...] = TEMPLATE_FIELDS,
) -> None:
    """Every template field known (one of `names`), parsing in the sandbox and within the
    limits; raises `FieldError` naming `<field>.<channel>.<locale>.<name>`."""
    for channel, locales in templates.items():
        for locale, fields in locales.items():
            for name, source in fields.items():
                where = f"{field}.{channel}.{locale}.{name}"
                if name not in names:
                    raise FieldError(where, f"unknown template field; use {names}")
                try:
                    SANDBOX.parse(source)
                except TemplateSyntaxError as exc:
                    raise FieldError(where, f"template error: {exc.message}") from None
                except RecursionError:
                    raise FieldError(where, "the template is nested too deeply") from None
                if problem := limit_problem(source, name):
                    raise FieldError(where, f"template error: {problem}")


ATTRIBUTE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


MAX_ATTRIBUTES = 50


MAX_ATTRIBUTES_BYTES = 4096


MAX_ATTRIBUTES_DEPTH = 4


def _attributes(value: dict[str, Any]) -> dict[str, Any]:
    for key in value:
        if not ATTRIBUTE_KEY.match(key):
            raise FieldError(
                f"attributes.{key}",
                "an attribute name is 1-64 letters, digits or _ and starts with a letter or _",
            )
    if len(value) > MAX_ATTRIBUTES:
        raise FieldError("attributes", f"at most {MAX_ATTRIBUTES} attributes")
    if problem := json_problem(value, max_depth=MAX_ATTRIBUTES_DEPTH, path="attributes"):
        raise FieldError(*problem)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_ATTRIBUTES_BYTES:
        raise FieldError(
            "attributes",
            f"attributes take at most {MAX_ATTRIBUTES_BYTES} bytes as JSON; these take {size}",
        )
    return value


class RecipientIn(Strict):
    """`PUT /v1/recipients/{id}`; keys left out keep their value, null clears one.

    `attributes` is replaced whole when given: at most 50 names (letters, digits, `_`), 4 KB
    as JSON, nested at most 4 levels.
    """

    name: str | None = Field(default=None, min_length=1, max_length=200)
    attributes: Annotated[dict[str, Any], AfterValidator(_attributes)] | None = None
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = None
    push_tokens: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = Field(
        default=None, max_length=20
    )
    webhook_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")
    timezone: TimeZone | None = None
    locale: Locale | None = None
    annual_spend: StrictFloat | None = Field(default=None, ge=0, allow_inf_nan=False)
    last_active_at: UtcDatetime | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None, max_length=200
    )

    @model_validator(mode="after")
    def _check(self) -> RecipientIn:
        if self.email is not None and not EMAIL.match(self.email):
            raise FieldError("email", f"{self.email!r} is not an email address")
        if self.phone is not None and not PHONE.match(self.phone):
            raise FieldError("phone", "a phone number is E.164, like +8613800000000")
        return self


class RecipientPatch(RecipientIn):
    """`PATCH /v1/recipients/{id}`, a JSON merge patch (RFC 7386): keys left out keep their
    value and null clears one, as with `PUT`, and `attributes` is merged into the stored
    ones rather than replacing them: a name given a value sets it (objects merge the same
    way, level by level), a name given null is removed. The result must keep the bounds
    of `attributes` (a 422 naming `attributes` otherwise)."""

    attributes: dict[str, Any] | None = None


def merged_attributes(stored: dict[str, Any] | None, patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` applied to `stored` attributes by RFC 7386, checked against their bounds;
    raises `FieldError` naming `attributes` (or `attributes.<name>`)."""
    result = merge_patch(stored or {}, patch)
    assert isinstance(result, dict)
    return _attributes(result)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386's MergePatch: an object merges into an object key by key (null removes
    a key), anything else replaces the target."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class RecipientBulkItem(RecipientIn):
    """One entry of `POST /v1/recipients/bulk`."""

    id: Key


class RecipientsBulkIn(Strict):
    """`POST /v1/recipients/bulk`: at most `TIDINGS_MAX_BULK_RECIPIENTS` (1,000) a call."""

    recipients: list[RecipientBulkItem]


InterestTag = Annotated[str, Field(min_length=1, max_length=100)]


def _attribute_number(value: Any) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    raise ValueError("a number")


def _attribute_scalar(value: Any, expected: str) -> int | float | str:
    """A text (at most 1,000 characters) or a finite number; else `expected` as the error."""
    if isinstance(value, str):
        if len(value) > 1000:
            raise ValueError("at most 1000 characters")
        return value
    try:
        return _attribute_number(value)
    except ValueError:
        raise ValueError(expected) from None


def _attribute_value(value: Any) -> bool | int | float | str:
    if isinstance(value, bool):
        return value
    return _attribute_scalar(value, "a number, a text or true/false")


def _attribute_bound(value: Any) -> int | float | str:
    return _attribute_scalar(value, "a number or a text")


# One error per field, named without pydantic's union branches (`level.gt`, not `level.gt.int`).
AttributeBound = Annotated[
    int | float | str,
    PlainValidator(_attribute_bound),
    WithJsonSchema({"type": ["number", "string"]}),
]


AttributeValue = Annotated[
    bool | int | float | str,
    PlainValidator(_attribute_value),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]


class AttributeCondition(Strict):
    """One attribute's condition in a segment: `eq` a value, `in` a list of values, or a
    range (`gt`, `gte`, `lt`, `lte`, any of them) of numbers or of texts. Values match
    their own JSON type only: `12` matches the number 12 (or 12.0), never the text "12"
    nor `true`. A range of numbers matches numbers; a range of texts matches texts,
    compared character by character (Unicode code points), so ISO 8601 dates and times
    written alike compare in time order (`{"gte": "2026-01-01"}`). A recipient without the
    attribute matches none."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    eq: AttributeValue | None = None
    in_: list[AttributeValue] | None = Field(default=None, alias="in", min_length=1, max_length=100)
    gt: AttributeBound | None = None
    gte: AttributeBound | None = None
    lt: AttributeBound | None = None
    lte: AttributeBound | None = None

    @model_validator(mode="after")
    def _check(self) -> AttributeCondition:
        given = self.model_dump(exclude_none=True)
        ranged = {"gt", "gte", "lt", "lte"} & set(given)
        forms = ("eq" in given) + ("in_" in given) + bool(ranged)
        if forms != 1:
            raise ValueError("give one of eq, in, or a range (gt, gte, lt, lte)")
        if len({isinstance(given[op], str) for op in ranged}) > 1:
            raise ValueError("a range's bounds are all numbers or all texts")
        return self

    def document(self) -> dict[str, Any]:
        """As stored with the notification: `{"eq": …}`, `{"in": […]}` or the bounds."""
        return self.model_dump(exclude_none=True, by_alias=True)


def _attribute_conditions(value: dict[str, AttributeCondition]) -> dict[str, AttributeCondition]:
    for key in value:
        if not ATTRIBUTE_KEY.match(key):
            raise FieldError(key, "an attribute name is 1-64 letters, digits or _")
    return value


class SegmentIn(Strict):
    """A segment: recipients matching every condition given (`engine.catalog.segments`).

    `tier` and `activity` list the values any of which will do; `tags_any` needs one of
    its tags, `tags_all` all of them; `attributes` holds a condition per attribute of the
    recipient's own (`AttributeCondition`), every one of which must hold. Each list has
    at least one entry, and a segment at least one condition: everyone is
    `{"all": true}`, not an empty segment.
    """

    tier: list[Literal["whale", "dolphin", "minnow"]] | None = Field(default=None, min_length=1)
    activity: list[Literal["active", "sleeping", "churned"]] | None = Field(
        default=None, min_length=1
    )
    tags_any: list[InterestTag] | None = Field(default=None, min_length=1, max_length=100)
    tags_all: list[InterestTag] | None = Field(default=None, min_length=1, max_length=100)
    attributes: (
        Annotated[dict[str, AttributeCondition], AfterValidator(_attribute_conditions)] | None
    ) = Field(default=None, min_length=1, max_length=20)

    @model_validator(mode="after")
    def _check(self) -> SegmentIn:
        if not self.model_dump(exclude_none=True):
            raise FieldError(
                "to.segment",
                "a segment needs at least one condition (tier, activity, tags_any, "
                'tags_all, attributes); to reach everyone send to {"all": true}',
            )
        return self

    def document(self) -> dict[str, Any]:
        """The segment as stored with the notification (`engine.catalog.segments`)."""
        out = self.model_dump(exclude_none=True, exclude={"attributes"})
        if self.attributes:
            out["attributes"] = {k: c.document() for k, c in self.attributes.items()}
        return out


# A topic recipients follow: a card, a game, a brand (`card.genshin-monthly`).
Topic = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


class TopicIn(Strict):
    """`PUT /v1/topics/{key}`: what a topic is called, one text for every reader or one
    per locale; a reader sees the best match for their locale (`engine.locales`), the
    default locale's otherwise. A topic nobody named shows by its key."""

    name: CategoryName
    default_locale: Locale = "en"


class FollowIn(Strict):
    """One follow of `POST /v1/follows/bulk`."""

    recipient: Key
    topic: Topic


class FollowsBulkIn(Strict):
    """`POST /v1/follows/bulk`: at most `TIDINGS_MAX_BULK_RECIPIENTS` (1,000) follows a call."""

    follows: list[FollowIn] = Field(min_length=1)
