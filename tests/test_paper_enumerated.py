"""The paper's recipe with its per-clip rewards enumerated (issue 17, item 5b): the built-ins' ``per_clip`` terms add up
to their path values, ``grpo.table_normalization: clip`` makes a weight a share whatever the reward's units, and the
shipped recipe runs end to end (fit, then the sampled phase for diversity) on a tiny tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import FakeTokenizer
from test_rewards import make_rollout
from test_trainer import FAKE_SPEC, records

from vaportok_rl.config import ConfigError
from vaportok_rl.grpo import group_target
from vaportok_rl.rewards import load_reward
from vaportok_rl.target_fit import normalize_rows
from vaportok_rl.train import run_training
from vaportok_rl.train_config import load_train_config

ROOT = Path(__file__).resolve().parents[1]
K = 8


def rollout_with_everything(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, G, L = 2, 3, 4
    keep = torch.randint(1, K + 1, (B, G, L), generator=g)
    videos = torch.rand(B, L, 3, 2, 4, 4, generator=g)
    recon = torch.rand(B, G, L, 3, 2, 4, 4, generator=g)
    correct = torch.rand(B, L, K, generator=g) > 0.5
    return make_rollout(keep, K, videos=videos, reconstructions=recon, prior_correct=correct)


@pytest.mark.parametrize(
    ("name", "kwargs", "fold"),
    [
        ("efficiency", {}, "mean"),
        ("reconstruction", {}, "mean"),
        ("generation", {}, "mean"),
        ("penalty", {"threshold_tokens": 6}, "sum"),
    ],
)
def test_a_per_clip_builtin_folds_back_to_its_path_value(name, kwargs, fold):
    rollout = rollout_with_everything()
    path = load_reward(name, kwargs)(rollout)  # [B, G]
    per_clip = load_reward(name, {**kwargs, "per_clip": True})(rollout)  # [B, G, L]
    assert per_clip.shape == rollout.keep.shape
    torch.testing.assert_close(getattr(per_clip, fold)(-1), path)


def test_per_clip_must_be_a_bool():
    with pytest.raises(Exception, match=r"per_clip: expected true or false, got 'yes'"):
        load_reward("generation", {"per_clip": "yes"})


def test_clip_normalization_makes_a_weight_a_share_whatever_the_units():
    g = torch.Generator().manual_seed(1)
    table = torch.randn(5, K, generator=g, dtype=torch.float64)
    z = normalize_rows(table)
    torch.testing.assert_close(normalize_rows(1e4 * table - 3.0), z)  # units and offsets do not matter
    torch.testing.assert_close(z.mean(-1), torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(z.pow(2).mean(-1), torch.ones(5, dtype=torch.float64))
    assert torch.equal(normalize_rows(torch.full((2, K), 7.0)), torch.zeros(2, K))  # a constant row says nothing
    # two rewards at 1:1 in wildly different units: the target is that of their z-scores' sum
    other = torch.randn(5, K, generator=g, dtype=torch.float64)
    target = group_target(normalize_rows(1e-3 * table) + normalize_rows(1e3 * other), 0.25)
    torch.testing.assert_close(target, group_target(z + normalize_rows(other), 0.25))


def test_clip_normalization_refuses_knob_prices_in_one_rewards_units(tmp_path):
    recipe = ROOT / "recipes" / "vaportok_paper_enumerated.yaml"
    with pytest.raises(ConfigError, match=r"grpo.knob_prices: \[0.1\].*table_normalization: clip"):
        load_train_config(recipe, ["grpo.knob_prices=[0.1]"])


def test_the_paper_enumerated_recipe_fits_then_tunes_diversity(tmp_path):
    recipe = ROOT / "recipes" / "vaportok_paper_enumerated.yaml"
    small = [f"tokenizer={FAKE_SPEC}", "data.videos=4", "steps=3", "eval.num_videos=2", "grpo.grid_points=4"]
    small += ["rollout.clips_per_video=2", "grpo.path_phase.steps=2", "grpo.path_phase.videos_per_step=2"]
    small += ["grpo.group_size=4", f"table_cache={tmp_path / 'cache'}", f"log.output_dir={tmp_path / 'run'}"]
    summary = run_training(load_train_config(recipe, small), tokenizer=FakeTokenizer(), progress=False)
    assert summary["steps"] == 5
    train = {r["step"]: r for r in records(tmp_path / "run") if "loss" in r}
    assert "kl_to_target" in train[3] and "rewards/diversity/mean" in train[5]
