"""The one base class of a user's mistake. Every error vaportok-rl raises for bad input or a bad environment
(a recipe key, a file, a plugin, an output folder, a head) derives from :class:`UserError` and names the file,
key or plugin, the value and what was expected; the command line prints it on one line and exits with status 2
(``vaportok_rl.cli``). Anything else escaping a command is a bug in vaportok-rl and keeps its traceback."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """A user's mistake, said in one line (a ValueError, so library callers may catch either)."""
