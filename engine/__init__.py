"""Tidings engine: API, pipeline, actors, scheduler and CLI."""

from engine.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
