"""Preferences: the store the planner reads and the pages recipients edit."""

from preferences.model import (
    Cap,
    CategoryPreference,
    Digest,
    EffectivePreferences,
    QuietHours,
)

__all__ = ["Cap", "CategoryPreference", "Digest", "EffectivePreferences", "QuietHours"]
