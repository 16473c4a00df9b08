"""The HTTP API (v1, JSON) and the application factory."""

from engine.api.app import create_app

__all__ = ["create_app"]
