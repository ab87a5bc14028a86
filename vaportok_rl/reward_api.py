"""The reward plugin contract: the :class:`Reward` base class, :class:`RewardError`, the checks a plugin and its
output must pass, and the helpers the built-in plugins share. Public through :mod:`vaportok_rl.rewards` (its
docstring is the contract); plugins import from there, not from here. Axis letters: docs/design.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from vaportok_rl.errors import UserError
from vaportok_rl.rollout import NEEDS, Rollout

__all__ = [
    "Reward",
    "RewardError",
    "check_reward_output",
    "describe",
    "reconstruction_mse",
    "required_needs",
    "validate_reward",
]


class RewardError(UserError):
    """A reward plugin could not be found, loaded, or broke its contract. The message names the plugin."""


class Reward:
    """Optional base class for reward plugins.

    Set ``name`` (and ``needs`` if the reward reads ``rollout.reconstructions`` or
    ``rollout.prior_correct``), take your options as keyword arguments in ``__init__`` and validate them
    there, and return a float tensor [B, G] from ``__call__`` -- or [B, G, L] when the reward decomposes over
    clips: then with ``grpo.credit: decision`` each clip's decision gets its own advantage, and with path
    credit the path's value is the mean over its L clips. Useful fields of the rollout:
    ``keep`` [B, G, L] (1..K), ``num_latents`` K, ``videos`` [B, L, C, T, H, W], ``sc``/``tc`` [B, L],
    ``reconstructions`` [B, G, L, C, T, H, W], ``prior_correct`` [B, L, K].
    """

    name: str = ""
    needs: frozenset[str] = frozenset()

    def __call__(self, rollout: Rollout) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__}.__call__: return a float tensor [B, G]")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, needs={sorted(self.needs)})"


# ---------------------------------------------------------------------------------------------- helpers


def reconstruction_mse(rollout: Rollout, *, clamp: bool = True) -> Tensor:
    """The mean squared error of every truncated reconstruction against its original clip, over channels, frames
    and pixels: [B, G, L] float32 (needs ``"reconstructions"``). ``clamp`` first clips the reconstructions to
    [0, 1], the originals' range. Turn it into dB with :func:`vaportok_rl.metrics.psnr_from_mse`."""
    reconstructions = rollout.reconstructions.float()  # [B, G, L, C, T, H, W]
    if clamp:
        reconstructions = reconstructions.clamp(0.0, 1.0)
    target = rollout.videos.unsqueeze(1).float()  # [B, 1, L, C, T, H, W], shared by the G paths
    return (reconstructions - target).pow(2).flatten(3).mean(-1)  # [B, G, L]


# ---------------------------------------------------------------------------------------------- describing


def _source_file(obj: Any) -> str | None:
    cls = obj if isinstance(obj, type) else type(obj)
    try:
        return inspect.getfile(cls)
    except (TypeError, OSError):  # classes defined in C or in an unregistered module
        return None


def describe(reward: Any) -> str:
    """'reward plugin 'name' (path/to/file.py)', for error messages."""
    name = getattr(reward, "name", None)
    where = _source_file(reward) or type(reward).__module__
    return f"reward plugin {name!r} ({type(reward).__name__} in {where})"


# ---------------------------------------------------------------------------------------------- validation


def validate_reward(reward: Any, spec: str | None = None) -> Any:
    """Check a plugin before training starts; returns it unchanged or raises :class:`RewardError`."""
    where = f"{spec!r} ({_source_file(reward) or type(reward).__module__})" if spec else describe(reward)
    if isinstance(reward, type):
        raise RewardError(f"reward {where}: got the class {reward.__name__}, not an instance; instantiate it")
    name = getattr(reward, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise RewardError(
            f"reward {where}: missing or empty `name` (got {name!r}); set a class attribute, e.g. "
            f'`name = "my_reward"`; it becomes the metric key rewards/<name>/mean'
        )
    if any(c.isspace() for c in name) or "/" in name:
        raise RewardError(f"reward {where}: name {name!r} must not contain whitespace or '/' (it is a metric key)")
    if not callable(reward):
        raise RewardError(f"reward {where}: not callable; define `__call__(self, rollout) -> Tensor[B, G]`")
    try:
        inspect.signature(reward).bind(None)
    except TypeError:
        raise RewardError(
            f"reward {where}: `__call__` must accept exactly one argument, the rollout; "
            f"got signature {inspect.signature(reward)}"
        ) from None
    except ValueError:  # no signature available (builtins): nothing to check
        pass
    needs = getattr(reward, "needs", frozenset())
    if isinstance(needs, str) or not isinstance(needs, Iterable):
        raise RewardError(
            f"reward {where}: `needs` must be a set of strings, got {needs!r}; e.g. "
            f'`needs = frozenset({{"reconstructions"}})`'
        )
    unknown = set(needs) - NEEDS
    if unknown:
        raise RewardError(
            f"reward {where}: unknown needs {sorted(map(str, unknown))}; expected a subset of {sorted(NEEDS)}"
        )
    return reward


def required_needs(rewards: Iterable[Any]) -> frozenset[str]:
    """The union of the plugins' ``needs``: what :func:`~vaportok_rl.rollout.collect_rollout` must compute."""
    return frozenset().union(*(frozenset(getattr(r, "needs", ())) for r in rewards))


def check_reward_output(reward: Any, value: Any, B: int, G: int, L: int | None = None) -> Tensor:
    """Check what a plugin returned for a rollout with B videos × G paths (× L clips, when given, a per-clip
    [B, G, L] output is accepted too); returns it or raises."""
    if not isinstance(value, Tensor):
        raise RewardError(
            f"{describe(reward)}: expected a torch.Tensor [B, G] = [{B}, {G}], got {type(value).__name__}"
        )
    if tuple(value.shape) != (B, G) and (L is None or tuple(value.shape) != (B, G, L)):
        per_clip = "" if L is None else f" or [B, G, L] = [{B}, {G}, {L}] (one value per clip decision)"
        raise RewardError(
            f"{describe(reward)}: expected shape [B, G] = [{B}, {G}] (one value per path){per_clip}, "
            f"got {tuple(value.shape)}"
        )
    if not value.is_floating_point():
        raise RewardError(
            f"{describe(reward)}: expected a floating-point tensor, got dtype {value.dtype}; add .float()"
        )
    bad = ~torch.isfinite(value)
    if bad.any():
        first = tuple(int(i) for i in bad.nonzero()[0])
        where = ", ".join(f"{axis}={i}" for axis, i in zip("bgl", first, strict=False))
        raise RewardError(
            f"{describe(reward)}: expected finite values, got {int(bad.sum())} NaN/inf "
            f"(first at [{where}]: {value[first].item()})"
        )
    return value
