"""``vaportok-rl export RUN_DIR --out DIR [--format torchscript] [--overwrite] [--eval-json FILE]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaportok_rl.export import EXPORT_FILES, ExportError, export_run
from vaportok_rl.tokenizer.head import read_json
from vaportok_rl.torchscript import TORCHSCRIPT_TOLERANCE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vaportok-rl export",
        description="Export a tuned taildrop head: model.safetensors + config.json + README.md (model card). "
        "Load it with TaildropHead.from_pretrained(OUT, tokenizer=...).",
    )
    parser.add_argument(
        "run_dir",
        help="a finished `vaportok-rl train` folder (log.output_dir), or one of its checkpoints/step-NNNNNN folders",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="export folder to write (created; a folder holding anything but an export of this same head is "
        "refused unless --overwrite; the files are renamed into place only once all are written)",
    )
    parser.add_argument(
        "--format",
        choices=["safetensors", "torchscript"],
        default="safetensors",
        help="'torchscript' also writes head.torchscript.pt, checked against the eager head "
        f"(max abs diff <= {TORCHSCRIPT_TOLERANCE:g}) before it is written",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the export files (model.safetensors, config.json, README.md, head.torchscript.pt) in an --out "
        "that holds anything else: another head's export, your files (left alone), another command's run",
    )
    parser.add_argument("--force", action="store_true", help=argparse.SUPPRESS)  # the older name of --overwrite
    parser.add_argument(
        "--eval-json",
        metavar="FILE",
        help="evaluation numbers to include in config.json and the model card: the eval.json "
        "that `vaportok-rl eval --head OUT` writes (its table goes into the card), or any JSON "
        "object of metrics",
    )
    args = parser.parse_args(argv)
    try:
        eval_results = None
        if args.eval_json:
            eval_results = read_json(Path(args.eval_json), "--eval-json")
            if not isinstance(eval_results, dict):
                raise ExportError(f"--eval-json {args.eval_json}: expected a JSON object of metrics")
        out = export_run(
            args.run_dir,
            args.out,
            torchscript=args.format == "torchscript",
            overwrite=args.overwrite or args.force,
            eval_results=eval_results,
        )
    except ExportError as error:
        print(f"vaportok-rl export: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a disk error: nothing was moved into place, the folder is as it was
        what = f"cannot write {Path(error.filename).name} " if error.filename else ""
        print(
            f"vaportok-rl export: error: --out {args.out}: {what}({error.strerror or error}); nothing was exported "
            f"and --out is as it was",
            file=sys.stderr,
        )
        return 2
    files = sorted(p.name for p in out.iterdir() if p.name in EXPORT_FILES)
    print(f"wrote {out}: {', '.join(files)}")
    return 0
