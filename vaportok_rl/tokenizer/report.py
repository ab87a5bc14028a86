"""``vaportok-rl tokenizer-report``: is this tokenizer worth truncating?

Measured on the held-out videos of ``vaportok-rl eval`` (32 videos x 4 clips, seed 1000003; textures from images
never seen in pretraining), or on any source or video folder given with ``--data``. Per set: PSNR and SSIM at
k = K/16, K/8, K/4, K/2, K with the PCA floor beside them (:mod:`.pca_floor`, fitted on the tokenizer's training
distribution, same clips, same k, 6-bit coefficients) and the margin over it; the AR prior's top-5 accuracy on
all K tokens and on the retained tokens at each k (the generation proxy GRPO reads); codes used; the Spearman
correlation between the taildrop head's argmax k and the clips' spatial / temporal complexity.
"""

from __future__ import annotations

import torch
from einops import rearrange

from vaportok_rl.complexity import complexity
from vaportok_rl.data import HELDOUT_SEED, heldout_videos
from vaportok_rl.metrics import psnr, spearman, ssim
from vaportok_rl.tokenizer.pca_floor import PCAFloor, fit_pca_floor
from vaportok_rl.tokenizer.pretrain import PretrainDataConfig, training_clips
from vaportok_rl.tokenizer.protocol import FrozenTokenizer, prior_accuracy

DEFAULT_SETS = ("synthetic", "textures")
FLOOR_CLIPS = 2048
"""Training clips the PCA floor is fitted on."""


def report_ks(K: int) -> list[int]:
    return sorted({max(1, K // 16), max(1, K // 8), max(1, K // 4), max(1, K // 2), K})


def training_sample(tokenizer: FrozenTokenizer, clips: int = FLOOR_CLIPS) -> tuple[torch.Tensor, dict]:
    """``clips`` clips of the tokenizer's training distribution: the pool its pretraining recorded
    (``extra["data"]``), else the default recipe's pool. Returns the clips and the pool's settings."""
    _, T, H, _ = tokenizer.clip_shape
    recorded = getattr(tokenizer, "extra", {}).get("data")
    data = PretrainDataConfig(**recorded) if recorded else PretrainDataConfig()
    return training_clips(data, frames=T, size=H, limit=clips), vars(data).copy()


def floor_for(tokenizer: FrozenTokenizer, max_k: int, bits: int = 6, clips: int = FLOOR_CLIPS) -> tuple[PCAFloor, dict]:
    """The PCA floor fitted on :func:`training_sample` (``clips`` clips)."""
    train, pool = training_sample(tokenizer, clips)
    return fit_pca_floor(train, max_k, bits=bits), {"clips": len(train), "bits": bits, "pool": pool}


@torch.no_grad()
def source_report(tokenizer: FrozenTokenizer, clips: torch.Tensor, floor: PCAFloor | None = None, chunk: int = 64):
    K = tokenizer.num_latents
    ks = report_ks(K)
    enc = [tokenizer.encode(clips[i : i + chunk]) for i in range(0, len(clips), chunk)]
    out: dict = {"clips": len(clips), "psnr": {}, "ssim": {}}
    for k in ks:
        p, s = [], []
        for i, e in enumerate(enc):
            ref = clips[i * chunk : (i + 1) * chunk]
            rec = tokenizer.decode(e.latents, torch.full((len(ref),), k)).clamp(0, 1)
            p.append(psnr(rec, ref))
            s.append(ssim(rec, ref))
        out["psnr"][str(k)] = round(float(torch.cat(p).mean()), 3)
        out["ssim"][str(k)] = round(float(torch.cat(s).mean()), 4)
    if floor is not None:
        out["pca_floor_psnr"] = {str(k): round(v, 3) for k, v in floor.psnr(clips, ks).items()}
        out["margin_db"] = {str(k): round(out["psnr"][str(k)] - out["pca_floor_psnr"][str(k)], 3) for k in ks}
    codes = torch.cat([e.codes for e in enc])
    correct = torch.cat([tokenizer.prior_correct(e, topk=5) for e in enc])  # [N, K]
    out["codes_used"] = int(codes.unique().numel())
    out["prior_top5_accuracy"] = round(float(correct.float().mean()), 4)
    out["prior_top5_at_k"] = {
        str(k): round(float(prior_accuracy(correct, torch.full((len(correct),), k)).mean()), 4) for k in ks
    }
    head = getattr(tokenizer, "head", None)
    if head is not None:
        argmax_k = torch.cat([head(e.latents).argmax(-1) + 1 for e in enc]).float()
        sc, tc = complexity(clips)
        out["head_argmax_k_mean"] = round(float(argmax_k.mean()), 2)
        out["spearman_head_k_sc"] = round(spearman(argmax_k.numpy(), sc.numpy()), 3)
        out["spearman_head_k_tc"] = round(spearman(argmax_k.numpy(), tc.numpy()), 3)
    return out, codes


def tokenizer_report(
    tokenizer: FrozenTokenizer,
    data: tuple[str, ...] = DEFAULT_SETS,
    *,
    videos: int = 32,
    clips_per_video: int = 4,
    seed: int = HELDOUT_SEED,
    floor: bool = True,
    floor_clips: int = FLOOR_CLIPS,
) -> dict:
    """The report as a dict (see the module doc); ``data`` names the sets (sources or video folders)."""
    C, T, H, W = tokenizer.clip_shape
    V = tokenizer.codebook_size
    report = {
        "fingerprint": tokenizer.fingerprint,
        "num_latents": tokenizer.num_latents,
        "codebook_size": V,
        "clip_shape": [C, T, H, W],
        "heldout": {"videos": videos, "clips_per_video": clips_per_video, "seed": seed},
        "prior_top5_chance": round(5 / V, 5),
        "sets": {},
    }
    fitted = None
    if floor:
        fitted, report["pca_floor"] = floor_for(tokenizer, tokenizer.num_latents, clips=floor_clips)
    all_codes = []
    for name in data:
        clips, meta = heldout_videos(name, frames=T, size=H, videos=videos, clips_per_video=clips_per_video, seed=seed)
        clips = rearrange(clips, "b l c t h w -> (b l) c t h w")
        rows, codes = source_report(tokenizer, clips, fitted)
        rows["split"] = meta["split"]
        rows["prior_top5_vs_chance"] = round(rows["prior_top5_accuracy"] / report["prior_top5_chance"], 2)
        report["sets"][name] = rows
        all_codes.append(codes)
    report["codebook_usage"] = round(torch.cat(all_codes).unique().numel() / V, 4)
    return report


def format_report(r: dict) -> str:
    sets = r["sets"]
    ks = list(next(iter(sets.values()))["psnr"])
    h = r["heldout"]
    lines = [
        f"tokenizer {r['fingerprint'][:16]}  K={r['num_latents']}  V={r['codebook_size']}  clip={r['clip_shape']}",
        f"held-out videos: {h['videos']} x {h['clips_per_video']} clips, seed {h['seed']} (vaportok-rl eval's sets;"
        " textures from test images)",
    ]
    if "pca_floor" in r:
        f = r["pca_floor"]
        lines.append(
            f"PCA floor: whole-clip PCA, {f['bits']}-bit coefficients in ±3σ, fitted on {f['clips']} clips of the "
            f"training distribution (vaportok_rl.tokenizer.pca_floor, as benchmarks/pca_floor.py)"
        )
    lines += ["", "| set | metric | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    rows = [("PSNR dB", "psnr", "{:.2f}"), ("PCA floor dB", "pca_floor_psnr", "{:.2f}"),
            ("margin dB", "margin_db", "{:+.2f}"), ("SSIM", "ssim", "{:.3f}"), ("prior top-5 @k", "prior_top5_at_k",
            "{:.2%}")]  # fmt: skip
    for name, s in sets.items():
        for label, key, fmt in rows:
            if key in s:
                lines.append(f"| {name} | {label} | " + " | ".join(fmt.format(s[key][k]) for k in ks) + " |")
    lines.append("")
    lines.append(f"codebook usage: {r['codebook_usage']:.1%} of {r['codebook_size']} codes")
    for name, s in sets.items():
        line = (
            f"{name}: prior top-5 accuracy {s['prior_top5_accuracy']:.2%} "
            f"({s['prior_top5_vs_chance']:.1f}x chance {r['prior_top5_chance']:.2%})"
        )
        if "spearman_head_k_sc" in s:
            line += (
                f"; head argmax k mean {s['head_argmax_k_mean']:.1f}, Spearman vs SC {s['spearman_head_k_sc']:+.3f},"
                f" vs TC {s['spearman_head_k_tc']:+.3f}"
            )
        lines.append(line)
    return "\n".join(lines)
