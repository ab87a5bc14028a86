"""Issue 17, item 5a: is the LPIPS table an enumerated run fits right, and what do per-clip LPIPS curves look like?

Scores a few pool videos of the default tokenizer on the 16-point grid through ``enumerated.reward_tables`` (the
path training takes), recomputes LPIPS directly on ``tokenizer.decode`` at three grid points per clip, and prints
both, then each clip's LPIPS at every grid point (LPIPS, not minus: lower is better).

    python scripts/lpips_table_check.py --videos 3
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from einops import rearrange

from vaportok_rl.data import load_videos
from vaportok_rl.enumerated import TableCache, keep_grid, reward_tables
from vaportok_rl.metrics import LPIPSMetric
from vaportok_rl.rewards import load_reward
from vaportok_rl.rollout import encode_videos
from vaportok_rl.tokenizer import load_tokenizer_spec

SPEC, KWARGS = "vaportok_rl.builtin_rewards.examples.lpips", {"frame_stride": 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=3, help="pool videos (x4 clips), source mixed, seed 5")
    args = parser.parse_args()
    tokenizer = load_tokenizer_spec("default")
    _, T, H, _ = tokenizer.clip_shape
    videos = load_videos("mixed", args.videos, 4, seed=5, frames=T, size=H, split="train")  # [B, L, C, T, H, W]
    grid = keep_grid(tokenizer.num_latents, 16)
    plugin = load_reward(SPEC, KWARGS)
    _, tables, _ = reward_tables(
        tokenizer,
        lambda a, b: videos[a:b],
        args.videos,
        {"lpips": plugin},
        {"lpips": (SPEC, KWARGS)},
        grid,
        pool={"check": args.videos},
        cache=TableCache(tempfile.mkdtemp()),
    )
    table = -tables["lpips"]  # [N, K] LPIPS
    encoded = encode_videos(tokenizer, videos)
    clips = rearrange(videos, "b l c t h w -> (b l) c t h w")  # [N, C, T, H, W]
    metric = LPIPSMetric("cpu")
    print("clip  k   table   direct")
    for n in range(len(clips)):
        for k in (int(grid[2]), int(grid[8]), int(grid[-1])):
            with torch.no_grad():
                recon = tokenizer.decode(encoded.latents[n : n + 1], torch.tensor([k]))
            direct = metric(recon[:, :, ::2].clamp(0, 1), clips[n : n + 1, :, ::2]).item()
            print(f"{n:4d} {k:3d}  {table[n, k - 1].item():.4f}  {direct:.4f}")
    print("\nLPIPS at k =", " ".join(f"{int(k):4d}" for k in grid))
    for n in range(len(clips)):
        values = table[n, grid - 1]
        rises = int((values[1:] > values[:-1] + 1e-3).sum())
        print(f"clip {n:2d}:", " ".join(f"{v:.2f}" for v in values.tolist()), f"  (rises {rises}x as k grows)")


if __name__ == "__main__":
    main()
