"""Request documents of the management API, validated with pydantic.

Every model forbids unknown fields, so a typo is a 422 naming the field rather than
a silently ignored setting.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from annotated_types import Ge, Le
from jinja2 import TemplateSyntaxError
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    RootModel,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    WithJsonSchema,
    model_validator,
)

from channels.base import CHANNEL_NAMES
from engine.errors import FieldError
from engine.pipeline.template_limits import limit_problem
from engine.pipeline.templates import SANDBOX
from engine.store.states import (
    DeliveryStatus,
    Engagement,
    EventStatus,
    NotificationStatus,
    Reason,
)
from engine.timeutil import iso, parse_duration
from preferences.model import WEEKDAYS, parse_hhmm

KINDS = ("transactional", "service", "promotional", "social")
PRIORITIES = ("critical", "high", "normal", "low")
TEMPLATE_FIELDS = ("title", "body", "subject", "text", "html", "action_url")
DIGEST_FIELDS = ("title", "body", "html")
LOCALE = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
# Durations are stored in 32-bit SQL integers.
MAX_DURATION = 2**31 - 1
# Row ids and cursors in URLs: ASCII digits only (`str.isdigit()` also passes '²', which
# `int()` refuses), and at most 18 of them, so every one fits a signed 64-bit SQL integer.
ID_PATTERN = r"^[0-9]{1,18}$"
_ID = re.compile(ID_PATTERN)
# `data` is stored as JSON and handed to templates and webhooks inside other documents.
MAX_DATA_DEPTH = 32
# Beyond this, the JSON codec that stores documents refuses them.
MAX_BODY_DEPTH = 250
INT64 = (-(2**63), 2**63 - 1)
# Template sources; the largest field (html) is itself capped at 200,000 characters.
MAX_TEMPLATE_CHARS = 200_000


def row_id(raw: str | None) -> int | None:
    """A row id or cursor as given in a URL, or None when it is not one.

    The one parser for ids from paths, query strings and forms: 1 to 18 ASCII digits.
    """
    if raw is None or not _ID.fullmatch(raw):
        return None
    return int(raw)


def json_problem(value: Any, *, max_depth: int, path: str = "") -> tuple[str, str] | None:
    """Where a parsed JSON value cannot be stored as it is, and why: `(dotted path, reason)`.

    Refused: NUL characters (PostgreSQL text refuses them), lone surrogates (not UTF-8),
    integers outside signed 64 bits, numbers no double holds, and nesting deeper than
    `max_depth`.
    """
    pending: list[tuple[str, Any, int]] = [(path, value, 0)]
    while pending:
        where, item, depth = pending.pop()
        if isinstance(item, str):
            if reason := _text_problem(item):
                return where or "body", reason
        elif isinstance(item, int) and not isinstance(item, bool):
            if not INT64[0] <= item <= INT64[1]:
                return where or "body", "integers are limited to signed 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return where or "body", "numbers are limited to 64-bit floating point"
        elif isinstance(item, dict | list):
            if depth >= max_depth:  # named by its outermost field, not a path of `max_depth`
                outer = path or where.split(".", 1)[0] or "body"
                return outer, f"nested more than {max_depth} levels deep"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                here = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and (reason := _text_problem(key)):
                    return here, f"a key: {reason}"
                pending.append((here, child, depth + 1))
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "text cannot contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text cannot contain lone surrogates (\\ud800-\\udfff)"
    return None


def _storable_data(value: dict[str, Any]) -> dict[str, Any]:
    if problem := json_problem(value, max_depth=MAX_DATA_DEPTH, path="data"):
        raise FieldError(*problem)
    return value


def _duration(value: Any) -> int:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError("a duration is a string like '90m' or a number of seconds")
    return parse_duration(value)


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError("must be longer than zero")
    if value > MAX_DURATION:
        raise ValueError("must be shorter than 68 years")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as 'America'
        raise ValueError(f"{value!r} is not an IANA time zone like 'Asia/Shanghai'") from None
    return value


def _utc(value: datetime) -> datetime:
    # SQLite keeps a timestamp's wall time and drops its offset: store UTC only.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the timestamp is out of range") from None


def _hhmm(value: str) -> str:
    parse_hhmm(value)
    return value


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("lists each entry once")
    return values


Duration = Annotated[int, BeforeValidator(_duration), AfterValidator(_positive)]
ChannelName = Literal["inapp", "email", "push", "sms", "webhook", "log"]
# The channels a recipient switches on and off (the log channel is the platform's own).
UserChannelName = Literal["inapp", "email", "push", "sms", "webhook"]
TimeZone = Annotated[str, AfterValidator(_timezone)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
TimeOfDay = Annotated[str, AfterValidator(_hhmm)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Locale = Annotated[str, Field(pattern=LOCALE, max_length=16)]
Key = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]

assert set(get_args(ChannelName)) == set(CHANNEL_NAMES)
assert set(get_args(UserChannelName)) == set(CHANNEL_NAMES) - {"log"}
assert set(get_args(Weekday)) == set(WEEKDAYS)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CapIn(Strict):
    """At most `count` per `per`."""

    count: StrictInt = Field(ge=1, le=1_000_000)
    per: Duration


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


class QuietHoursIn(Strict):
    enabled: StrictBool | None = None
    start: TimeOfDay | None = None
    end: TimeOfDay | None = None
    timezone: TimeZone | None = None
    days: Annotated[list[Weekday], AfterValidator(_unique)] | None = None


class DigestIn(Strict):
    enabled: StrictBool | None = None
    at: TimeOfDay | None = None


class CategoryPreferenceIn(Strict):
    enabled: StrictBool | None = None
    channels: dict[ChannelName, StrictBool] | None = None
    caps: list[CapIn] | None = Field(default=None, max_length=10)


class PreferencesIn(Strict):
    """`PUT /v1/recipients/{id}/preferences`; keys left out keep their value, a null puts
    one back to the platform default. What is written reads back as written."""

    channels: dict[UserChannelName, StrictBool] | None = None
    categories: dict[str, CategoryPreferenceIn] | None = None
    caps: list[CapIn] | None = Field(default=None, max_length=10)
    quiet_hours: QuietHoursIn | None = None
    paused_until: UtcDatetime | None = None
    digest: DigestIn | None = None
    unsubscribed: StrictBool | None = None


InterestTag = Annotated[str, Field(min_length=1, max_length=100)]


def _attribute_number(value: Any) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    raise ValueError("a number")


def _attribute_value(value: Any) -> bool | int | float | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > 1000:
            raise ValueError("at most 1000 characters")
        return value
    try:
        return _attribute_number(value)
    except ValueError:
        raise ValueError("a number, a text or true/false") from None


def _attribute_bound(value: Any) -> int | float | str:
    if isinstance(value, str):
        if len(value) > 1000:
            raise ValueError("at most 1000 characters")
        return value
    try:
        return _attribute_number(value)
    except ValueError:
        raise ValueError("a number or a text") from None


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


class SegmentAudience(Strict):
    segment: SegmentIn


class EveryoneAudience(Strict):
    all: Literal[True]


# A topic recipients follow: a card, a game, a brand (`card.genshin-monthly`).
Topic = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


class TopicPath(Strict):
    key: Topic


class TopicIn(Strict):
    """`PUT /v1/topics/{key}`: what a topic is called, one text for every reader or one
    per locale; a reader sees the best match for their locale (`engine.locales`), the
    default locale's otherwise. A topic nobody named shows by its key."""

    name: CategoryName
    default_locale: Locale = "en"


class TopicAudience(Strict):
    """Every recipient following `topic` when the notification is planned."""

    topic: Topic


def _audience_kind(value: Any) -> str | None:
    # Which form of `to` this is, so an error names the field inside that form.
    if isinstance(value, list):
        return "@ids"
    if isinstance(value, SegmentAudience) or (isinstance(value, dict) and "segment" in value):
        return "@segment"
    if isinstance(value, EveryoneAudience) or (isinstance(value, dict) and "all" in value):
        return "@all"
    if isinstance(value, TopicAudience) or (isinstance(value, dict) and "topic" in value):
        return "@topic"
    return None


def _entry_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "@id"
    if isinstance(value, dict | RecipientBulkItem):
        return "@recipient"
    return None


def _entry_id(entry: str | RecipientBulkItem) -> str:
    return entry if isinstance(entry, str) else entry.id


def _unique_recipients(entries: list[str | RecipientBulkItem]) -> list[str | RecipientBulkItem]:
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if (rid := _entry_id(entry)) in seen:
            raise FieldError(str(index), f"recipient {rid!r} is listed twice")
        seen.add(rid)
    return entries


# A recipient by id, or as an object (its id, contact fields and attributes) created or
# updated in the same transaction as the notification.
RecipientEntry = Annotated[
    Annotated[Key, Tag("@id")] | Annotated[RecipientBulkItem, Tag("@recipient")],
    Discriminator(
        _entry_kind,
        custom_error_type="recipient",
        custom_error_message="a recipient id, or an object with its id and contact fields",
    ),
]
RecipientIds = Annotated[
    list[RecipientEntry],
    AfterValidator(_unique_recipients),
    Field(min_length=1, max_length=10_000),
]
# Locations inside `to` carry the form's tag (`@ids`, `@segment`, `@all`); the API's error
# names leave it out (`to.segment.tier.0`).
Audience = Annotated[
    Annotated[RecipientIds, Tag("@ids")]
    | Annotated[SegmentAudience, Tag("@segment")]
    | Annotated[EveryoneAudience, Tag("@all")]
    | Annotated[TopicAudience, Tag("@topic")],
    Discriminator(
        _audience_kind,
        custom_error_type="audience",
        custom_error_message=(
            "to is a list of recipient ids or objects, "
            '{"segment": {...}}, {"topic": "..."} or {"all": true}'
        ),
    ),
]


class ContentIn(Strict):
    """Literal copy instead of the category's templates."""

    title: str = Field(min_length=1, max_length=500)
    body: str = Field(default="", max_length=20_000)
    html: str | None = Field(default=None, max_length=200_000)
    action_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")


Templates = dict[
    ChannelName, dict[Locale, dict[str, Annotated[str, Field(max_length=MAX_TEMPLATE_CHARS)]]]
]
VariantName = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")]


class VariantIn(Strict):
    """One variant of an A/B test: a name, a weight, and what it changes — literal
    `content`, `data` merged over the notification's, `templates` over the category's
    (same shape), and `send_after`, a delay before its deliveries go (a send-time test)."""

    name: VariantName
    weight: StrictInt = Field(default=1, ge=1, le=10_000)
    content: ContentIn | None = None
    data: Annotated[dict[str, Any], AfterValidator(_storable_data)] | None = None
    templates: Templates | None = None
    send_after: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> VariantIn:
        if self.templates:
            check_templates(self.templates)
        return self


def _distinct_variants(values: list[VariantIn]) -> list[VariantIn]:
    seen: set[str] = set()
    for index, variant in enumerate(values):
        if variant.name in seen:
            raise FieldError(f"{index}.name", f"variant {variant.name!r} is named twice")
        seen.add(variant.name)
    return values


Variants = Annotated[list[VariantIn], AfterValidator(_distinct_variants)]


class AbTestIn(Strict):
    """A test slice first: `slice` of the audience (chosen by a hash of the test and the
    recipient, so the same on every retry) is split among the variants by weight; the rest
    wait (`scheduled/ab_test`) until `wait` after the send time, then all get the variant
    with the best `metric` among the slice (a tie, or no data: the heaviest variant, then
    the first listed)."""

    slice: float = Field(gt=0, lt=1, description="The share of the audience tested, 0.1 = 10%.")
    metric: Literal["open_rate", "click_rate", "conversion_rate"] = Field(
        description="What the winner is chosen on, over the slice's deliveries."
    )
    wait: Duration = Field(description="How long the slice runs before the winner is chosen.")


class NotificationIn(Strict):
    """`POST /v1/notifications`."""

    category: Key
    to: Audience
    data: Annotated[dict[str, Any], AfterValidator(_storable_data)] = Field(default_factory=dict)
    content: ContentIn | None = None
    channels: Annotated[list[ChannelName], AfterValidator(_unique)] | None = Field(
        default=None, min_length=1
    )
    send_at: UtcDatetime | Literal["best"] | None = Field(
        default=None,
        description='A time, or "best": each recipient at the local hour they most often '
        "open or read, learned from their history (by `latest_at` at the latest).",
    )
    latest_at: UtcDatetime | None = Field(
        default=None, description='With send_at "best": no delivery waits past this.'
    )
    expires_at: UtcDatetime | None = None
    collapse_key: str | None = Field(default=None, min_length=1, max_length=200)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    variants: Variants | None = Field(
        default=None,
        min_length=2,
        max_length=10,
        description="An A/B test: each recipient gets one variant, by a hash of the test "
        "and their id, in proportion to the weights; recorded on each delivery.",
    )
    ab_test: AbTestIn | None = Field(
        default=None,
        description="With variants: test them on a slice of the audience first, then send "
        "the winner to the rest.",
    )

    @property
    def send_time(self) -> datetime | None:
        """`send_at` when it is a time (not "best")."""
        return self.send_at if isinstance(self.send_at, datetime) else None

    @property
    def recipient_ids(self) -> list[str]:
        """The ids in `to`, whether given as ids or as recipient objects."""
        return [_entry_id(entry) for entry in self.to] if isinstance(self.to, list) else []

    @property
    def upserts(self) -> list[RecipientBulkItem]:
        """Recipients given as objects in `to`: created or updated with the notification."""
        if not isinstance(self.to, list):
            return []
        return [entry for entry in self.to if isinstance(entry, RecipientBulkItem)]

    @model_validator(mode="after")
    def _check(self) -> NotificationIn:
        if self.latest_at is not None and self.send_at != "best":
            raise FieldError("latest_at", 'latest_at goes with send_at "best"')
        if self.send_time and self.expires_at and self.expires_at <= self.send_time:
            raise FieldError("expires_at", "expires_at must be after send_at")
        if self.ab_test is not None:
            if not self.variants:
                raise FieldError("ab_test", "an A/B test slice needs variants")
            if self.send_at == "best":
                raise FieldError("ab_test", 'an A/B test slice cannot go with send_at "best"')
            try:
                (self.send_time or datetime.now(UTC)) + timedelta(seconds=self.ab_test.wait)
            except OverflowError:
                raise FieldError("ab_test.wait", "the winner would be chosen after 9999") from None
            for index, variant in enumerate(self.variants):
                if variant.send_after and variant.send_after >= self.ab_test.wait:
                    raise FieldError(
                        f"variants.{index}.send_after",
                        "a variant of a test slice must go before the winner is chosen "
                        "(send_after shorter than ab_test.wait)",
                    )
        return self


class BatchIn(Strict):
    """`POST /v1/notifications/batch`."""

    notifications: list[NotificationIn] = Field(min_length=1)


class EventIn(Strict):
    """`POST /v1/deliveries/{id}/events`."""

    type: Engagement


class FeedbackIn(Strict):
    """`POST /v1/deliveries/{id}/feedback`."""

    rating: Literal["up", "meh", "down"]
    comment: str | None = Field(default=None, max_length=2000)


# Path, query and header parameters -------------------------------------------------------

RowId = Annotated[str, Field(pattern=ID_PATTERN, examples=["42"])]


def _ascii_number(value: Any) -> Any:
    """Query numbers as ASCII digits only (`int()` also takes '+5', ' 5' and '٣')."""
    if isinstance(value, str):
        parsed = row_id(value)
        if parsed is None:
            raise ValueError("a whole number in ASCII digits")
        return parsed
    return value


Limit = Annotated[int, Ge(1), Le(1000), BeforeValidator(_ascii_number)]


class Query(BaseModel):
    """Query parameters: unknown ones are ignored, as browsers and proxies add their own."""

    model_config = ConfigDict(extra="ignore")


class KeyPath(Strict):
    key: Key


class RecipientPath(Strict):
    id: Key


class FollowPath(Strict):
    id: Key
    topic: Topic


class FollowIn(Strict):
    """One follow of `POST /v1/follows/bulk`."""

    recipient: Key
    topic: Topic


class FollowsBulkIn(Strict):
    """`POST /v1/follows/bulk`: at most `TIDINGS_MAX_BULK_RECIPIENTS` (1,000) follows a call."""

    follows: list[FollowIn] = Field(min_length=1)


class RowPath(Strict):
    """A notification or delivery id; one that is not an id is a 404."""

    not_found_when_invalid: ClassVar[bool] = True
    id: RowId


class NotificationPage(Query):
    """Deliveries of a notification, oldest first, after the cursor `after`."""

    limit: Limit | None = Field(default=None, description="Page size; default 100.")
    after: RowId | None = Field(default=None, description="The `next` of the previous page.")


class ReceiptPage(Query):
    """A recipient's receipts or inbox, newest first, before the cursor `before`."""

    limit: Limit | None = Field(default=None, description="Page size; default 100.")
    before: RowId | None = Field(default=None, description="The `next` of the previous page.")


class StatsQuery(Query):
    """`GET /v1/stats`: grouping and time range (ISO 8601 with an offset)."""

    by: Literal["category", "channel", "campaign", "variant"] = "category"
    category: Key | None = Field(default=None, description="Only this category.")
    campaign: RowId | None = Field(default=None, description="Only this campaign's steps.")
    notification: RowId | None = Field(default=None, description="Only this notification.")
    since: AwareDatetime | None = Field(
        default=None, alias="from", description="Default: 7 days before `to`."
    )
    until: AwareDatetime | None = Field(default=None, alias="to", description="Default: now.")


class IdempotencyHeaders(BaseModel):
    """A retry with the same key answers the first request's notification."""

    model_config = ConfigDict(extra="ignore")

    idempotency_key: str | None = Field(
        default=None, alias="Idempotency-Key", min_length=1, max_length=200
    )


# Answers ---------------------------------------------------------------------------------


def _stamp(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def _id_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# An answer reads the domain's values as they are (an aware or naive UTC `datetime`, an
# integer row id) and writes the API's text for them (ISO 8601 with offset, digits).
Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}), BeforeValidator(_stamp)
]
IdText = Annotated[str, Field(pattern=ID_PATTERN), BeforeValidator(_id_text)]


class Out(BaseModel):
    """An answer document: exactly these fields, or the answer is a 500 (a bug)."""

    model_config = ConfigDict(extra="forbid")


class LineErrorOut(Out):
    """One refused line of an import: its number (1 is the first, a CSV header included),
    the field in the API's terms (`line` for a line that does not parse) and why."""

    line: int
    field: str
    message: str


class ImportedOut(Out):
    """An import that landed whole."""

    upserted: int = Field(description="Recipients created or updated.")
    lines: int = Field(description="The number of the last line holding a recipient.")


class ErrorDetail(Out):
    code: str
    message: str
    field: str | None
    unknown: list[str] | None = Field(
        default=None, description="`unknown_recipients`: every recipient id not found."
    )
    refused: int | None = Field(
        default=None, description="`invalid_lines`: how many lines of an import are refused."
    )
    lines: list[LineErrorOut] | None = Field(
        default=None,
        description="`invalid_lines`: the first 100 refused lines of an import, in order.",
    )


class ErrorOut(Out):
    """Every error: `{"error": {"code", "message", "field"}}`."""

    error: ErrorDetail


class CapOut(Out):
    count: int
    per: str = Field(description="A duration like '1h' or '7d'.")


class CategoryOut(Out):
    key: str
    # As written: one text for every reader, or one per locale.
    name: str | dict[str, str]
    description: str | dict[str, str] | None
    kind: str
    priority: str
    channels: list[str]
    required: bool
    caps: list[CapOut]
    caps_by_activity: dict[str, list[CapOut]]
    over_cap: str | None
    collapse_window: str | None
    escalate_after: str | None
    global_cap: bool
    default_locale: str
    templates: dict[str, dict[str, dict[str, str]]]
    digest_templates: dict[str, dict[str, dict[str, str]]]
    created_at: Timestamp | None
    updated_at: Timestamp | None


class CategoryList(Out):
    items: list[CategoryOut]


class RecipientOut(Out):
    id: str
    name: str | None
    attributes: dict[str, Any]
    email: str | None
    phone: str | None
    push_tokens: list[str]
    webhook_url: str | None
    timezone: str | None
    locale: str | None
    annual_spend: float
    last_active_at: Timestamp | None
    tags: list[str]
    tier: str = Field(description="Derived from annual_spend: whale, dolphin or minnow.")
    activity: str = Field(description="Derived from last_active_at: active, sleeping, churned.")
    created_at: Timestamp | None
    updated_at: Timestamp | None


class UpsertedOut(Out):
    upserted: int


class FollowOut(Out):
    topic: str
    created_at: Timestamp | None


class TopicOut(Out):
    key: str
    # As written: one text for every reader, or one per locale.
    name: str | dict[str, str]
    default_locale: str
    created_at: Timestamp | None
    updated_at: Timestamp | None


class TopicDeleted(Out):
    key: str
    deleted: bool


class FollowList(Out):
    items: list[FollowOut] = Field(description="The recipient's follows, by topic.")


class UnfollowedOut(Out):
    topic: str
    followed: Literal[False]


class FollowedOut(Out):
    followed: int = Field(description="How many of the follows are new.")


class ErasedOut(Out):
    id: str
    erased: bool


class CategoryChoiceOut(Out):
    enabled: bool
    required: bool
    channels: dict[str, bool]
    caps: list[CapOut]
    default_caps: list[CapOut]


class QuietHoursOut(Out):
    enabled: bool
    start: str
    end: str
    timezone: str | None
    days: list[str]


class DigestOut(Out):
    enabled: bool
    at: str


class PreferencesOut(Out):
    channels: dict[str, bool]
    categories: dict[str, CategoryChoiceOut]
    caps: list[CapOut]
    quiet_hours: QuietHoursOut
    paused_until: Timestamp | None
    digest: DigestOut
    unsubscribed: bool


class AcceptedOut(Out):
    id: IdText
    status: Literal[NotificationStatus.ACCEPTED]
    recipients: int | None = Field(description="null for a segment or everyone.")


class BatchAcceptedOut(Out):
    items: list[AcceptedOut]


class EventOut(Out):
    status: EventStatus
    at: Timestamp | None
    reason: Reason | None = None
    detail: str | None = None


class DeliveryOut(Out):
    id: IdText
    notification_id: IdText
    recipient: str
    channel: str
    category: str
    status: DeliveryStatus
    reason: Reason | None
    due_at: Timestamp | None
    variant: str | None = Field(default=None, description="Its A/B test variant, if any.")
    error: str | None
    attempts: int
    provider_id: str | None = Field(description="The channel's id for the message (Message-ID).")
    read_at: Timestamp | None
    created_at: Timestamp | None
    events: list[EventOut]


class AbTestOut(Out):
    """An A/B test slice: its settings, when the winner is chosen, and once chosen the
    winner and the slice's figures it was chosen on (per variant: `sent` and the metric's
    count and rate, over deliveries, as `GET /v1/stats?by=variant` counts them)."""

    slice: float
    metric: str
    wait: int = Field(description="Seconds.")
    decide_at: Timestamp | None
    decided_at: Timestamp | None
    winner: str | None
    rule: str | None = Field(
        description="`best`: the best metric; `tie`: tied best, the heaviest then the first "
        "listed won; `no_data`: nothing of the slice was sent, the same rule chose."
    )
    figures: dict[str, dict[str, Any]] | None


class NotificationOut(Out):
    id: IdText
    category: str
    status: NotificationStatus
    recipients: int
    send_at: Timestamp | None
    expires_at: Timestamp | None
    collapse_key: str | None
    created_at: Timestamp | None
    cancelled_at: Timestamp | None = Field(
        default=None, description="When `POST /v1/notifications/{id}/cancel` cancelled it."
    )
    counts: dict[DeliveryStatus, int]
    ab_test: AbTestOut | None = Field(default=None, description="Its A/B test slice, if any.")
    deliveries: list[DeliveryOut]
    next: IdText | None = Field(description="Pass as `after` for the next page.")


class DeliveryPage(Out):
    items: list[DeliveryOut]
    next: IdText | None = Field(description="Pass as `before` for the next page.")


class InboxItemOut(Out):
    delivery_id: IdText
    notification_id: IdText
    category: str
    title: str | None
    body: str | None
    action_url: str | None
    read: bool
    feedback: str | None
    created_at: Timestamp | None


class InboxOut(Out):
    unread: int
    items: list[InboxItemOut]
    next: IdText | None = Field(description="Pass as `before` for the next page.")


class EventRecordedOut(Out):
    id: IdText
    status: DeliveryStatus
    cancelled: list[IdText] = Field(description="Pending copies on other channels, cancelled.")


class FeedbackOut(Out):
    delivery_id: IdText
    rating: str
    comment: str | None
    cap_lowered_to: CapOut | None


class FeedbackCounts(Out):
    up: int
    meh: int
    down: int


class StatsRow(Out):
    category: str | None = None
    channel: str | None = None
    campaign: str | None = Field(default=None, description="By campaign: the campaign's id.")
    campaign_name: str | None = Field(
        default=None, description="By campaign: the campaign's name (null when it has none)."
    )
    variant: str | None = None
    deliveries: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    converted: int
    suppressed: int
    suppressed_by_reason: dict[str, int] = Field(description="Suppressed deliveries per reason.")
    failed: int
    scheduled: int
    feedback: FeedbackCounts
    unsubscribed: int = Field(
        description="Reached deliveries whose own unsubscribe link (the email's"
        " `List-Unsubscribe`, or `links.unsubscribe` in its copy) was used to unsubscribe."
        " An unsubscribe made elsewhere (the API, the preference center, a link minted"
        " without a message) counts against no message."
    )
    complained: int = Field(
        description="Reached deliveries that drew a complaint: rated 👎, or unsubscribed"
        " from through their own unsubscribe link; a delivery that did both counts once."
    )
    open_rate: float | None
    click_rate: float | None
    conversion_rate: float | None
    unsubscribe_rate: float | None = Field(description="`unsubscribed` per sent.")
    complaint_rate: float | None = Field(
        description="`complained` per sent: 👎 ratings and unsubscribes through the"
        " message's own link, each delivery once."
    )
    feedback_rates: dict[str, float | None] = Field(description="👍/😕/👎 per sent.")
    ci95: dict[str, list[float]] | None = Field(
        default=None,
        description="By variant: each rate's 95% Wilson interval [low, high].",
    )


class StatsOut(Out):
    by: str
    since: Timestamp = Field(alias="from")
    until: Timestamp = Field(alias="to")
    items: list[StatsRow]
    significant: dict[str, bool] | None = Field(
        default=None,
        description="By variant: whether the variants differ in each rate (chi-squared, p < 0.05).",
    )
    p_values: dict[str, float | None] | None = Field(
        default=None, description="By variant: the chi-squared test's p-value per rate."
    )
    ab_test: AbTestOut | None = Field(
        default=None,
        description="By variant of one notification with a test slice: its winner and the "
        "slice's figures when it was chosen (the rows count the rest's deliveries too, "
        "under the winner's name).",
    )


class RevokedOut(Out):
    id: str
    revoked: bool
    links_version: int


class KeyOut(Out):
    """An API key: never its secret, not even its hash."""

    id: int
    name: str
    scopes: list[str]
    created_at: Timestamp | None
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None


class KeyList(Out):
    items: list[KeyOut]


class HealthOut(Out):
    status: str


class ReadyOut(Out):
    status: str
    checks: dict[str, str]
    processes: dict[str, Any] | None = Field(
        default=None, description="What the supervisors run; information, not a condition."
    )


class DocumentOut(RootModel[dict[str, Any]]):
    """A JSON document (the OpenAPI description)."""


class PrometheusText(RootModel[str]):
    """Prometheus text exposition format."""
