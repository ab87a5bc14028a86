"""Library defaults equal recipe defaults, by construction: a library parameter (or a dataclass field) that mirrors a
config field takes its default from the config dataclass (``beta: float = GRPOConfig.beta``), so the dataclass is the
one source. Every mirrored pair is listed below, and a scan of the library fails on a parameter named like a config
field that no table lists, so a new mirrored pair cannot drift unnoticed.

- CONSTRUCTED: the default is read from the dataclass (the test also checks the source still says so);
- HELD: equal today but not read from the dataclass, for the reason given (an import that would make a cycle, a
  file outside the config layer); the test holds the two equal;
- INDEPENDENT: the allow-list: same name or meaning, a different default on purpose, for the reason given; the test
  pins the library's value so that changing it is a decision.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
import torch

from vaportok_rl import data, enumerated, grpo, heldout, policy, rollout, target_fit
from vaportok_rl.distill import DistillConfig, DistillData, DistillRecipe
from vaportok_rl.judge import measures
from vaportok_rl.tokenizer.head import HeadConfig
from vaportok_rl.tokenizer.model import TokenizerConfig
from vaportok_rl.train_config import (
    DataConfig,
    EvalConfig,
    GRPOConfig,
    LogConfig,
    OptimConfig,
    PolicyConfig,
    RolloutConfig,
    TrainConfig,
)

# (library function or dataclass, parameter) <- (config dataclass, field)
CONSTRUCTED = [
    (grpo.grpo_loss, "epsilon_low", GRPOConfig, "epsilon_low"),
    (grpo.grpo_loss, "epsilon_high", GRPOConfig, "epsilon_high"),
    (grpo.grpo_loss, "beta", GRPOConfig, "beta"),
    (grpo.grpo_loss, "loss_type", GRPOConfig, "loss_type"),
    (grpo.compute_advantages, "scale_rewards", GRPOConfig, "scale_rewards"),
    (grpo.compute_advantages, "reward_aggregation", GRPOConfig, "reward_aggregation"),
    (rollout.collect_rollout, "decode_chunk", RolloutConfig, "decode_chunk"),
    (rollout.collect_rollout, "encode_chunk", RolloutConfig, "encode_chunk"),
    (rollout.encode_videos, "chunk", RolloutConfig, "encode_chunk"),
    (rollout.decode_paths, "chunk", RolloutConfig, "decode_chunk"),
    (enumerated.interpolate_log_k, "how", GRPOConfig, "grid_interpolation"),
    (enumerated.reward_tables, "interpolation", GRPOConfig, "grid_interpolation"),
    (enumerated.reward_tables, "encode_chunk", RolloutConfig, "encode_chunk"),
    (PolicyConfig, "width", HeadConfig, "width"),
    (PolicyConfig, "layers", HeadConfig, "layers"),
    (PolicyConfig, "heads", HeadConfig, "heads"),
    (DistillRecipe, "tokenizer", TrainConfig, "tokenizer"),
    (DistillRecipe, "grid_points", GRPOConfig, "grid_points"),
    (DistillRecipe, "grid_interpolation", GRPOConfig, "grid_interpolation"),
    (DistillRecipe, "table_cache", TrainConfig, "table_cache"),
    (DistillConfig, "temperature", GRPOConfig, "target_temperature"),
    (DistillConfig, "seed", TrainConfig, "seed"),
    (DistillData, "split", DataConfig, "split"),
    (DistillData, "videos", DataConfig, "videos"),
    (DistillData, "clips_per_video", RolloutConfig, "clips_per_video"),
]

# (library, parameter, config dataclass, field, why the default is not read from the dataclass)
HELD = [
    (enumerated.reward_tables, "decode_chunk", DistillRecipe, "decode_chunk", "distill imports enumerated"),
    (measures.measure_table, "decode_chunk", DistillRecipe, "decode_chunk", "judge/ is outside the config change"),
    (heldout.score, "credit", GRPOConfig, "credit", "the reward caller is outside the config change"),
    (DistillConfig, "knob_prices", GRPOConfig, "knob_prices", "both field(default_factory=list)"),
    (TokenizerConfig, "head_width", HeadConfig, "width", "two tokenizer-layer dataclasses, outside this change"),
    (TokenizerConfig, "head_layers", HeadConfig, "layers", "two tokenizer-layer dataclasses, outside this change"),
    (TokenizerConfig, "head_temperature", HeadConfig, "temperature", "two tokenizer-layer dataclasses"),
    (data.heldout_videos, "seed", EvalConfig, "seed", "train_config does not import the video sources"),
]

FULL_SUPPORT = '"sample", the full support, needs no max_keep; RolloutConfig.mode "pre_argmax" would need one'
NO_REFERENCE = "ref_logits defaults to None, and beta > 0 needs them: beta 0 is the reference-free target"
# (library, parameter, config dataclass, field, the library's own default, why it differs or is independent)
INDEPENDENT = [
    (grpo.group_target, "beta", GRPOConfig, "beta", 0.0, NO_REFERENCE),
    (target_fit.price_targets, "beta", GRPOConfig, "beta", 0.0, NO_REFERENCE),
    (rollout.group_log_prob, "mode", RolloutConfig, "mode", "sample", FULL_SUPPORT),
    (rollout.Rollout, "mode", RolloutConfig, "mode", "sample", FULL_SUPPORT),
    (policy.TaildropPolicy.distribution, "mode", RolloutConfig, "mode", "sample", FULL_SUPPORT),
    (policy.TaildropPolicy.sample, "mode", RolloutConfig, "mode", "sample", FULL_SUPPORT),
    (policy.TaildropPolicy.log_prob, "mode", RolloutConfig, "mode", "sample", FULL_SUPPORT),
    (policy.TaildropPolicy.entropy, "mode", RolloutConfig, "mode", "sample", FULL_SUPPORT),
    (PolicyConfig, "temperature", HeadConfig, "temperature", None, "null keeps the starting head's own"),
    (enumerated.reward_tables, "decode_chunk", RolloutConfig, "decode_chunk", 16, "grid scoring: CPU-sized chunks"),
    (DistillRecipe, "decode_chunk", RolloutConfig, "decode_chunk", 16, "grid scoring: CPU-sized chunks"),
    (DistillRecipe, "init", PolicyConfig, "init", "pretrained", "the same head (null), spelt as a head spec"),
    (DistillRecipe, "output_dir", LogConfig, "output_dir", "runs/distill", "a distill run is not a GRPO run"),
    (DistillConfig, "steps", TrainConfig, "steps", 600, "a step is one cheap minibatch of cached targets"),
    (DistillConfig, "lr", OptimConfig, "lr", 1e-3, "a supervised fit to fixed targets"),
    (DistillConfig, "weight_decay", OptimConfig, "weight_decay", 0.01, "a supervised fit to fixed targets"),
    (DistillData, "source", DataConfig, "source", "mixed", "train on what eval judges"),
    (DistillData, "seed", DataConfig, "seed", 777, "the pool (and its cached tables) stays whatever distill.seed"),
]

# the library modules whose parameters may mirror a GRPO / rollout / policy field, and the recipe dataclasses
LIBRARY = (grpo, rollout, enumerated, target_fit, heldout, policy)
RECIPE = (TrainConfig, GRPOConfig, RolloutConfig, PolicyConfig, DataConfig, EvalConfig, OptimConfig, LogConfig)
# dataclasses whose fields may mirror those of other dataclasses: {mirror: the dataclasses it may mirror}
MIRRORS = {DistillRecipe: RECIPE, DistillConfig: RECIPE, DistillData: RECIPE, PolicyConfig: (HeadConfig,)}


def default(owner: Any, name: str) -> Any:
    """The default of parameter ``name`` of a function, or of field ``name`` of a dataclass (its factory called)."""
    if dataclasses.is_dataclass(owner):
        f = {f.name: f for f in dataclasses.fields(owner)}[name]
        if f.default is not dataclasses.MISSING:
            return f.default
        assert f.default_factory is not dataclasses.MISSING, f"{owner.__qualname__}.{name} has no default"
        return f.default_factory()
    value = inspect.signature(owner).parameters[name].default
    assert value is not inspect.Parameter.empty, f"{owner.__qualname__}({name}) has no default"
    return value


def pair_id(row: tuple) -> str:
    owner, name, cfg, field = row[:4]
    return f"{owner.__qualname__}.{name}={cfg.__name__}.{field}"


@pytest.mark.parametrize("row", CONSTRUCTED + [row[:4] for row in HELD], ids=pair_id)
def test_library_default_equals_config_default(row):
    owner, name, cfg, field = row
    assert default(owner, name) == default(cfg, field)


@pytest.mark.parametrize("row", CONSTRUCTED, ids=pair_id)
def test_default_is_read_from_the_dataclass(row):
    owner, name, cfg, field = row
    source = inspect.getsource(owner)
    assert f"= {cfg.__name__}.{field}" in source, f"{pair_id(row)}: write the default as {cfg.__name__}.{field}"


@pytest.mark.parametrize("row", INDEPENDENT, ids=pair_id)
def test_independent_defaults_are_pinned(row):
    owner, name, _cfg, _field, value, reason = row
    assert reason
    assert default(owner, name) == value


def _library_parameters() -> set[tuple[Any, str]]:
    """(owner, parameter) of every defaulted parameter, in LIBRARY, named like a GRPO / rollout / policy field."""
    names = {f.name for cfg in (GRPOConfig, RolloutConfig, PolicyConfig) for f in dataclasses.fields(cfg)}
    owners: dict[int, Any] = {}  # by identity: a function imported into several modules counts once
    for module in LIBRARY:
        public = set(getattr(module, "__all__", ()))
        for name, obj in vars(module).items():
            if not callable(obj) or not (getattr(obj, "__module__", None) == module.__name__ or name in public):
                continue  # defined in the module, or one of its public names (heldout.score)
            owners[id(obj)] = obj
            if inspect.isclass(obj):  # its constructor (above) and its public methods
                owners.update({id(m): m for k, m in vars(obj).items() if inspect.isfunction(m) and k[0] != "_"})
    found = set()
    for obj in owners.values():
        try:
            parameters = inspect.signature(obj).parameters.values()
        except (TypeError, ValueError):
            continue
        found |= {(obj, p.name) for p in parameters if p.name in names and p.default is not inspect.Parameter.empty}
    return found


def _mirror_fields() -> set[tuple[Any, str]]:
    """(dataclass, field) of every MIRRORS field named like a field of a dataclass it may mirror (nested dataclasses
    left out)."""
    found = set()
    for cls, sources in MIRRORS.items():
        names = {f.name for source in sources for f in dataclasses.fields(source)}
        for f in dataclasses.fields(cls):
            if f.name in names and not dataclasses.is_dataclass(default(cls, f.name)):
                found.add((cls, f.name))
    return found


def test_every_mirrored_parameter_is_listed():
    listed = {(row[0], row[1]) for row in (*CONSTRUCTED, *HELD, *INDEPENDENT)}
    missing = (_library_parameters() | _mirror_fields()) - listed
    assert not missing, "mirrors of a config field without a row in tests/test_defaults.py: " + ", ".join(
        sorted(f"{owner.__qualname__}.{name}" for owner, name in missing)
    )


def test_compute_advantages_default_is_the_recipes_maths():
    """The library default is GRPOConfig's "normalize_then_sum" (it was TRL's "sum_then_normalize" before)."""
    rewards = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rewards = rewards * torch.tensor([1.0, 1e3], dtype=torch.float64)
    weights = [1.0, 0.5]
    expected = grpo.compute_advantages(rewards, weights, reward_aggregation="normalize_then_sum")
    assert torch.equal(grpo.compute_advantages(rewards, weights), expected)
    assert not torch.allclose(
        expected, grpo.compute_advantages(rewards, weights, reward_aggregation="sum_then_normalize")
    )
