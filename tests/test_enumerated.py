"""Enumerated groups (issue 17): the closed-form target, the grid and its interpolation, the reward-table cache, the
run that fails before training on a reward that does not decompose, exact resume with a plugin from a folder, and
the table split over two torchrun processes."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import FakeTokenizer
from safetensors.torch import load_file
from test_allocation_training import ALLOC
from test_trainer import FAKE_SPEC, records, tiny, torchrun_train

from vaportok_rl.cli.export import main as export_cli
from vaportok_rl.cli.train import main as train_cli
from vaportok_rl.config import ConfigError
from vaportok_rl.enumerated import TableCache, interpolate_log_k, keep_grid, reward_key, reward_tables
from vaportok_rl.grpo import group_target
from vaportok_rl.rewards import load_reward
from vaportok_rl.runs import load_head
from vaportok_rl.train import run_training
from vaportok_rl.train_config import load_train_config

ROOT = Path(__file__).resolve().parents[1]
ENUMERATED = [ALLOC[0], "grpo.groups=enumerated", "grpo.grid_points=4", "data.videos=6"]  # psnr + 0.1 token_cost


# ---------------------------------------------------------------------------------------------- the target


def test_group_target_is_the_brute_force_optimum_of_a_hand_made_table():
    utility = torch.tensor([[1.0, 3.0, 2.0, 2.5], [0.0, 0.0, 0.0, 4.0]], dtype=torch.float64)  # [N=2, K=4]
    tau = 0.5
    brute = torch.tensor([[math.exp(u / tau) for u in row] for row in utility.tolist()], dtype=torch.float64)
    torch.testing.assert_close(group_target(utility, tau), brute / brute.sum(-1, keepdim=True))
    # with a KL to a reference: π* ∝ ref^(β/(β+τ)) exp(u/(β+τ)), here checked against a grid search over π
    ref = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]], dtype=torch.float64)
    beta = 0.3
    target = group_target(utility, tau, ref.log() + 7.0, beta)  # logits: any per-clip constant
    expected = ref ** (beta / (beta + tau)) * torch.exp(utility / (beta + tau))
    torch.testing.assert_close(target, expected / expected.sum(-1, keepdim=True))

    def objective(pi, n):  # E_π[u] + τ H(π) - β KL(π || ref)
        return (pi * utility[n]).sum() - tau * (pi * pi.log()).sum() - beta * (pi * (pi / ref[n]).log()).sum()

    for n in range(2):
        best = objective(target[n], n)
        g = torch.Generator().manual_seed(n)
        for _ in range(200):  # no random distribution does better than the closed form
            other = torch.softmax(target[n].log() + 0.3 * torch.randn(4, generator=g, dtype=torch.float64), -1)
            assert objective(other, n) <= best + 1e-12


# ---------------------------------------------------------------------------------------------- the grid


@pytest.mark.parametrize("K, points", [(128, 16), (128, 8), (128, 32), (12, 5), (8, 7), (128, 0), (128, 200)])
def test_keep_grid_is_log_spaced_distinct_and_holds_both_ends(K, points):
    grid = keep_grid(K, points)
    assert int(grid[0]) == 1 and int(grid[-1]) == K and bool((grid.diff() > 0).all())
    assert len(grid) == (K if points in (0,) or points >= K else points)
    with pytest.raises(ValueError, match="grid points"):
        keep_grid(K, 1)


def test_interpolation_is_exact_at_grid_points_and_linear_in_log_k_between():
    K = 32
    grid = keep_grid(K, 6)
    values = torch.randn(3, len(grid), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    full = interpolate_log_k(values, grid, K)  # [3, K]
    assert torch.equal(full[:, grid - 1], values)
    # a function linear in log k is reproduced everywhere
    log_linear = 2.0 + 3.0 * torch.arange(1, K + 1, dtype=torch.float64).log()
    torch.testing.assert_close(interpolate_log_k(log_linear[grid - 1], grid, K), log_linear)


# ---------------------------------------------------------------------------------------------- the cache


def test_cache_key_changes_with_every_input_it_names(tmp_path):
    psnr = load_reward("psnr")
    plugin = tmp_path / "plugins" / "psnr.py"  # the same class name and code, another file: another key
    plugin.parent.mkdir()
    plugin.write_text((ROOT / "rewards" / "psnr.py").read_text() + "\n# edited\n")
    edited = load_reward("psnr", search_paths=[plugin.parent])
    base = dict(tokenizer="t0", pool={"source": "synthetic", "videos": 4}, grid=[1, 2, 8])
    key = reward_key(psnr, "psnr", {}, **base)
    variants = [
        reward_key(psnr, "psnr", {}, **{**base, "tokenizer": "t1"}),
        reward_key(psnr, "psnr", {}, **{**base, "pool": {"source": "synthetic", "videos": 5}}),
        reward_key(psnr, "psnr", {}, **{**base, "grid": [1, 3, 8]}),
        reward_key(psnr, "other.py", {}, **base),
        reward_key(psnr, "psnr", {"min_mse": 1e-6}, **base),
        reward_key(load_reward("mse"), "psnr", {}, **base),  # another class
        reward_key(edited, "psnr", {}, **base),  # another source file
    ]
    assert key == reward_key(psnr, "psnr", {}, **base) and len({key, *variants}) == len(variants) + 1


def test_tables_are_cached_per_reward_and_an_every_k_table_serves_any_grid(tmp_path, videos):
    tokenizer = FakeTokenizer()
    rewards = {"psnr": load_reward("psnr"), "cost": load_reward("token_cost")}
    specs = {"psnr": ("psnr", {}), "cost": ("token_cost", {})}
    pool = {"test": 1}
    cache = TableCache(tmp_path / "cache")

    def tables(grid):
        return reward_tables(
            tokenizer, lambda a, b: videos[a:b], len(videos), rewards, specs, grid, pool=pool, cache=cache
        )

    K = tokenizer.num_latents
    every = torch.arange(1, K + 1)
    latents, full, decodes = tables(every)
    assert decodes == len(latents) * K and full["psnr"].shape == (len(latents), K)
    torch.testing.assert_close(full["cost"], -every.double().expand(len(latents), K))  # no decode, every k exact
    _, again, decodes = tables(every)
    assert decodes == 0 and torch.equal(again["psnr"], full["psnr"])  # from the cache
    grid = keep_grid(K, 4)
    _, subset, decodes = tables(grid)
    assert decodes == 0 and torch.equal(subset["psnr"][:, grid - 1], full["psnr"][:, grid - 1])  # served by every-k


# ---------------------------------------------------------------------------------------------- the run


def test_a_path_level_reward_fails_before_training_naming_it(tmp_path):
    out = tmp_path / "run"
    config = tiny(out, "steps=2", *ENUMERATED, "rewards={reconstruction: {}}", f"table_cache={tmp_path / 'c'}")
    with pytest.raises(ConfigError, match=r"reward 'reconstruction'.*\[B, G\].*grpo.groups: sampled"):
        run_training(config, tokenizer=FakeTokenizer(), progress=False)
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()  # nothing was trained


def test_an_enumerated_run_learns_its_target_and_reuses_its_tables(tmp_path):
    common = [*ENUMERATED, "steps=30", "eval.num_videos=0", f"table_cache={tmp_path / 'c'}", "optim.lr=3e-2"]
    first = run_training(tiny(tmp_path / "a", *common), tokenizer=FakeTokenizer(), progress=False)
    train = [r for r in records(tmp_path / "a") if "loss" in r]
    assert first["table"]["decodes"] == 6 * 2 * 4  # V·L clips × 4 grid points
    assert train[-1]["kl_to_target"] < train[0]["kl_to_target"]
    # a new price on the same rewards: nothing is decoded again
    second = run_training(
        tiny(tmp_path / "b", *common, "rewards.token_cost.weight=0.5"), tokenizer=FakeTokenizer(), progress=False
    )
    assert second["table"]["decodes"] == 0


def docs_plugin() -> str:
    """docs/rewards.md, section 7: the priced plugin a reader copies (its imports added, as the section says)."""
    docs = (ROOT / "docs" / "rewards.md").read_text()
    plugin = next(b for b in re.findall(r"```python\n(.*?)```", docs, re.S) if "class Sharpness" in b)
    assert "price_per_token" in plugin
    return "import torch\n\nfrom vaportok_rl.rewards import Reward\n\n" + plugin


def test_an_enumerated_run_with_a_plugin_from_a_folder_resumes_bit_exact(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "sharpness.py").write_text(docs_plugin())
    common = [
        *ENUMERATED,
        "rewards={sharpness: {weight: 10.0}}",
        f"plugin_paths=[{plugins}]",
        f"table_cache={tmp_path / 'c'}",
        "steps=4",
        "log.checkpoint_every=2",
        "log.eval_every=2",
        "grpo.knob_prices=[0.0]",
    ]
    a, b = tmp_path / "a", tmp_path / "b"
    run_training(tiny(a, *common), tokenizer=FakeTokenizer(), progress=False)
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-000002", b / "checkpoints" / "step-000002")
    shutil.copy(a / "metrics.jsonl", b / "metrics.jsonl")
    run_training(tiny(b, *common), tokenizer=FakeTokenizer(), resume=True, progress=False)
    head_a, head_b = load_file(a / "head.safetensors"), load_file(b / "head.safetensors")
    assert all(torch.equal(head_a[k], head_b[k]) for k in head_a)
    strip = [[{k: v for k, v in r.items() if k != "step_time"} for r in records(d)] for d in (a, b)]
    assert strip[0] == strip[1]


def test_the_custom_reward_recipe_runs_with_only_rewards_and_plugin_paths_changed(tmp_path, capsys):
    """docs/rewards.md, section 7, as a reader follows it: its plugin file, custom_reward.yaml with its two keys."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "sharpness.py").write_text(docs_plugin())
    recipe = ROOT / "recipes" / "custom_reward.yaml"
    config = load_train_config(recipe)
    assert config.grpo.groups == "enumerated"
    small = [f"tokenizer={FAKE_SPEC}", "data.videos=4", "steps=3", "eval.num_videos=0", "policy.init=null"]
    small += ["rollout.clips_per_video=2", "policy.width=8", "policy.layers=1", "policy.heads=2"]
    out = tmp_path / "run"
    user = ["rewards={sharpness: {weight: 10.0}}", f"plugin_paths=[{plugins}]"]
    args = [str(recipe), *small, *user, f"table_cache={tmp_path / 'c'}", f"log.output_dir={out}", "--no-progress"]
    assert train_cli(args) == 0, capsys.readouterr().err
    head = load_head(out, FakeTokenizer())
    assert head.config.num_latents == FakeTokenizer.num_latents
    # ... and `vaportok-rl export` ships it: the exported head is the run's, and its card says how it was made
    assert export_cli([str(out), "--out", str(tmp_path / "export")]) == 0, capsys.readouterr().err
    exported = load_head(tmp_path / "export", FakeTokenizer())
    assert all(
        torch.equal(a, b) for a, b in zip(head.state_dict().values(), exported.state_dict().values(), strict=True)
    )
    assert "enumerated groups" in (tmp_path / "export" / "README.md").read_text()


def test_two_processes_score_the_same_table_as_one(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"tokenizer: '{FAKE_SPEC}'\n"
        "steps: 3\n"
        "rewards: {psnr: {weight: 1.0}, token_cost: {weight: 0.1}}\n"
        "grpo: {groups: enumerated, grid_points: 4}\n"
        "data: {videos: 5, source: synthetic}\n"  # 5 videos: chunks do not split evenly over 2 processes
        "rollout: {videos_per_step: 2, clips_per_video: 2}\n"
        "eval: {num_videos: 0}\n"
        "policy: {width: 8, layers: 1, heads: 2}\n"
    )
    torchrun_train(recipe, [f"log.output_dir={tmp_path / 'two'}", f"table_cache={tmp_path / 'c2'}"], tmp_path)
    args = [str(recipe), f"log.output_dir={tmp_path / 'one'}", f"table_cache={tmp_path / 'c1'}", "--no-progress"]
    assert train_cli(args) == 0
    tables = [{p.name: load_file(p)["values"] for p in (tmp_path / c).iterdir()} for c in ("c1", "c2")]
    assert tables[0].keys() == tables[1].keys() and len(tables[0]) == 2
    assert all(torch.equal(tables[0][name], tables[1][name]) for name in tables[0])
    heads = [load_file(tmp_path / d / "head.safetensors") for d in ("one", "two")]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2


def test_step_interpolation_reads_the_grid_point_at_or_below():
    grid = keep_grid(12, 4)  # 1, 2, 5, 12
    values = torch.tensor([[0.0, 10.0, 20.0, 30.0]])
    step = interpolate_log_k(values, grid, 12, "step")
    assert step.tolist() == [[0.0, 10.0, 10.0, 10.0, 20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 30.0]]
    with pytest.raises(ValueError, match="interpolation"):
        interpolate_log_k(values, grid, 12, "cubic")
