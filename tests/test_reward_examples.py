"""The example reward plugins (rewards/examples), `vaportok-rl rewards list`, and docs/rewards.md kept honest:
its plugin, recipe and test snippets are extracted from the page and run from a folder outside the repository."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CLIP_SHAPE, FakeTokenizer

from vaportok_rl.cli import main as vaportok_rl
from vaportok_rl.metrics import lpips_video
from vaportok_rl.rewards import RewardError, Rollout, check_reward_output, load_reward, required_needs
from vaportok_rl.rollout import collect_rollout
from vaportok_rl.tokenizer.protocol import Encoded

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "rewards.md"
LPIPS_SPEC = "vaportok_rl.builtin_rewards.examples.lpips"
TEMPORAL_SPEC = "vaportok_rl.builtin_rewards.examples.temporal_consistency"
L1_SPEC = "vaportok_rl.builtin_rewards.examples.l1"


@pytest.fixture(scope="module")
def lpips_reward():
    """Loading AlexNet takes seconds: once per module."""
    return load_reward(LPIPS_SPEC)


def rollout_of(videos: torch.Tensor, reconstructions: torch.Tensor, K: int = 8) -> Rollout:
    """videos [B, L, C, T, H, W], reconstructions [B, G, L, C, T, H, W]; everything else zeros."""
    B, G, L = reconstructions.shape[:3]
    return Rollout(
        videos=videos,
        encoded=Encoded(latents=torch.zeros(B * L, K, 4), codes=torch.zeros(B * L, K, dtype=torch.long)),
        keep=torch.ones(B, G, L, dtype=torch.long),
        reconstructions=reconstructions,
        prior_correct=None,
        sc=torch.zeros(B, L),
        tc=torch.zeros(B, L),
        old_logp=torch.zeros(B, G, L),
        ref_logp=torch.zeros(B, G, L),
        num_latents=K,
    )


# ---------------------------------------------------------------------------------------------- LPIPS


def test_lpips_reward_matches_the_public_metric(lpips_reward):
    assert lpips_reward.name == "lpips" and lpips_reward.needs == {"reconstructions"}
    generator = torch.Generator().manual_seed(0)
    videos = torch.rand(2, 2, *CLIP_SHAPE, generator=generator)  # [B=2, L=2, ...]
    noise = torch.stack(
        [
            torch.zeros_like(videos),
            0.1 * torch.randn(videos.shape, generator=generator),
            0.3 * torch.randn(videos.shape, generator=generator),
        ],
        dim=1,
    )  # [B, G=3, L, ...]
    recon = (videos.unsqueeze(1) + noise).clamp(0, 1)
    value = check_reward_output(lpips_reward, lpips_reward(rollout_of(videos, recon)), 2, 3, 2)
    assert value.shape == (2, 3, 2)  # one value per clip decision: it decomposes over clips
    assert torch.equal(value[:, 0], torch.zeros(2, 2))  # a perfect reconstruction
    assert (value[:, 0] > value[:, 1]).all() and (value[:, 1] > value[:, 2]).all()  # more noise, lower reward
    expected = -lpips_video(lpips_reward.metric, recon[1, 2], videos[1])  # [L]
    torch.testing.assert_close(value[1, 2], expected)


def test_lpips_frame_stride_and_kwargs(lpips_reward, tmp_path):
    strided = load_reward("lpips", {"frame_stride": 2}, search_paths=[ROOT / "rewards" / "examples"])  # plugin_paths
    videos = torch.rand(1, 1, *CLIP_SHAPE, generator=torch.Generator().manual_seed(1))
    recon = (videos.unsqueeze(1) + 0.2).clamp(0, 1)  # [1, 1, 1, ...]
    expected = -lpips_video(lpips_reward.metric, recon[0, 0, :, :, ::2], videos[0, :, :, ::2])
    torch.testing.assert_close(strided(rollout_of(videos, recon))[0, 0], expected)
    with pytest.raises(RewardError, match=r"lpips.*frame_stride: expected a positive integer"):
        load_reward(LPIPS_SPEC, {"frame_stride": 0})
    assert type(strided).__name__ == "LPIPSReward"


# ---------------------------------------------------------------------------------------------- temporal consistency


def test_temporal_consistency_formula():
    C, T, H, W = CLIP_SHAPE
    videos = torch.full((1, 2, C, T, H, W), 0.5)  # a static video: no frame changes at all
    flicker = videos.clone().unsqueeze(1)  # [1, 1, L=2, C, T, H, W]
    flicker[..., 1::2, :, :] += 0.1  # every other frame brighter: each within-clip transition changes by 0.1
    seam = videos.clone().unsqueeze(1)
    seam[:, :, 1] += 0.2  # clip 1 brighter than clip 0: a jump only at the boundary
    recon = torch.cat([videos.unsqueeze(1), flicker, seam], dim=1)  # [1, G=3, 2, ...]
    rollout = rollout_of(videos, recon)
    n_within, n_boundary = 2 * (T - 1), 1
    # the flicker path: |Δ| = 0.1 on all within-clip transitions; the boundary (frame T-1 -> frame 0) too, as T is even
    reward = load_reward(TEMPORAL_SPEC)
    torch.testing.assert_close(reward(rollout), torch.tensor([[0.0, -0.1, -0.2 / (n_within + n_boundary)]]))
    within_only = load_reward(TEMPORAL_SPEC, {"boundary_weight": 0.0})
    torch.testing.assert_close(within_only(rollout), torch.tensor([[0.0, -0.1, 0.0]]))
    seams = load_reward(TEMPORAL_SPEC, {"boundary_weight": 4.0, "norm": "l2"})
    torch.testing.assert_close(seams(rollout)[0, 2], torch.tensor(-4 * 0.2**2 / (n_within + 4 * n_boundary)))


def test_temporal_consistency_excess_ignores_lost_motion():
    videos = torch.rand(1, 1, *CLIP_SHAPE, generator=torch.Generator().manual_seed(2))  # moving content
    frozen = videos[:, :, :, :1].expand_as(videos).unsqueeze(1)  # the decode shows the first frame throughout
    rollout = rollout_of(videos, frozen)
    assert load_reward(TEMPORAL_SPEC)(rollout).item() < 0  # "error": the lost motion is an error
    assert load_reward(TEMPORAL_SPEC, {"mode": "excess"})(rollout).item() == 0.0  # it adds no flicker
    with pytest.raises(RewardError, match=r"temporal_consistency\.mode"):
        load_reward(TEMPORAL_SPEC, {"mode": "flow"})


def test_examples_pass_the_output_check_on_a_real_rollout(lpips_reward, policy, videos, generator):
    rewards = [lpips_reward, load_reward(TEMPORAL_SPEC, {"mode": "excess"})]
    tokenizer = FakeTokenizer()
    rollout = collect_rollout(
        tokenizer,
        policy,
        policy.reference_copy(),
        videos,
        group_size=3,
        mode="sample",
        needs=required_needs(rewards),
        generator=generator,
    )
    for reward in rewards:
        value = check_reward_output(reward, reward(rollout), rollout.B, rollout.G, rollout.L)
        assert (value <= 0).all()


# ---------------------------------------------------------------------------------------------- rewards list


def test_rewards_list_shows_builtins_plugins_examples_and_needs(tmp_path, capsys):
    (tmp_path / "constant.py").write_text(
        textwrap.dedent('''
        import torch
        from vaportok_rl.rewards import Reward

        class Constant(Reward):
            """Always one."""
            name = "constant"
            needs = frozenset({"prior_correct"})

            def __call__(self, rollout):
                return torch.ones(rollout.B, rollout.G)
    ''')
    )
    (tmp_path / "broken.py").write_text("import not_a_module_xyz\n")
    assert vaportok_rl(["rewards", "list", "--path", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "prior_correct" in rows["constant"] and "Always one." in rows["constant"]
    assert "reconstructions" in rows["reconstruction"] and "built-in" in rows["efficiency"]
    assert "ERROR" in rows["broken"] and "not_a_module_xyz" in out and "broken.py" in out
    assert "reconstructions" in rows[LPIPS_SPEC] and TEMPORAL_SPEC in rows

    assert vaportok_rl(["rewards", "list", "--path", str(tmp_path), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    entries = {e["spec"]: e for e in listing["rewards"]}
    assert entries["constant"]["needs"] == ["prior_correct"] and not entries["constant"]["builtin"]
    assert {e["spec"] for e in listing["examples"]} == {LPIPS_SPEC, TEMPORAL_SPEC, L1_SPEC}


def test_rewards_list_checks_a_recipes_rewards(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "nameless.py").write_text(
        "import torch\n\nclass Nameless:\n    name = ''\n\n    def __call__(self, rollout):\n"
        "        return torch.zeros(rollout.B, rollout.G)\n"
    )
    recipe = {"plugin_paths": ["plugins"], "rewards": {"efficiency": {"weight": 2.0}, "nameless": {}}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert vaportok_rl(["rewards", "list", "--recipe", "recipe.yaml"]) == 1
    out = capsys.readouterr().out
    assert "plugins/nameless.py" in out and "missing or empty `name`" in out
    # a sweep recipe: the rewards of every run
    recipe["rewards"] = {"efficiency": {"weight": 2.0}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    sweep = {"base": "recipe.yaml", "runs": [{"name": "a"}, {"name": "b", "overrides": ["rewards.penalty={}"]}]}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    assert vaportok_rl(["rewards", "list", "--recipe", "sweep.yaml"]) == 0
    table = capsys.readouterr().out.split("Rewards of sweep.yaml")[1]
    assert "efficiency" in table and "penalty" in table and "ok" in table


# ---------------------------------------------------------------------------------------------- the docs, run


def docs_blocks(language: str) -> list[str]:
    return [body for lang, body in re.findall(r"```(\w+)\n(.*?)```", DOCS.read_text(), re.S) if lang == language]


def test_docs_plugin_written_outside_the_repo_loads_lists_tests_and_trains(tmp_path, monkeypatch, capsys):
    """docs/rewards.md's snippets, as a reader would use them: the plugin file, the recipe, the test, training."""
    from vaportok_rl.config import load_config, merge
    from vaportok_rl.train import run_training
    from vaportok_rl.train_config import TrainConfig

    plugin, docs_test = docs_blocks("python")[:2]
    recipe = yaml.safe_load(docs_blocks("yaml")[0])
    assert ROOT not in tmp_path.parents
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_rewards").mkdir()
    (tmp_path / "my_rewards" / "psnr.py").write_text(plugin)
    (tmp_path / "my_recipe.yaml").write_text(docs_blocks("yaml")[0])

    # vaportok-rl rewards list --recipe my_recipe.yaml
    assert vaportok_rl(["rewards", "list", "--recipe", "my_recipe.yaml"]) == 0
    psnr_rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("psnr ")]
    assert any("my_rewards/psnr.py" in row and "reconstructions" in row for row in psnr_rows)

    # the docs' pytest, run as written
    namespace: dict = {}
    exec(compile(docs_test, str(DOCS) + ":test", "exec"), namespace)
    namespace["test_psnr_reward"]()

    # training with the recipe (tiny sizes), the plugin taking part in the advantages
    tiny = {
        "steps": 2,
        "rollout": {"videos_per_step": 2, "clips_per_video": 2},
        "grpo": {"group_size": 4},
        "eval": {"num_videos": 0},
        "policy": {"width": 8, "layers": 1, "heads": 2},
        "data": {"source": "synthetic"},
        "log": {"output_dir": str(tmp_path / "run")},
    }
    config = load_config(TrainConfig, None, merge(recipe, tiny))
    summary = run_training(config, tokenizer=FakeTokenizer(), progress=False)
    assert summary["last_train"]["rewards/psnr/mean"] > 0
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("rewards/psnr/mean" in line for line in logged)


def test_docs_error_examples_match_the_real_messages(tmp_path):
    """The messages quoted in section 4 of the docs are produced by the current code (modulo paths)."""
    text = DOCS.read_text()
    (tmp_path / "psnr.py").write_text(docs_blocks("python")[0].replace('name = "psnr"', 'name = ""'))
    with pytest.raises(RewardError) as error:
        load_reward("psnr", search_paths=[tmp_path])
    message = str(error.value).split(": ", 1)[1]
    assert message in text
    reward = load_reward("efficiency")
    with pytest.raises(RewardError) as error:
        check_reward_output(reward, torch.zeros(8, 8, 5), 8, 8, 4)
    assert str(error.value).split(": ", 1)[1] in text
