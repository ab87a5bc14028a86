"""The gymnasium environment vaportok_rl/Taildrop-v0: API compliance (check_env, no warnings), episode structure,
rewards equal to the plugins' on the episode's path, seeding, errors, and the random-vs-head example."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from conftest import CLIP_SHAPE, D, FakeTokenizer, K
from gymnasium.utils.env_checker import check_env

import vaportok_rl.envs  # noqa: F401  (registers the id)
from vaportok_rl.envs import ENV_ID, TaildropEnv
from vaportok_rl.rewards import RewardError

ROOT = Path(__file__).resolve().parents[1]


def one_video(seed: int = 0, L: int = 3) -> torch.Tensor:
    """[1, L, C, T, H, W]: a fixed pool of one video, so the test knows what the episode shows."""
    return torch.rand(1, L, *CLIP_SHAPE, generator=torch.Generator().manual_seed(seed))


def run_episode(env, actions):
    observations, rewards, infos = [env.reset(seed=7)[0]], [], []
    for i, action in enumerate(actions):
        obs, reward, terminated, truncated, info = env.step(action)
        assert terminated == (i == len(actions) - 1) and truncated is False
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
    return observations, rewards, infos


@pytest.mark.parametrize("reward_mode", ["episode", "clip"])
def test_check_env_passes_without_warnings(reward_mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any gymnasium checker warning fails the test
        env = gymnasium.make(ENV_ID, tokenizer=FakeTokenizer(), clips_per_video=3, reward_mode=reward_mode)
        check_env(env.unwrapped)
        # and through the wrappers gymnasium.make adds (the passive checker, order enforcing)
        env.reset(seed=0)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
        env.close()


def test_spaces_observations_and_episode_structure():
    tokenizer, videos = FakeTokenizer(), one_video()
    env = TaildropEnv(tokenizer, data=videos, clips_per_video=3, rewards={"efficiency": 1.0})
    assert env.action_space == gymnasium.spaces.Discrete(K)
    assert env.observation_space.shape == (K, D) and env.observation_space.dtype == np.float32
    observations, rewards, infos = run_episode(env, [0, 3, 7])
    latents = tokenizer.encode(videos[0]).latents  # [L, K, D]
    for clip in range(3):
        np.testing.assert_array_equal(observations[clip], latents[clip].numpy())
        assert observations[clip] in env.observation_space
    assert [info["keep"] for info in infos] == [1, 4, 8] and [info["clip"] for info in infos] == [0, 1, 2]
    assert rewards[:2] == [0.0, 0.0]
    assert infos[-1]["keep_path"] == [1, 4, 8] and infos[-1]["mean_keep"] == pytest.approx(13 / 3)
    assert rewards[-1] == pytest.approx(np.mean([1 - 1 / K, 1 - 4 / K, 1 - 8 / K]))
    with pytest.raises(RuntimeError, match="terminated; call reset"):
        env.step(0)


def test_episode_reward_is_the_weighted_plugin_reward_of_the_path():
    tokenizer, videos = FakeTokenizer(), one_video(1)
    rewards = {"efficiency": 0.5, "quality": {"spec": "reconstruction", "weight": 3.0}, "generation": 1.0}
    env = TaildropEnv(tokenizer, data=videos, clips_per_video=3, rewards=rewards)
    keep = [2, 5, 8]
    _, step_rewards, infos = run_episode(env, [k - 1 for k in keep])
    clips = videos[0]
    encoded = tokenizer.encode(clips)
    recon = tokenizer.decode(encoded.latents, torch.tensor(keep))
    mse = ((recon - clips) ** 2).flatten(1).mean(-1)  # [L]
    correct = tokenizer.prior_correct(encoded).float()  # [L, K]
    generation = np.mean([correct[i, :k].mean().item() for i, k in enumerate(keep)])
    efficiency = np.mean([1 - k / K for k in keep])
    parts = infos[-1]["rewards"]
    assert parts["efficiency"] == pytest.approx(efficiency)
    assert parts["quality"] == pytest.approx(-mse.mean().item(), rel=1e-5)
    assert parts["generation"] == pytest.approx(generation)
    assert step_rewards[-1] == pytest.approx(0.5 * efficiency - 3.0 * mse.mean().item() + generation, rel=1e-5)


def test_clip_mode_pays_each_clips_single_clip_reward():
    env = TaildropEnv(
        FakeTokenizer(),
        data=one_video(),
        clips_per_video=3,
        rewards={"efficiency": 2.0, "penalty": 1.0},
        reward_mode="clip",
    )
    _, rewards, infos = run_episode(env, [0, 3, 7])
    threshold = 0.125 * K  # penalty's default: t = K/8 = 1 token, so k = 1 is not below it
    expected = [2.0 * (1 - k / K) - max(0.0, (threshold - k) / threshold) for k in (1, 4, 8)]
    assert rewards == pytest.approx(expected)
    assert all("rewards" in info for info in infos)


def test_seeding_and_fresh_arrays():
    env = TaildropEnv(FakeTokenizer(), data="synthetic", clips_per_video=2)
    first, _ = env.reset(seed=11)
    same, _ = env.reset(seed=11)
    other, _ = env.reset(seed=12)
    np.testing.assert_array_equal(first, same)
    assert not np.array_equal(first, other)
    assert not np.shares_memory(first, same)
    env.reset(seed=11)
    obs_a, *_ = env.step(2)
    obs_a[:] = 0  # the caller owns what it gets
    env.reset(seed=11)
    obs_b, *_ = env.step(2)
    assert not np.array_equal(obs_a, obs_b)


def test_data_sources_and_specs():
    spec = f"{ROOT / 'tests' / 'conftest.py'}:FakeTokenizer"
    calls = []

    def source(seed: int) -> torch.Tensor:
        calls.append(seed)
        return torch.rand(2, *CLIP_SHAPE, generator=torch.Generator().manual_seed(seed))

    env = gymnasium.make(ENV_ID, tokenizer=spec, data=source, clips_per_video=2, rewards=["efficiency"])
    env.reset(seed=3)
    env.reset(seed=3)
    assert len(calls) == 2 and calls[0] == calls[1]
    assert list(env.unwrapped.rewards) == ["efficiency"]


def test_errors_are_clear(tmp_path):
    tokenizer = FakeTokenizer()
    env = TaildropEnv(tokenizer, data=one_video(), clips_per_video=3)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)
    env.reset(seed=0)
    for bad in (K, -1, 1.5, [1, 2]):
        with pytest.raises(ValueError, match=rf"integer action in 0\.\.{K - 1}"):
            env.step(bad)
    with pytest.raises(ValueError, match=r"tensor of videos \[M, L, C, T, H, W\]"):
        TaildropEnv(tokenizer, data=one_video(L=2), clips_per_video=3)
    with pytest.raises(ValueError, match="reward_mode"):
        TaildropEnv(tokenizer, reward_mode="step")
    (tmp_path / "broken.py").write_text("import torch\nimport not_a_module_xyz\n")
    with pytest.raises(RewardError, match=r"broken\.py.*not_a_module_xyz"):
        TaildropEnv(tokenizer, rewards={"broken": 1.0}, plugin_paths=[tmp_path])
    small = TaildropEnv(tokenizer, data=one_video(), clips_per_video=3, observation_bound=1e-3)
    with pytest.raises(ValueError, match="observation_bound"):
        small.reset(seed=0)


def test_example_random_vs_head(capsys):
    spec = importlib.util.spec_from_file_location("env_random_vs_head", ROOT / "examples" / "env_random_vs_head.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(["--tiny", "--episodes", "2", "--clips", "2"])
    assert set(results) == {"random", "head argmax"}
    assert all(np.isfinite(r["mean_reward"]) and 1 <= r["mean_tokens"] <= 12 for r in results.values())
    out = capsys.readouterr().out
    assert "random" in out and "head argmax" in out
