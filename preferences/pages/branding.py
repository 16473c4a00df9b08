"""The platform's own face on the recipient's pages: name, logo, accent colour and a
support link, from settings (`TIDINGS_BRAND_*`).

A recipient knows the shop, not the engine behind its notifications, so every page
(preference center, inbox, unsubscribe, refusals) shows the platform's name and logo,
its colour and where to ask for help. The colour reaches the pages as a small
stylesheet of its own (`/assets/brand.css`): the pages' Content-Security-Policy allows
no inline style. A logo on another origin is allowed by that policy for images only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from engine.settings import Settings

# The pages' own accent, which brand.css leaves as it is.
DEFAULT_COLOR = "#4f46e5"


@dataclass(frozen=True)
class Brand:
    """What the pages show of the platform."""

    name: str
    logo_url: str | None
    color: str
    support_url: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Brand:
        return cls(
            name=settings.brand_name,
            logo_url=settings.brand_logo_url,
            color=settings.brand_color.lower(),
            support_url=settings.brand_support_url,
        )

    @property
    def image_source(self) -> str | None:
        """The CSP `img-src` entry the logo needs beyond 'self' and data:, if any."""
        if self.logo_url and self.logo_url.startswith("https://"):
            parts = urlsplit(self.logo_url)
            return f"https://{parts.netloc}"
        return None

    @property
    def ink(self) -> str:
        """Text colour on the accent: dark on a light accent, white on a dark one
        (WCAG relative luminance)."""
        channels = [int(self.color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
        return "#111111" if luminance > 0.45 else "#ffffff"


def stylesheet(brand: Brand) -> bytes:
    """CSS custom properties that put the brand's colour on buttons, tabs and marks."""
    if brand.color == DEFAULT_COLOR:
        return b"/* the pages' own colours */\n"
    c = brand.color
    return (
        f":root {{ --accent: {c}; --accent-strong: color-mix(in srgb, {c} 82%, black);"
        f" --accent-ink: {brand.ink}; --accent-soft: color-mix(in srgb, {c} 12%, white); }}\n"
        "@media (prefers-color-scheme: dark) {\n"
        f"  :root {{ --accent: color-mix(in srgb, {c} 75%, white);"
        f" --accent-strong: color-mix(in srgb, {c} 60%, white);"
        f" --accent-soft: color-mix(in srgb, {c} 25%, black); --accent-ink: #111111; }}\n"
        "}\n"
        f".brand-mark {{ background: radial-gradient(circle at 50% 38%, #fff 0 5px,"
        f" transparent 5.5px), {c}; }}\n"
    ).encode()


def asset(brand: Brand) -> tuple[bytes, str, str]:
    """brand.css as the pages serve their assets: (content, type, versioned URL)."""
    data = stylesheet(brand)
    version = hashlib.sha256(data).hexdigest()[:10]
    return data, "text/css", f"/assets/brand.css?v={version}"
