"""How a sweep words what goes wrong: :class:`SweepError` (the CLI exits with 2), the one-line reason of an error,
and the default way a recovery is reported (a RuntimeWarning)."""

from __future__ import annotations

import warnings

from vaportok_rl.config import ConfigError


class SweepError(ConfigError):
    """A sweep recipe that cannot run (bad recipe, bad run config, stale run folder); the CLI exits with 2."""


def reason(error: BaseException) -> str:
    """The first line of an error's message (its strerror for an OSError), or its type's name."""
    text = (getattr(error, "strerror", None) or str(error) or type(error).__name__).strip().splitlines()
    return text[0] if text else type(error).__name__


def warn_recovery(message: str) -> None:
    """The default ``warn`` of a sweep: one RuntimeWarning per recovery (a finished run trained again, a cache
    recomputed)."""
    warnings.warn(message, RuntimeWarning, stacklevel=3)
