"""``vaportok-rl tokenizer-report [--tokenizer T] [--clips N] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from vaportok_rl.tokenizer.default import load_tokenizer
from vaportok_rl.tokenizer.report import __doc__ as report_doc
from vaportok_rl.tokenizer.report import format_report, tokenizer_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vaportok-rl tokenizer-report", description=report_doc.splitlines()[0])
    parser.add_argument("--tokenizer", default="default", help="'default', a .safetensors file or a run folder")
    parser.add_argument("--clips", type=int, default=256, help="held-out clips per set (default 256)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    try:
        tokenizer = load_tokenizer(args.tokenizer)
    except (FileNotFoundError, ValueError) as err:
        print(f"vaportok-rl tokenizer-report: {err}", file=sys.stderr)
        return 2
    report = tokenizer_report(tokenizer, args.clips)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
