"""``vaportok-rl eval --head H --data D --allocator A [--budget B] [--out DIR] [--json] ...`` (docs/eval.md)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
from pathlib import Path

import torch
from torch import Tensor

from vaportok_rl.allocators import ALLOCATORS
from vaportok_rl.data import SOURCES, VideoFolder, heldout_videos
from vaportok_rl.enumerated import TableCache, default_cache_dir
from vaportok_rl.judge import (
    HELDOUT_SEED,
    ORACLES,
    PLOTS,
    EvalError,
    eval_memory_problem,
    evaluate,
    format_table,
    heldout_pool,
    load_head_spec,
    load_measure,
    measure_table,
    write_plots,
)
from vaportok_rl.resources import device_problem
from vaportok_rl.rewards import RewardError
from vaportok_rl.run_folder import LOCK, RECORD, RunFolder, RunFolderError, claim
from vaportok_rl.runs import SHIPPED_HEADS
from vaportok_rl.tokenizer.default import load_tokenizer
from vaportok_rl.tokenizer.protocol import FrozenTokenizer

EVAL_FILES = ("eval.json", *(f"{name}.png" for name in PLOTS))
"""What an eval writes in --out (what --overwrite may replace there)."""


def _positive_int(option: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{option}: expected a positive integer, got {text!r}")
        return value

    return parse


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive mean token count per clip, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vaportok-rl eval",
        description="Evaluate a taildrop head against AdapTok's budgeted allocators and the oracle frontier "
        "(docs/eval.md).",
    )
    p.add_argument(
        "--head",
        required=True,
        help="'default' (the packaged GRPO-tuned head), 'pretrained' (the tokenizer's own head), an "
        "exported head folder or a GRPO run folder",
    )
    p.add_argument(
        "--data",
        required=True,
        help="'synthetic', 'textures' (held-out test images) or a folder of .mp4/.avi/.webm files",
    )
    p.add_argument(
        "--allocator",
        required=True,
        choices=sorted(ALLOCATORS),
        help="headline allocator on the head's scores (fixed/bithr/bidelta/ilp are always compared too)",
    )
    p.add_argument(
        "--budget",
        type=_budget,
        default=None,
        help="mean tokens per clip (default: the head's own argmax mean token count)",
    )
    p.add_argument(
        "--budgets",
        type=_budget,
        nargs="+",
        default=None,
        metavar="B",
        help="the sweep's budgets, mean tokens per clip (default: 8 evenly spaced from K/16 to K)",
    )
    _add_data_and_output_options(p)
    return p


def _add_data_and_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--videos",
        type=_positive_int("--videos"),
        default=32,
        help="videos to evaluate (default 32; a folder gives at most the files it holds)",
    )
    p.add_argument(
        "--clips-per-video", type=_positive_int("--clips-per-video"), default=4, help="clips per video (default 4)"
    )
    p.add_argument("--tokenizer", default="default", help="'default' or a tokenizer .safetensors / run folder")
    p.add_argument("--json", action="store_true", help="print only the JSON report on stdout")
    p.add_argument(
        "--out",
        default=None,
        help="folder for eval.json and the PNG plots (default runs/eval/<head>-<data>[-<measure>]; a folder "
        "holding another eval's report is refused unless --overwrite)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the report and plots of an earlier eval in --out (other files there are left alone)",
    )
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS (the slowest metric on CPU)")
    p.add_argument("--seed", type=int, default=HELDOUT_SEED, help=f"held-out data seed (default {HELDOUT_SEED})")
    p.add_argument(
        "--oracle",
        default="fast",
        choices=ORACLES,
        help="oracle solver on the true distortion (fast: ILP fallback if not certified)",
    )
    p.add_argument(
        "--measure",
        default="psnr",
        help="the per-clip quality to judge by: psnr (default), mse, ssim, lpips, or a reward plugin spec that returns "
        "[B, G, L] (its declared price_per_token is added back); Fixed, the oracle, tokens saved and share are "
        "computed under it, beside PSNR",
    )
    p.add_argument(
        "--plugin-path",
        action="append",
        default=[],
        metavar="DIR",
        help="folder searched first for a --measure plugin given by short name (repeatable)",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--force", action="store_true", help="load a head recorded for another tokenizer")


def _data_name(data: str) -> str:
    return data if data in SOURCES else (Path(data).resolve().name or "folder")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "x"


def _head_name(spec: str) -> str:
    """A folder name for ``--head``: the shipped name, or the head folder's name (a checkpoint folder:
    ``<run>-step-NNNNNN``; a file inside a head folder: that folder's)."""
    if spec in ("pretrained", *SHIPPED_HEADS):
        return spec
    path = Path(spec).expanduser().resolve()
    if path.is_file():
        path = path.parent
    if path.parent.name == "checkpoints" and path.parent.parent.name:
        return f"{path.parent.parent.name}-{path.name}"
    return path.name or "head"


def default_out(args) -> Path:
    """``runs/eval/<head>-<data>[-<measure>]``: evals of different heads (data, measures) never share a folder."""
    name = f"{_head_name(args.head)}-{_data_name(args.data)}"
    if args.measure != "psnr":
        measure = args.measure.split(":")[-1] if ":" in args.measure else Path(args.measure).stem or args.measure
        name += f"-{measure}"
    return Path("runs") / "eval" / _slug(name)


def check_device(text: str | None) -> torch.device:
    """``--device``: a torch device that exists here (default: cuda if available, else cpu), or EvalError."""
    device, problem = device_problem(text)
    if problem:
        raise EvalError(f"--device {text}: {problem}")
    return device


def _check_memory(args, tokenizer: FrozenTokenizer, device: torch.device) -> None:
    """Refuse an evaluation set whose tensors cannot fit, before any video is loaded or decoded."""
    videos = args.videos
    if args.data not in SOURCES and Path(args.data).is_dir():  # a folder gives at most the files it holds
        C, T, H, W = tokenizer.clip_shape
        with contextlib.suppress(ValueError, OSError):
            videos = min(videos, len(VideoFolder(args.data, clips_per_video=args.clips_per_video, frames=T, size=H)))
    clips = videos * args.clips_per_video
    shape = "×".join(str(int(v)) for v in tokenizer.clip_shape)
    held = f"the evaluation set (--videos {videos} × --clips-per-video {args.clips_per_video} clips of {shape})"
    problem = eval_memory_problem(tokenizer.clip_shape, clips, tokenizer.num_latents, device, held)
    if problem:
        raise EvalError(f"{problem}; lower --videos or --clips-per-video")


def _load_data(args, tokenizer: FrozenTokenizer) -> tuple[Tensor, dict]:
    C, T, H, W = tokenizer.clip_shape
    if H != W or C != 3:
        raise EvalError(f"--tokenizer: the data sources give square RGB clips, but the tokenizer wants {(C, T, H, W)}")
    try:
        data, meta = heldout_videos(
            args.data, frames=T, size=H, videos=args.videos, clips_per_video=args.clips_per_video, seed=args.seed
        )
    except ValueError as err:
        raise EvalError(f"--{err}") from None
    return data, {"data": meta["data"], "split": meta["split"], "videos": meta["videos"]}


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send file-descriptor-level stdout to stderr (solvers such as HiGHS may print from C), so that ``--json``
    leaves nothing but the JSON on stdout."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no usable descriptors (embedded interpreters): nothing to redirect
        yield
        return
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed the message naming the option
        return int(exit_.code or 0)
    say = (lambda msg: print(f"eval: {msg}", file=sys.stderr)) if not args.json else (lambda msg: None)
    out = Path(args.out) if args.out else default_out(args)
    folder = None
    try:
        device = check_device(args.device)
        # before any work: an unwritable --out, or one holding another report, must not cost a whole evaluation
        folder = _claim(out, args)
        try:
            tokenizer = load_tokenizer(args.tokenizer)
        except (FileNotFoundError, ValueError, OSError) as err:
            raise EvalError(f"--tokenizer: cannot load {args.tokenizer!r}: {err}") from None
        head = load_head_spec(args.head, tokenizer, force=args.force)
        if isinstance(tokenizer, torch.nn.Module):
            tokenizer.to(device)
        head.to(device)
        _check_budgets(args, tokenizer.num_latents)
        measure = _load_measure(args)  # before any work: a bad plugin costs nothing
        _check_memory(args, tokenizer, device)  # before any video is loaded or decoded
        videos, info = _load_data(args, tokenizer)
        say(f"{videos.shape[0]} videos x {videos.shape[1]} clips from {args.data}")
        info["head"] = args.head
        table = None if measure is None else _measure_table(args, measure, tokenizer, videos.to(device), info)
        if table is not None:
            say(f"scored every k of every clip under {args.measure}")
        with _stdout_to_stderr():
            report = evaluate(
                tokenizer,
                head,
                videos.to(device),
                allocator=args.allocator,
                budget=args.budget,
                sweep_budgets=args.budgets,
                lpips=not args.no_lpips,
                seed=args.seed,
                oracle=args.oracle,
                measure=table,
                info=info,
                log=say,
            )
    except EvalError as err:
        _abandon(folder)
        print(f"vaportok-rl eval: error: {err}", file=sys.stderr)
        return 2
    except BaseException:
        _abandon(folder)
        raise
    try:
        return _write(report, out, folder, args)
    finally:
        folder.release()


def _write(report: dict, out: Path, folder: RunFolder, args) -> int:
    """Results first (nothing computed is lost if the disk fails), then the files they name."""
    report["plots"] = {name: str(out / f"{name}.png") for name in PLOTS}
    if args.json:
        print(json.dumps(report, indent=1, allow_nan=False), flush=True)
    else:
        print(format_table(report), flush=True)
    try:
        write_plots(report, out)
        (out / "eval.json").write_text(json.dumps(report, indent=1, allow_nan=False))
        folder.finish()
    except OSError as err:
        print(
            f"vaportok-rl eval: error: --out {out}: cannot write {err.filename or out} ({err.strerror or err}); "
            f"the report was printed above",
            file=sys.stderr,
        )
        return 2
    if not args.json:
        print(f"report: {out / 'eval.json'}")
    return 0


def _claim(out: Path, args) -> RunFolder:
    """Claim ``--out`` for this eval (vaportok_rl.run_folder): a user's files, another kind of run or a finished
    eval there are refused unless ``--overwrite``; an unwritable folder is refused. Before any work."""
    fresh = not out.exists() or (out.is_dir() and not any(out.iterdir()))
    try:
        folder = claim(
            out,
            "eval",
            writes=EVAL_FILES,
            overwrite=args.overwrite,
            resumable=(),
            what="--out",
            head=args.head,
            data=args.data,
            measure=args.measure,
        )
    except RunFolderError as err:
        raise EvalError(f"{err}; nothing was evaluated") from None
    folder.fresh = fresh  # made (or found empty) by this eval: removed again if it fails before writing
    return folder


def _abandon(folder: RunFolder | None) -> None:
    """An eval that failed before writing its report: drop the lock, and remove a folder it made itself."""
    if folder is None:
        return
    folder.release()
    if getattr(folder, "fresh", False):
        for name in (RECORD, LOCK):
            with contextlib.suppress(OSError):
                (folder.path / name).unlink()
        with contextlib.suppress(OSError):
            folder.path.rmdir()  # only when empty: nothing else is ever removed


def _load_measure(args) -> tuple[str, object] | None:
    """(spec, plugin) of ``--measure``, or None for PSNR (the report's own table); EvalError names a bad one."""
    if args.measure == "psnr":
        return None
    for folder in args.plugin_path:
        if not Path(folder).is_dir():
            raise EvalError(f"--plugin-path {folder}: not a folder")
    try:
        return load_measure(args.measure, args.plugin_path)
    except RewardError as err:
        raise EvalError(f"--measure {args.measure}: {err}") from None


def _measure_table(args, measure: tuple[str, object], tokenizer: FrozenTokenizer, videos: Tensor, info: dict):
    """(``--measure``, quality [N, K]) of the held-out videos under the measure (cached); EvalError names it."""
    spec, plugin = measure
    pool = heldout_pool(info["data"], info["split"], args.seed, int(videos.shape[0]), int(videos.shape[1]))
    try:
        _, quality = measure_table(tokenizer, videos, plugin, spec, pool=pool, cache=TableCache(default_cache_dir()))
    except RewardError as err:
        raise EvalError(f"--measure {args.measure}: {err}") from None
    return args.measure, quality.numpy()


def _check_budgets(args, K: int) -> None:
    """``--budget`` and ``--budgets``: mean token counts in [1, K], before any work."""
    for option, what, values in (
        ("--budget", "a mean token count", [] if args.budget is None else [args.budget]),
        ("--budgets", "mean token counts", args.budgets or []),
    ):
        bad = [b for b in values if not 1 <= b <= K]
        if bad:
            raise EvalError(f"{option}: expected {what} in [1, {K}] (K of this tokenizer), got {bad[0]:g}")
