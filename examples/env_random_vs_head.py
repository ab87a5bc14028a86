"""A random policy vs a taildrop head's argmax, in the gymnasium environment ``vaportok_rl/Taildrop-v0``.

Both policies play the same episodes (same videos: same reset seeds); the script prints each one's mean episode
reward, its spread and the mean tokens kept per clip. ::

    # an exported head (vaportok-rl export RUN --out DIR) on the tokenizer it was tuned on
    python examples/env_random_vs_head.py --head DIR --tokenizer default --data textures --episodes 50

    # the tokenizer's own pretrained head (before GRPO)
    python examples/env_random_vs_head.py --head pretrained

    # no weights needed: a tiny random-init tokenizer whose head is exported and re-loaded on the fly
    python examples/env_random_vs_head.py --tiny

Rewards are the environment's raw weighted sums (see ``vaportok_rl.envs``); set them with ``--reward
label=weight`` (repeatable), e.g. ``--reward efficiency=1 --reward reconstruction=50``.
"""

from __future__ import annotations

import argparse
import tempfile

import gymnasium as gym
import numpy as np
import torch

import vaportok_rl.envs  # noqa: F401  (registers vaportok_rl/Taildrop-v0)
from vaportok_rl import TaildropHead
from vaportok_rl.export import save_pretrained


def tiny_tokenizer():
    """A tiny random-init built-in tokenizer (K = 12 tokens, 8×16×16 clips): for trying the script without weights."""
    from vaportok_rl.tokenizer import Tokenizer, TokenizerConfig

    config = TokenizerConfig(
        frames=8,
        size=16,
        num_latents=12,
        width=32,
        encoder_layers=1,
        decoder_layers=1,
        heads=2,
        codebook_size=32,
        code_dim=4,
        skip_rank=8,
        prior_layers=1,
        prior_width=32,
        head_width=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Tokenizer(config).eval().requires_grad_(False)


def play(env: gym.Env, act, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Episode returns [E] and mean kept tokens per clip [E] of policy ``act(observation) -> action``."""
    returns, tokens = [], []
    for seed in seeds:
        observation, _ = env.reset(seed=seed)
        total, done, info = 0.0, False, {}
        while not done:
            observation, reward, terminated, truncated, info = env.step(act(observation))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        tokens.append(info["mean_keep"])
    return np.array(returns), np.array(tokens)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--head", default="pretrained", help="an exported head folder, or 'pretrained' (the tokenizer's own head)"
    )
    parser.add_argument("--tokenizer", default="default", help="tokenizer spec (default: the embedded default)")
    parser.add_argument("--tiny", action="store_true", help="use a tiny random-init tokenizer (no weights needed)")
    parser.add_argument("--data", default="synthetic", help="'synthetic', 'textures' or a folder of videos")
    parser.add_argument("--clips", type=int, default=4, help="clips per video = steps per episode")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reward",
        action="append",
        default=[],
        metavar="LABEL=WEIGHT",
        help="a reward plugin and its weight (repeatable; default: the env's)",
    )
    parser.add_argument("--reward-mode", choices=["episode", "clip"], default="episode")
    parser.add_argument("--force", action="store_true", help="load the head onto a tokenizer with another fingerprint")
    args = parser.parse_args(argv)

    tokenizer = tiny_tokenizer() if args.tiny else args.tokenizer
    rewards = {label: float(weight) for label, weight in (item.split("=", 1) for item in args.reward)} or None
    env = gym.make(
        "vaportok_rl/Taildrop-v0",
        tokenizer=tokenizer,
        data=args.data,
        clips_per_video=args.clips,
        rewards=rewards,
        reward_mode=args.reward_mode,
    )
    tokenizer = env.unwrapped.tokenizer

    if args.tiny and args.head == "pretrained":
        # Exercise the export path: write the tiny tokenizer's head as an export folder and load it back.
        folder = tempfile.mkdtemp(prefix="tiny_head_")
        save_pretrained(tokenizer.head, f"{folder}/head", tokenizer_fingerprint=tokenizer.fingerprint, force=True)
        head = TaildropHead.from_pretrained(f"{folder}/head", tokenizer=tokenizer)
    elif args.head == "pretrained":
        head = getattr(tokenizer, "head", None)
        if not isinstance(head, TaildropHead):
            parser.error("--head pretrained: this tokenizer has no pretrained .head; pass an exported head folder")
    else:
        head = TaildropHead.from_pretrained(args.head, tokenizer=tokenizer, force=args.force)
    head = head.eval().to(env.unwrapped.device)

    def head_argmax(observation: np.ndarray) -> int:
        with torch.no_grad():
            latents = torch.from_numpy(observation).to(env.unwrapped.device)[None]  # [1, K, D]
            return int(head(latents).argmax(-1))  # logit index j = keep j + 1 tokens = the action

    env.action_space.seed(args.seed)
    seeds = [args.seed + i for i in range(args.episodes)]
    results = {}
    for name, act in (("random", lambda _obs: env.action_space.sample()), ("head argmax", head_argmax)):
        returns, tokens = play(env, act, seeds)
        results[name] = {
            "mean_reward": float(returns.mean()),
            "std_reward": float(returns.std()),
            "mean_tokens": float(tokens.mean()),
        }
    env.close()

    K = env.unwrapped.K
    print(
        f"{args.episodes} episodes x {args.clips} clips, K = {K}, rewards {list(env.unwrapped.rewards)} "
        f"({args.reward_mode} mode)"
    )
    print(f"{'policy':<12} {'mean reward':>12} {'± std':>9} {'tokens/clip':>12}")
    for name, r in results.items():
        print(f"{name:<12} {r['mean_reward']:>12.4f} {r['std_reward']:>9.4f} {r['mean_tokens']:>12.2f}")
    return results


if __name__ == "__main__":
    main()
