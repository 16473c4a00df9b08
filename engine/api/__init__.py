"""The HTTP API (v1, JSON) and the application factory.

`create_app` is imported on first use: the command line reaches single handlers' helpers
(`engine.api.imports`) without loading every route (and SciPy, for the A/B statistics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from engine.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
