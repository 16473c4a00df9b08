"""Copy that mentions the reader renders per recipient; copy that does not renders once per
notification, channel and locale and is shared."""

from __future__ import annotations

from engine.pipeline.content import Composer
from engine.store.models import Category, Notification, Recipient


def _category(title: str) -> Category:
    return Category(
        key="promo.x",
        name="x",
        kind="promotional",
        priority="normal",
        channels=["inapp"],
        templates={"inapp": {"en": {"title": title, "body": "."}}},
    )


def test_reader_dependent_copy_renders_per_recipient_and_the_rest_is_shared() -> None:
    notification = Notification(id=1, category="promo.x", audience={"all": True}, data={})
    ada = Recipient(id="ada", name="Ada", locale="en", attributes={"level": 3})
    bo = Recipient(id="bo", name="Bo", locale="en", attributes={"level": 9})
    named = _category("{{ recipient.name }} at level {{ recipient.attributes.level }}")
    composer = Composer()
    first = composer.compose(notification, named, "inapp", ada, dict)
    second = composer.compose(notification, named, "inapp", bo, dict)
    assert (first.title, second.title) == ("Ada at level 3", "Bo at level 9")

    plain = _category("Weekly picks")
    composer = Composer()
    shared = composer.compose(notification, plain, "inapp", ada, dict)
    assert composer.compose(notification, plain, "inapp", bo, dict) is shared
