#!/usr/bin/env python3
"""The PCA floor: PSNR of a variance-ordered linear basis fitted in closed form, kept to k components
(the maths lives in vaportok_rl.tokenizer.pca_floor; tokenizer-report prints the same floor beside its rows).

A tail-drop tokenizer that does not beat this at every k is not yet worth truncating.

    python benchmarks/pca_floor.py --train train.pt --test test.pt --k 8,16,32,64,128 --bits 6

--train / --test: clips with values in [0, 1], shape [N, C, T, H, W] (any shape with N first works),
saved with torch.save (a tensor) or numpy.save. Prints a table and, last, one JSON line.
"""

import argparse
import json
import sys

import torch

from vaportok_rl.tokenizer.pca_floor import fit_pca_floor


def load(path: str) -> torch.Tensor:
    if path.endswith(".npy"):
        import numpy as np

        return torch.from_numpy(np.load(path, allow_pickle=False))
    x = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(x, torch.Tensor):
        sys.exit(f"{path}: expected a tensor, got {type(x).__name__}")
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--k", default="8,16,32,64,128")
    ap.add_argument("--bits", type=int, default=6, help="uniform levels 2**bits per coefficient in ±3σ")
    args = ap.parse_args()
    train, test = load(args.train).float(), load(args.test).float()
    if train[0].numel() != test[0].numel():
        sys.exit(f"train clips have {train[0].numel()} values each, test clips {test[0].numel()}")
    ks = sorted(int(k) for k in args.k.split(","))
    try:
        floor = fit_pca_floor(train, ks[-1], bits=args.bits)
    except ValueError as err:
        sys.exit(str(err))
    test = test.flatten(1)
    out = {
        "k": ks,
        "continuous": [round(v, 2) for v in floor.psnr(test, ks, quantize=False).values()],
        f"{args.bits}bit": [round(v, 2) for v in floor.psnr(test, ks).values()],
    }
    print("k            " + " ".join(f"{k:>7}" for k in ks))
    for name in ("continuous", f"{args.bits}bit"):
        print(f"{name:<12} " + " ".join(f"{v:>7.2f}" for v in out[name]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
