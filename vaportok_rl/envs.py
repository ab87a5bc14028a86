"""A gymnasium environment for truncation decisions: ``vaportok_rl/Taildrop-v0``.

One episode is one video of L clips, seen through a frozen tokenizer. At step l the agent observes clip l's
latent tokens and chooses how many of them to keep; after the L-th decision the episode terminates::

    reset(seed) ──► draw a video [L, C, T, H, W] ──encode once──► latents [L, K, D]
    step l:  observation = latents[l]  (Box [K, D], float32)
             action a ∈ Discrete(K)    keep k_l = a + 1 tokens of clip l (the taildrop head's logit index)
             reward                    see "Rewards" below
    terminated = (l == L - 1); truncated is always False

``info`` at reset: ``clip`` (0, the clip observed), its ``sc`` / ``tc`` (spatial / temporal complexity). At a
step: ``clip`` (the clip this step decided), ``keep`` (its k), its ``sc`` / ``tc``; whenever a reward is paid,
``rewards`` (each plugin's raw value, by label); at the last step ``keep_path`` (the L keep counts) and
``mean_keep``.

Use it with ``import vaportok_rl.envs`` (which registers the id) and ::

    env = gymnasium.make("vaportok_rl/Taildrop-v0", tokenizer="default", data="textures", clips_per_video=4)

or, without the import, ``gymnasium.make("vaportok_rl.envs:vaportok_rl/Taildrop-v0", ...)``.

Observation. The current clip's quantized latents ``[K, D]``, exactly what the taildrop head reads, so a head
acts in the env with ``head(torch.from_numpy(obs)[None]).argmax(-1)`` (and that index *is* the action). Latents
of a VQ tokenizer are bounded, so the Box is ``[-observation_bound, observation_bound]`` (default 1000); a
tokenizer whose latents leave it is reported as an error rather than clipped. The clip index is in ``info``.

Rewards. The reward plugins (``docs/rewards.md``) score a whole *path* of L decisions ([B, G] from a rollout of
B videos × G paths × L clips). Two ways to turn that into per-step rewards (``reward_mode``):

``"episode"`` (default)
    0 on the first L - 1 steps and Σ_i w_i r_i(path) at the last step, with the path = this episode's L keep
    counts as one rollout with B = G = 1. The return of an episode is then exactly the weighted reward the GRPO
    trainer scores a path with, for every plugin (including ones that do not decompose over clips). Credit
    assignment over the L steps is left to the agent, as in GRPO, which also sees only path-level rewards.
``"clip"``
    After step l, Σ_i w_i r_i of the single-clip path (clip l alone, L = 1). Dense, but only a decomposition of
    the episode reward for plugins that are sums or means over clips: for the built-in efficiency,
    reconstruction and generation (means over clips) the episode return is L × their path reward; for penalty
    (a sum) it equals it; plugins that look across clips (e.g. temporal consistency at clip boundaries) lose
    those terms.

The rewards are *raw* weighted sums: there is no group of paths to normalise within (the trainer's default
``normalize_then_sum`` divides each reward by its spread within the group), so choose weights for the rewards'
own scales (reconstruction is -MSE, ~1e-2; efficiency lies in [0, 1)). Batch-level rewards such as diversity
are always 0 here (one video, B = 1), so the default reward set leaves it out: efficiency, penalty,
reconstruction and generation, weight 1 each.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from vaportok_rl.complexity import complexity
from vaportok_rl.data import SOURCES, VideoFolder, load_videos
from vaportok_rl.reward_calling import score
from vaportok_rl.reward_loading import resolve_rewards
from vaportok_rl.rewards import required_needs
from vaportok_rl.rollout import Rollout, decode_paths, encode_videos
from vaportok_rl.tokenizer.default import load_tokenizer_spec
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer

__all__ = ["DEFAULT_ENV_REWARDS", "ENV_ID", "REWARD_MODES", "TaildropEnv"]

ENV_ID = "vaportok_rl/Taildrop-v0"
REWARD_MODES = ("episode", "clip")
DEFAULT_ENV_REWARDS: dict[str, float] = {"efficiency": 1.0, "penalty": 1.0, "reconstruction": 1.0, "generation": 1.0}
"""The training defaults without diversity, which compares videos of a batch and is always 0 for one video."""

VideoSource = str | os.PathLike | Tensor | Callable[[int], Tensor]


def _resolve_tokenizer(tokenizer: FrozenTokenizer | str) -> FrozenTokenizer:
    if isinstance(tokenizer, str | os.PathLike):  # "default", a file/folder, "file.py:factory"
        return load_tokenizer_spec(str(tokenizer))
    if not isinstance(tokenizer, FrozenTokenizer):
        raise TypeError(
            f"tokenizer: expected a FrozenTokenizer or a spec string ('default', a weights folder, "
            f"'file.py:factory'), got {type(tokenizer).__name__}"
        )
    return tokenizer


def _default_device(tokenizer: FrozenTokenizer) -> torch.device | str:
    """Where the tokenizer's parameters live, else the CPU."""
    module = tokenizer if isinstance(tokenizer, torch.nn.Module) else None
    parameter = next(iter(module.parameters()), None) if module is not None else None
    return parameter.device if parameter is not None else "cpu"


def _reward_entry(label: str, value: Any) -> tuple[Any, float]:
    """(entry, weight) of one reward given as a weight, a {spec, weight, kwargs} mapping or a plugin instance: the
    entry is what :func:`~vaportok_rl.reward_loading.resolve_rewards` takes, ``(spec, kwargs)`` or the plugin."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        entry, weight = (label, {}), float(value)
    elif isinstance(value, Mapping):
        unknown = set(value) - {"spec", "weight", "kwargs"}
        if unknown:
            raise ValueError(f"rewards.{label}: unknown keys {sorted(unknown)}; expected spec, weight, kwargs")
        entry = (value.get("spec") or label, dict(value.get("kwargs") or {}))
        weight = float(value.get("weight", 1.0))
    elif callable(value):  # an already-built plugin instance
        entry, weight = value, 1.0
    else:
        raise TypeError(
            f"rewards.{label}: expected a weight, a {{spec, weight, kwargs}} mapping or a reward plugin, got {value!r}"
        )
    if not np.isfinite(weight):
        raise ValueError(f"rewards.{label}: expected a finite weight, got {weight}")
    return entry, weight


def _resolve_rewards(rewards: Any, plugin_paths: Sequence[str | os.PathLike]) -> dict[str, tuple[Any, float]]:
    """{label: (plugin, weight)} from {label: weight | {spec, weight, kwargs} | plugin} or a list of specs, the
    plugins resolved as the trainer resolves a recipe's (:func:`~vaportok_rl.reward_loading.resolve_rewards`)."""
    if rewards is None:
        rewards = DEFAULT_ENV_REWARDS
    if isinstance(rewards, str) or not isinstance(rewards, Mapping | Sequence):
        raise TypeError(
            f"rewards: expected a mapping {{label: weight | {{spec, weight, kwargs}}}} or a list of "
            f"specs, got {rewards!r}"
        )
    items = rewards.items() if isinstance(rewards, Mapping) else [(spec, 1.0) for spec in rewards]
    entries, weights = {}, {}
    for label, value in items:
        if value is not None:  # None: dropped, as in a recipe
            entries[str(label)], weights[str(label)] = _reward_entry(str(label), value)
    if not entries:
        raise ValueError("rewards: expected at least one reward")
    plugins = resolve_rewards(entries, plugin_paths)
    return {label: (plugin, weights[label]) for label, plugin in plugins.items()}


class TaildropEnv(gym.Env):
    """Choose, clip after clip, how many latent tokens of a video a frozen tokenizer keeps (module docstring).

    Args:
        tokenizer: a :class:`~vaportok_rl.tokenizer.protocol.FrozenTokenizer`, or a spec string: ``"default"``, a
            built-in tokenizer's weights file or folder, ``"path/to/file.py:factory"``.
        data: where episodes' videos come from: ``"synthetic"``, ``"textures"``, a folder of video files, a tensor
            ``[M, L, C, T, H, W]`` of videos to draw from, or a callable ``seed -> [L, C, T, H, W]``.
        clips_per_video: L, the number of steps per episode.
        rewards: ``{label: weight}``, ``{label: {"spec", "weight", "kwargs"}}`` (as in a training recipe), a list
            of specs (weight 1), or plugin instances as values; default :data:`DEFAULT_ENV_REWARDS`.
        plugin_paths: folders searched first for rewards given by short name.
        reward_mode: ``"episode"`` (path reward at the last step) or ``"clip"`` (per-clip rewards); see above.
        split: image split of the ``"textures"`` source (``"all"``, ``"train"``, ``"test"``).
        observation_bound: the observation Box is ``[-bound, bound]``; latents outside it are an error.
        device: where the tokenizer runs (default: its parameters' device, else the CPU).
        render_mode: only ``None`` (nothing to render).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        tokenizer: FrozenTokenizer | str = "default",
        data: VideoSource = "synthetic",
        clips_per_video: int = 4,
        rewards: Any = None,
        plugin_paths: Sequence[str | os.PathLike] = (),
        reward_mode: str = "episode",
        split: str = "all",
        observation_bound: float = 1000.0,
        device: str | torch.device | None = None,
        render_mode: str | None = None,
    ):
        super().__init__()
        if render_mode is not None:
            raise ValueError(f"render_mode: TaildropEnv renders nothing, expected None, got {render_mode!r}")
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode: expected one of {REWARD_MODES}, got {reward_mode!r}")
        if isinstance(clips_per_video, bool) or not isinstance(clips_per_video, int) or clips_per_video < 1:
            raise ValueError(f"clips_per_video: expected a positive integer, got {clips_per_video!r}")
        if not (isinstance(observation_bound, int | float) and 0 < observation_bound < np.finfo(np.float32).max):
            raise ValueError(f"observation_bound: expected a positive finite float32 value, got {observation_bound!r}")
        self.render_mode = None
        self.tokenizer = _resolve_tokenizer(tokenizer)
        self.rewards = _resolve_rewards(rewards, plugin_paths)
        self.needs = required_needs(plugin for plugin, _ in self.rewards.values())
        self.reward_mode = reward_mode
        self.L = clips_per_video
        self.K, self.D = int(self.tokenizer.num_latents), int(self.tokenizer.latent_dim)
        self.clip_shape = tuple(int(s) for s in self.tokenizer.clip_shape)
        self.split = split
        self.observation_bound = float(observation_bound)
        self.device = torch.device(_default_device(self.tokenizer) if device is None else device)
        self.data, self._folder = self._check_data(data)

        self.observation_space = spaces.Box(
            low=-self.observation_bound, high=self.observation_bound, shape=(self.K, self.D), dtype=np.float32
        )
        self.action_space = spaces.Discrete(self.K)
        self._episode: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------------------------ data
    def _check_data(self, data: VideoSource) -> tuple[Any, Any]:
        C, T, H, W = self.clip_shape
        if isinstance(data, Tensor):
            if data.ndim != 6 or tuple(data.shape[1:]) != (self.L, *self.clip_shape) or len(data) == 0:
                raise ValueError(
                    f"data: expected a tensor of videos [M, L, C, T, H, W] = [M, {self.L}, "
                    f"{', '.join(map(str, self.clip_shape))}], got {tuple(data.shape)}"
                )
            return data.detach().float().cpu(), None
        if callable(data):
            return data, None
        if isinstance(data, str | os.PathLike):
            if C != 3 or H != W:
                raise ValueError(
                    f"data {str(data)!r}: the built-in video sources give square RGB clips, but the "
                    f"tokenizer's clip_shape is {self.clip_shape}; pass a tensor or a callable instead"
                )
            if str(data) in SOURCES:
                return str(data), None
            if not Path(data).is_dir():
                raise ValueError(
                    f"data: expected 'synthetic', 'textures', a folder of videos, a tensor or a "
                    f"callable, got {str(data)!r}"
                )
            folder = VideoFolder(str(data), clips_per_video=self.L, frames=T, size=H)
            if len(folder) == 0:
                raise ValueError(f"data: the folder {data} holds no video files")
            return str(data), folder
        raise TypeError(f"data: expected a source name, a folder, a tensor or a callable, got {type(data).__name__}")

    def _draw_video(self) -> Tensor:
        """[1, L, C, T, H, W] in [0, 1], chosen with self.np_random only."""
        C, T, H, W = self.clip_shape
        if isinstance(self.data, Tensor):
            video = self.data[int(self.np_random.integers(len(self.data)))]
        elif self._folder is not None:
            video = self._folder[int(self.np_random.integers(len(self._folder)))]
        elif isinstance(self.data, str):
            seed = int(self.np_random.integers(2**31 - 1))
            video = load_videos(self.data, 1, self.L, seed=seed, frames=T, size=H, split=self.split)[0]
        else:
            video = self.data(int(self.np_random.integers(2**31 - 1)))
            if not isinstance(video, Tensor) or tuple(video.shape) != (self.L, *self.clip_shape):
                raise ValueError(
                    f"data callable: expected a tensor [L, C, T, H, W] = [{self.L}, "
                    f"{', '.join(map(str, self.clip_shape))}], got "
                    f"{tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__}"
                )
        return video.float().unsqueeze(0).to(self.device)

    # ------------------------------------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        videos = self._draw_video()  # [1, L, C, T, H, W]
        encoded = encode_videos(self.tokenizer, videos)  # N = L clips
        latents = encoded.latents.detach().float()
        worst = latents.abs().max().item()
        if not worst <= self.observation_bound:
            raise ValueError(
                f"TaildropEnv: the tokenizer's latents reach |{worst:.4g}|, outside the observation Box "
                f"[-{self.observation_bound:g}, {self.observation_bound:g}]; pass a larger "
                f"observation_bound"
            )
        with torch.no_grad():
            sc, tc = complexity(videos)  # [1, L] each
            prior = self.tokenizer.prior_correct(encoded).unsqueeze(0) if "prior_correct" in self.needs else None
        self._episode = {
            "videos": videos,
            "encoded": encoded,
            "latents": latents.cpu(),
            "sc": sc,
            "tc": tc,
            "prior_correct": prior,
            "keep": [],
            "done": False,
        }
        return self._observation(0), self._info(0)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        episode = self._episode
        if episode is None:
            raise RuntimeError("TaildropEnv.step: call reset() before step()")
        if episode["done"]:
            raise RuntimeError("TaildropEnv.step: the episode has terminated; call reset()")
        a = np.asarray(action)
        if a.shape != () or not np.issubdtype(a.dtype, np.integer) or not 0 <= int(a) < self.K:
            raise ValueError(
                f"TaildropEnv.step: expected an integer action in 0..{self.K - 1} (keep action + 1 "
                f"tokens), got {action!r}"
            )
        clip = len(episode["keep"])
        episode["keep"].append(int(a) + 1)
        terminated = clip == self.L - 1
        episode["done"] = terminated
        if self.reward_mode == "clip":
            reward, parts = self._score(clips=[clip])
        elif terminated:
            reward, parts = self._score(clips=list(range(self.L)))
        else:
            reward, parts = 0.0, None
        info = self._info(clip)
        if parts is not None:
            info["rewards"] = parts
        if terminated:
            info["keep_path"] = list(episode["keep"])
            info["mean_keep"] = float(np.mean(episode["keep"]))
        # After the last decision there is no next clip: the observation repeats the last one (never acted on).
        observation = self._observation(min(clip + 1, self.L - 1))
        return observation, reward, terminated, False, info

    def close(self) -> None:
        self._episode = None

    # ------------------------------------------------------------------------------------------------ helpers
    def _observation(self, clip: int) -> np.ndarray:
        return self._episode["latents"][clip].numpy().astype(np.float32, copy=True)  # a fresh array every call

    def _info(self, clip: int) -> dict:
        e = self._episode
        info = {"clip": clip, "sc": float(e["sc"][0, clip]), "tc": float(e["tc"][0, clip])}
        if e["keep"]:
            info["keep"] = e["keep"][-1]
        return info

    @torch.no_grad()
    def _path_rollout(self, clips: list[int]) -> Rollout:
        """The path made of ``clips`` as a rollout with B = G = 1 and L = len(clips)."""
        e = self._episode
        index = torch.tensor(clips, device=e["encoded"].latents.device)
        encoded = Encoded(latents=e["encoded"].latents[index], codes=e["encoded"].codes[index])  # N = L clips
        keep = torch.tensor([[[e["keep"][c] for c in clips]]], dtype=torch.long, device=index.device)  # [1, 1, L]
        L = len(clips)
        decoded = decode_paths(self.tokenizer, encoded, keep) if "reconstructions" in self.needs else None
        return Rollout(
            videos=e["videos"][:, clips],  # [1, L, C, T, H, W]
            encoded=encoded,
            keep=keep,
            reconstructions=decoded,  # [1, 1, L, C, T, H, W]
            prior_correct=None if e["prior_correct"] is None else e["prior_correct"][:, clips],  # [1, L, K]
            sc=e["sc"][:, clips],  # [1, L]
            tc=e["tc"][:, clips],
            old_logp=torch.zeros(1, 1, L, device=index.device),  # the env does not know the agent's policy
            ref_logp=torch.zeros(1, 1, L, device=index.device),
            num_latents=self.K,
        )

    def _score(self, clips: list[int]) -> tuple[float, dict[str, float]]:
        """The weighted reward of the path made of ``clips``, each plugin scored as the trainer scores it
        (:func:`~vaportok_rl.reward_calling.score`: checked, a per-clip reward's path value is its mean over L)."""
        plugins = {label: plugin for label, (plugin, _) in self.rewards.items()}
        values = score(plugins, self._path_rollout(clips))[0, 0]  # [R]
        parts, total = {}, 0.0
        for (label, (_, weight)), value in zip(self.rewards.items(), values.tolist(), strict=True):
            parts[label] = value
            total += weight * value
        return float(total), parts


def _register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="vaportok_rl.envs:TaildropEnv", nondeterministic=False)


_register()
