#!/usr/bin/env python3
"""What a linear code of k tokens could reach on eval's held-out videos, next to the PCA floor.

For each held-out set of ``vaportok-rl eval`` (32 videos x 4 clips, seed 1000003) and each k it prints, in mean
per-clip PSNR (dB):
  floor     the 6-bit PCA floor tokenizer-report prints (k coefficients, fitted on the training distribution);
  pca xM    whole-clip PCA keeping k*M coefficients with no quantisation at all: k tokens carrying M real
            numbers each, losslessly. A token of log2(V) = 10 bits carries 2 coefficients at ~5 bits each
            nearly losslessly, 8 only at ~1.25 bits each: a linear tokenizer sits well below the x8 row, and
            only structure a PCA cannot see (a non-linear code) lifts it above.

    python benchmarks/tokenizer_bounds.py [--tokenizer default] [--train-clips 2048]

The training distribution is the tokenizer's recorded pretraining pool (as in tokenizer-report).
"""

import argparse
import json

import torch
from einops import rearrange

from vaportok_rl.data import heldout_videos
from vaportok_rl.tokenizer import load_tokenizer
from vaportok_rl.tokenizer.pca_floor import fit_pca_floor
from vaportok_rl.tokenizer.report import report_ks, training_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="default")
    ap.add_argument("--train-clips", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(2)
    tokenizer = load_tokenizer(args.tokenizer)
    _, T, H, _ = tokenizer.clip_shape
    K = tokenizer.num_latents
    ks = report_ks(K)
    train, _ = training_sample(tokenizer, args.train_clips)
    floor = fit_pca_floor(train, K)  # exactly the floor tokenizer-report prints
    full = fit_pca_floor(train, min(len(train) - 1, 8 * K))  # up to 8 coefficients per token
    out = {"k": ks, "train_clips": len(train), "sets": {}}
    for name in ("synthetic", "textures"):
        videos, _ = heldout_videos(name, frames=T, size=H)
        clips = rearrange(videos, "b l c t h w -> (b l) c t h w").flatten(1)
        row = {"floor": [round(v, 2) for v in floor.psnr(clips, ks).values()]}
        for m in (1, 2, 4, 8):
            coefs = [min(k * m, full.basis.shape[1]) for k in ks]
            values = full.psnr(clips, coefs, quantize=False)  # {coefficients: dB}
            row[f"pca x{m}"] = [round(values[q], 2) for q in coefs]
        out["sets"][name] = row
        print(f"\n{name} ({len(clips)} held-out clips)      " + " ".join(f"{'k=' + str(k):>7}" for k in ks))
        for key, values in row.items():
            print(f"{key:<28} " + " ".join(f"{v:>7.2f}" for v in values))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
