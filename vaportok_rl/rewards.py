"""Reward plugins: the public API for saying what a good truncation path is.

A reward plugin is any object with

    name: str                    # the metric key: rewards/{name}/mean
    needs: frozenset[str]        # what the rollout must compute for it; a subset of
                                 # {"reconstructions", "prior_correct"}; missing means none
    __call__(rollout) -> Tensor  # [B, G] float, one value per path of L decisions; higher is better
                                 # or [B, G, L], one value per clip decision (a reward that decomposes
                                 # over clips; its path value is the mean over L)

Subclassing :class:`Reward` is a convenience, not a requirement: plugins are checked by duck typing.
A plugin class is instantiated with the keyword arguments of its config entry, e.g.
``{"spec": "penalty", "kwargs": {"shape": "quadratic"}}``.

Where a plugin comes from (``spec``):

* ``"NAME"``: the file ``NAME.py`` in a search path, else in the built-in folder (so a file of the same
  name in your own folder overrides a built-in). The file holds exactly one reward class, or marks one
  with a module-level ``REWARD = ClassName``.
* ``"path/to/file.py"`` or ``"path/to/file.py:ClassName"``: a file; a relative path is looked up in the
  search paths, then the working directory.
* ``"package.module:ClassName"`` or ``"package.module.ClassName"``: an importable class.

The built-ins (``rewards/`` in the repository, shipped as ``vaportok_rl.builtin_rewards``) go through the
same file door as yours and use only this module's public names: read them as examples. Their shared helper
``reconstruction_mse(rollout)`` ([B, G, L], the MSE of each truncated reconstruction) is public too.

This module is the public face of three others, one concern each: ``reward_api`` (the contract: :class:`Reward`,
:class:`RewardError`, the checks), ``reward_loading`` (finding and loading plugins), ``reward_calling`` (calling
them: :func:`call_reward`, ``score``). Import from here.
"""

from __future__ import annotations

from vaportok_rl.reward_api import (
    Reward,
    RewardError,
    check_reward_output,
    describe,
    reconstruction_mse,
    required_needs,
    validate_reward,
)
from vaportok_rl.reward_calling import call_reward
from vaportok_rl.reward_loading import BUILTIN_PACKAGE, check_plugin_paths, list_rewards, load_reward
from vaportok_rl.rollout import NEEDS, Rollout

__all__ = [
    "BUILTIN_PACKAGE",
    "NEEDS",
    "Reward",
    "RewardError",
    "Rollout",
    "call_reward",
    "check_plugin_paths",
    "check_reward_output",
    "describe",
    "list_rewards",
    "load_reward",
    "reconstruction_mse",
    "required_needs",
    "validate_reward",
]
