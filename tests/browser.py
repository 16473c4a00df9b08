"""A real browser for the page tests: Debian's headless Chromium, driven by Playwright.

Playwright never downloads a browser here; the project's setup installs Debian's
`chromium`. A test module sets `pytestmark = NEEDS_CHROMIUM` and asks for the `browser`
fixture (defined in `tests/conftest.py`, one Chromium per module).
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NEEDS_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install Debian's chromium package"
    ),
]
