#!/usr/bin/env python3
"""What k tokens of log2(V) bits each can reach at best on eval's held-out videos, next to the PCA floor.

For each held-out set of ``vaportok-rl eval`` (32 videos x 4 clips, seed 1000003) and each k it prints, in mean
per-clip PSNR (dB):
  floor     the 6-bit PCA floor tokenizer-report prints (k coefficients, fitted on the training distribution);
  pca xM    whole-clip PCA keeping k*M coefficients with no quantisation at all: k tokens carrying M real
            numbers each, losslessly;
  rd bound  an ideal Gaussian transform coder spending k*log2(V) bits by reverse water-filling over the training
            spectrum (each component above the water level keeps error θ, the rest are dropped). No fixed-rate
            linear tokenizer beats it by much; only structure PCA cannot see (non-linear) can.

    python benchmarks/tokenizer_bounds.py [--tokenizer default] [--train-clips 2048]

The training distribution is the tokenizer's recorded pretraining pool (as in tokenizer-report).
"""

import argparse
import json
import math

import torch
from einops import rearrange

from vaportok_rl.data import heldout_videos
from vaportok_rl.tokenizer import load_tokenizer
from vaportok_rl.tokenizer.pca_floor import fit_pca_floor
from vaportok_rl.tokenizer.report import floor_for, report_ks


def water_level(spectrum: torch.Tensor, bits: float) -> float:
    """θ with sum_i max(0, ½·log2(λ_i / θ)) = bits (bisection in log θ)."""
    lo, hi = 1e-12, float(spectrum[0])
    for _ in range(200):
        theta = math.sqrt(lo * hi)
        spent = float((0.5 * torch.log2(spectrum / theta)).clamp_min(0).sum())
        lo, hi = (lo, theta) if spent < bits else (theta, hi)
    return math.sqrt(lo * hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="default")
    ap.add_argument("--train-clips", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(2)
    tokenizer = load_tokenizer(args.tokenizer)
    _, T, H, _ = tokenizer.clip_shape
    K, bits_per_token = tokenizer.num_latents, math.log2(tokenizer.codebook_size)
    ks = report_ks(K)
    floor, meta = floor_for(tokenizer, K, clips=args.train_clips)
    from vaportok_rl.tokenizer.pretrain import PretrainDataConfig, training_clips

    train = training_clips(PretrainDataConfig(**meta["pool"]), frames=T, size=H, limit=args.train_clips)
    full = fit_pca_floor(train, min(len(train) - 1, 8 * K))  # the whole training spectrum, up to 8K components
    coef_train = (train.flatten(1) - full.mean) @ full.basis
    spectrum = coef_train.var(0)  # [Q] descending
    out = {"k": ks, "bits_per_token": bits_per_token, "train_clips": len(train), "sets": {}}
    for name in ("synthetic", "textures"):
        videos, _ = heldout_videos(name, frames=T, size=H)
        clips = rearrange(videos, "b l c t h w -> (b l) c t h w").flatten(1)
        coef = (clips - full.mean) @ full.basis  # [N, Q]
        outside = ((clips - full.mean) ** 2).sum(1) - (coef**2).sum(1)  # energy the basis cannot hold, per clip
        row = {"floor": [round(v, 2) for v in floor.psnr(clips, ks).values()]}
        for m in (1, 2, 4, 8):
            row[f"pca x{m}"] = [round(full.psnr(clips, [min(k * m, full.basis.shape[1])], quantize=False)[
                min(k * m, full.basis.shape[1])], 2) for k in ks]  # fmt: skip
        bound = []
        for k in ks:
            theta = water_level(spectrum, k * bits_per_token)
            kept = spectrum > theta  # [Q]
            err = (coef[:, ~kept] ** 2).sum(1) + kept.sum() * theta + outside.clamp_min(0)  # [N]
            bound.append(round(float((10 * torch.log10(clips.shape[1] / err.clamp_min(1e-10))).mean()), 2))
        row["rd bound"] = bound
        out["sets"][name] = row
        print(f"\n{name} ({len(clips)} held-out clips)      " + " ".join(f"{'k=' + str(k):>7}" for k in ks))
        for key, values in row.items():
            print(f"{key:<28} " + " ".join(f"{v:>7.2f}" for v in values))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
