"""Calling reward plugins, in one place: :func:`call_reward` (one plugin, with its protections) and :func:`score`
(every reward of a run on a rollout: rewards [B, G, R], or [B, G, L, R] per decision). The trainer, the held-out
evaluation, enumerated groups and the gym env all score through here. Axis letters: docs/design.md.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from typing import Any

import torch
from einops import repeat
from torch import Tensor

from vaportok_rl.reward_api import RewardError, check_reward_output
from vaportok_rl.rollout import Rollout

__all__ = ["call_reward", "score"]


def _rollout_tensors(rollout: Any) -> dict[str, Tensor]:
    """The tensors a plugin can reach on a rollout: its tensor fields, and those of its dataclass fields
    (``encoded.latents``, ``encoded.codes``), by dotted name."""
    found: dict[str, Tensor] = {}
    if not dataclasses.is_dataclass(rollout) or isinstance(rollout, type):
        return found
    for f in dataclasses.fields(rollout):
        value = getattr(rollout, f.name, None)
        if isinstance(value, Tensor):
            found[f.name] = value
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            found.update({f"{f.name}.{k}": v for k, v in _rollout_tensors(value).items()})
    return found


def _versions(tensors: dict[str, Tensor]) -> dict[str, int]:
    # inference tensors keep no version counter (and cannot be written outside inference mode anyway)
    return {name: t._version for name, t in tensors.items() if not t.is_inference()}


def _plugin_view(rollout: Any) -> Any:
    """A shallow copy of the rollout (and of its dataclass fields) for a plugin: reassigning an attribute
    (``rollout.keep = ...``) changes the copy only. No tensor is copied: the step pays nothing."""
    if not dataclasses.is_dataclass(rollout) or isinstance(rollout, type):
        return rollout
    view = copy.copy(rollout)  # not dataclasses.replace: that would re-run Rollout's checks (a device sync)
    for f in dataclasses.fields(view):
        value = getattr(view, f.name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            object.__setattr__(view, f.name, copy.copy(value))
    return view


def _plugin_where(plugin: Any) -> str:
    """'ClassName, path/to/file.py' of a plugin instance."""
    where = getattr(inspect.getmodule(type(plugin)), "__file__", None) or type(plugin).__module__
    return f"{type(plugin).__name__}, {where}"


def call_reward(label: str, plugin: Any, rollout: Rollout) -> Tensor:
    """The plugin's value on the rollout, checked ([B, G] or [B, G, L]); a plugin that raises (``sys.exit`` and
    any other BaseException but KeyboardInterrupt included), edits a rollout tensor in place, or breaks the output
    contract is a :class:`RewardError` naming its label, class and file.

    The plugin sees a shallow copy of the rollout, so reassigning its attributes does not reach the trainer, and
    every tensor's version counter is compared before and after the call, so an in-place edit (``rollout.keep +=
    1``) is caught without copying a tensor."""
    tensors = _rollout_tensors(rollout)
    before = _versions(tensors)
    try:
        value = plugin(_plugin_view(rollout))
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - a plugin's sys.exit() must not end the run silently
        detail = f"{type(error).__name__}: {error}"
        if isinstance(error, SystemExit):
            detail = f"SystemExit (sys.exit({error.code!r})); a reward returns a tensor, it must not exit"
        raise RewardError(f"reward {label!r} ({_plugin_where(plugin)}) raised {detail}") from error
    changed = [name for name, version in before.items() if tensors[name]._version != version]
    if changed:
        name = changed[0]
        raise RewardError(
            f"reward {label!r} ({_plugin_where(plugin)}): plugin modified rollout.{name} in place; clone it first "
            f"(rollout.{name}.clone()) - the rollout is shared with the GRPO update and the logs"
        )
    return check_reward_output(plugin, value, rollout.B, rollout.G, rollout.L)


@torch.no_grad()
def score(rewards: dict[str, Any], rollout: Rollout, credit: str = "path") -> Tensor:
    """Every reward on the rollout, each checked: [B, G, R] float32 for ``credit="path"`` (a per-clip reward
    [B, G, L] is averaged over its L clips), [B, G, L, R] for ``"decision"`` (a path reward is broadcast to each
    of its clips). A plugin that raises is reported as a :class:`~vaportok_rl.rewards.RewardError` naming its
    label, class and file."""
    L = rollout.L
    columns = []
    for label, plugin in rewards.items():
        value = call_reward(label, plugin, rollout).float().to(rollout.keep.device)
        if credit == "decision":
            value = value if value.ndim == 3 else repeat(value, "b g -> b g l", l=L)  # [B, G, L]
        elif value.ndim == 3:
            value = value.mean(-1)  # [B, G]
        columns.append(value)
    return torch.stack(columns, dim=-1)
