"""Errors a training run raises: each names the file, key, plugin or step, and the CLI prints it on one line."""

from __future__ import annotations

from vaportok_rl.config import ConfigError

__all__ = ["Diverged", "TrainingError", "TrainingInterrupted"]


class TrainingError(ConfigError):
    """A run that cannot start or go on because of its inputs or its environment (unwritable output folder, full
    disk, an unreadable video, a reward plugin raising): the message names the file, plugin and step. The CLI
    prints it on one line and exits with status 2; what was computed before (checkpoints, metrics) is kept."""


class Diverged(ArithmeticError):
    """A non-finite loss, gradient or weight (caught in run_training, re-raised as a TrainingError)."""


class TrainingInterrupted(TrainingError):
    """Ctrl-C: the message says where the run stands and how to resume (the CLI exits with status 130)."""
