"""What the recipient-page tests share: a phone-sized browser page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine.store.db import Database
from tests.preferences.pages.test_pages_http import seed


@pytest.fixture
def phone(browser: Any, db: Database) -> Iterator[Any]:
    """A 375-pixel-wide phone screen (Playwright `Page`), with the catalog and recipient
    `u-1` in place."""
    seed(db)
    context = browser.new_context(viewport={"width": 375, "height": 812}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
