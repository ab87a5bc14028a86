"""The GRPO run's config: documented, validated, paper defaults, recipes and sweep expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaportok_rl.config import ConfigError, check_documented, describe, to_dict
from vaportok_rl.train_config import (
    DEFAULT_REWARDS,
    SweepConfig,
    TrainConfig,
    load_train_config,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_every_field_is_documented():
    check_documented(TrainConfig)
    check_documented(SweepConfig)
    text = describe(TrainConfig)
    for key in ("grpo.group_size", "rewards.<name>.weight", "optim.schedule", "log.report_to", "eval.num_videos"):
        assert key in text


def test_defaults_are_the_papers():
    c = TrainConfig()
    g = c.grpo
    assert (g.group_size, g.num_iterations, g.beta, g.epsilon_low, g.epsilon_high) == (8, 2, 0.1, 0.2, 0.28)
    assert g.loss_type == "grpo" and g.reward_aggregation == "normalize_then_sum"
    assert list(c.active_rewards()) == list(DEFAULT_REWARDS)
    assert [spec.weight for spec in c.active_rewards().values()] == [1.0] * 5
    assert c.policy.temperature is None  # = the pretrained head's own, 1.8


def test_default_recipe_loads_with_paper_settings():
    c = load_train_config(RECIPES / "vaportok_paper.yaml")
    assert (c.grpo.group_size, c.grpo.beta, c.grpo.num_iterations) == (8, 0.1, 2)
    assert [s.weight for s in c.active_rewards().values()] == [1.0] * 5
    assert c.tokenizer == "default"


def test_reward_overrides_reach_one_reward_and_null_drops_it():
    c = load_train_config(
        None,
        [
            "rewards.penalty.weight=2",
            "rewards.penalty.kwargs.shape=quadratic",
            "rewards.efficiency=null",
            "rewards.mine.spec=path/to/mine.py:Mine",
        ],
    )
    active = c.active_rewards()
    assert list(active) == ["penalty", "diversity", "reconstruction", "generation", "mine"]
    assert active["penalty"].weight == 2.0 and active["penalty"].kwargs == {"shape": "quadratic"}
    assert active["mine"].spec == "path/to/mine.py:Mine"


def test_round_trip_through_dict():
    c = load_train_config(RECIPES / "vaportok_paper.yaml", ["rewards.diversity=null", "optim.schedule=cosine"])
    assert load_train_config(None, []).__class__ is TrainConfig
    from vaportok_rl.config import from_dict

    assert from_dict(TrainConfig, to_dict(c)) == c


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("grpo.gruop_size=4", "grpo.gruop_size"),  # typo in a nested key
        ("lr=1e-3", "'lr'"),  # misplaced key: suggests optim.lr
        ("rewards.penalty.wieght=2", "rewards.penalty.wieght"),
        ("grpo.group_size=1", "grpo.group_size"),
        ("grpo.loss_type=ppo", "grpo.loss_type"),
        ("optim.lr=-1", "optim.lr"),
        ("optim.betas=[0.9, 1.0]", "optim.betas"),
        ("rewards.penalty.weight=.nan", "rewards.penalty"),
        ([f"rewards.{r}=null" for r in DEFAULT_REWARDS], "at least one reward"),
        ([f"rewards.{r}.weight=0" for r in DEFAULT_REWARDS], "every weight is 0"),
        ("rewards.a/b={}", "label"),
        ("steps=0", "steps"),
        ("rollout.mode=greedy", "rollout.mode"),
        ("log.report_to=tensorboard", "log.report_to"),
        ("policy.width=10", "policy.width"),
    ],
)
def test_bad_values_and_keys_error_naming_the_key(override, named):
    with pytest.raises(ConfigError) as info:
        load_train_config(None, override if isinstance(override, list) else [override])
    assert named in str(info.value)


def test_misplaced_key_suggests_its_section():
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        load_train_config(None, ["lr=1e-3"])


def test_bad_recipe_key_is_named(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("grpo:\n  beta: 0.1\n  epsilon: 0.2\n")
    with pytest.raises(ConfigError, match="grpo.epsilon"):
        load_train_config(recipe)


def expand_sweep(path, overrides=()):
    """[(run_id, TrainConfig)] of a sweep recipe, through the one sweep expander (vaportok_rl.sweep.load_sweep)."""
    from vaportok_rl.sweep import load_sweep

    return [(run.run_id, run.config) for run in load_sweep(path, overrides).runs]


def test_ablation_sweep_expands_to_leave_one_out_runs():
    runs = expand_sweep(RECIPES / "ablation_leave_one_out.yaml")
    names = sorted({run_id.split("/")[0] for run_id, _ in runs})
    assert names == sorted(["full"] + [f"wo_{r}" for r in DEFAULT_REWARDS])
    by_id = dict(runs)
    assert list(by_id["full/seed0"].active_rewards()) == list(DEFAULT_REWARDS)
    for reward in DEFAULT_REWARDS:
        config = by_id[f"wo_{reward}/seed0"]
        assert reward not in config.active_rewards() and len(config.active_rewards()) == 4
        assert config.seed == 0
        assert config.log.output_dir == f"runs/ablation_leave_one_out/wo_{reward}/seed0"
    # everything but rewards, output folder and the pinned step count is the base recipe's
    base = to_dict(load_train_config(RECIPES / "vaportok_paper.yaml"))
    run = to_dict(by_id["wo_penalty/seed0"])
    assert {k for k in base if base[k] != run[k]} == {"rewards", "log", "steps"}
    assert run["steps"] == 60  # the recipe pins the step count its README table was run at


def test_sweep_validation(tmp_path):
    (tmp_path / "base.yaml").write_text("steps: 3\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("base: base.yaml\nruns:\n  - {name: a}\n  - {name: a}\n")
    with pytest.raises(ConfigError, match="duplicate run names"):
        expand_sweep(sweep)
    sweep.write_text("base: base.yaml\nruns:\n  - {name: a, overrides: [grpo.bta=1]}\n")
    with pytest.raises(ConfigError, match="run 'a'.*grpo.bta"):
        expand_sweep(sweep)
    sweep.write_text("base: base.yaml\nruns:\n  - {name: a, overrides: [steps=5]}\n  - {name: b}\n")
    (a, config_a), (b, config_b) = expand_sweep(sweep, ["log.output_dir=out"])
    assert (a, config_a.steps, config_a.log.output_dir) == ("a", 5, str(Path("out") / "a"))
    assert (b, config_b.steps) == ("b", 3)
