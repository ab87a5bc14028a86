"""``vaportok-rl tokenizer-report [--tokenizer T] [--data D ...] [--videos N] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from vaportok_rl.data import HELDOUT_SEED
from vaportok_rl.tokenizer.default import load_tokenizer_spec
from vaportok_rl.tokenizer.report import DEFAULT_SETS, format_report, tokenizer_report
from vaportok_rl.tokenizer.report import __doc__ as report_doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vaportok-rl tokenizer-report", description=report_doc.splitlines()[0])
    parser.add_argument(
        "--tokenizer", default="default", help="'default', a .safetensors file, a run folder or 'file.py:factory'"
    )
    parser.add_argument(
        "--data",
        nargs="+",
        default=list(DEFAULT_SETS),
        help="held-out sets: 'synthetic', 'textures', 'mixed' or folders of .mp4/.avi/.webm files "
        "(default: synthetic textures, the sets of vaportok-rl eval)",
    )
    parser.add_argument("--videos", type=int, default=32, help="videos per set (default 32, as eval)")
    parser.add_argument("--clips-per-video", type=int, default=4, help="clips per video (default 4, as eval)")
    parser.add_argument("--seed", type=int, default=HELDOUT_SEED, help=f"held-out seed (default {HELDOUT_SEED})")
    parser.add_argument("--floor-clips", type=int, default=2048, help="training clips the PCA floor fits on")
    parser.add_argument("--no-floor", action="store_true", help="skip the PCA floor (it fits in ~10 s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    for option in ("videos", "clips_per_video", "floor_clips"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')}: expected a positive integer, got {getattr(args, option)}")
    torch.set_num_threads(2)
    try:
        tokenizer = load_tokenizer_spec(args.tokenizer)
        report = tokenizer_report(
            tokenizer,
            tuple(args.data),
            videos=args.videos,
            clips_per_video=args.clips_per_video,
            seed=args.seed,
            floor=not args.no_floor,
            floor_clips=args.floor_clips,
        )
    except ValueError as err:  # ConfigError is a ValueError; data errors name the set
        print(f"vaportok-rl tokenizer-report: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
