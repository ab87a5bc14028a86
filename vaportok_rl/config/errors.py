"""The error of the config layer: a recipe, override or dict that does not fit the config dataclasses."""

from __future__ import annotations

from vaportok_rl.errors import UserError

__all__ = ["ConfigError"]


class ConfigError(UserError):
    """A configuration (YAML recipe, CLI override or dict) that does not fit the config dataclasses."""
