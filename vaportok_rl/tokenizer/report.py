"""``vaportok-rl tokenizer-report``: is this tokenizer worth truncating?

On a held-out set drawn with a fixed seed (synthetic clips, and real-texture clips from images never seen
in pretraining) it reports PSNR and SSIM at k = K/16, K/8, K/4, K/2, K; codebook usage; the AR prior's top-5
accuracy on all K tokens (and chance, 5/V); and the Spearman correlation between the taildrop head's argmax
k and the clips' spatial / temporal complexity.
"""

from __future__ import annotations

import torch

from vaportok_rl.complexity import complexity
from vaportok_rl.metrics import psnr, spearman, ssim
from vaportok_rl.tokenizer.pretrain import heldout_clips
from vaportok_rl.tokenizer.protocol import FrozenTokenizer

SEED_NOTE = "held-out clips: synthetic seed 1000003, textures seed 1000003 from the test images"


def report_ks(K: int) -> list[int]:
    return sorted({max(1, K // 16), max(1, K // 8), max(1, K // 4), max(1, K // 2), K})


@torch.no_grad()
def source_report(tokenizer: FrozenTokenizer, clips: torch.Tensor, chunk: int = 64) -> dict:
    K = tokenizer.num_latents
    enc = [tokenizer.encode(clips[i : i + chunk]) for i in range(0, len(clips), chunk)]
    out: dict = {"clips": len(clips), "psnr": {}, "ssim": {}}
    for k in report_ks(K):
        p, s = [], []
        for i, e in enumerate(enc):
            ref = clips[i * chunk : (i + 1) * chunk]
            rec = tokenizer.decode(e.latents, torch.full((len(ref),), k)).clamp(0, 1)
            p.append(psnr(rec, ref))
            s.append(ssim(rec, ref))
        out["psnr"][str(k)] = round(float(torch.cat(p).mean()), 3)
        out["ssim"][str(k)] = round(float(torch.cat(s).mean()), 4)
    codes = torch.cat([e.codes for e in enc])
    correct = torch.cat([tokenizer.prior_correct(e, topk=5) for e in enc]).float()
    out["codes_used"] = int(codes.unique().numel())
    out["prior_top5_accuracy"] = round(float(correct.mean()), 4)
    head = getattr(tokenizer, "head", None)
    if head is not None:
        argmax_k = torch.cat([head(e.latents).argmax(-1) + 1 for e in enc]).float()
        sc, tc = complexity(clips)
        out["head_argmax_k_mean"] = round(float(argmax_k.mean()), 2)
        out["spearman_head_k_sc"] = round(spearman(argmax_k.numpy(), sc.numpy()), 3)
        out["spearman_head_k_tc"] = round(spearman(argmax_k.numpy(), tc.numpy()), 3)
    return out


def tokenizer_report(tokenizer: FrozenTokenizer, num_clips: int = 256) -> dict:
    C, T, H, W = tokenizer.clip_shape
    V = tokenizer.codebook_size
    report = {
        "fingerprint": tokenizer.fingerprint,
        "num_latents": tokenizer.num_latents,
        "codebook_size": V,
        "clip_shape": [C, T, H, W],
        "heldout": SEED_NOTE,
        "prior_top5_chance": round(5 / V, 5),
    }
    all_codes = []
    for source in ("synthetic", "textures"):
        clips = heldout_clips(num_clips, T, H, source)
        report[source] = source_report(tokenizer, clips)
        all_codes.append(report[source]["codes_used"])
    # usage over both sets together
    both = torch.cat([heldout_clips(num_clips, T, H, s) for s in ("synthetic", "textures")])
    codes = torch.cat([tokenizer.encode(both[i : i + 64]).codes for i in range(0, len(both), 64)])
    report["codebook_usage"] = round(codes.unique().numel() / V, 4)
    return report


def format_report(r: dict) -> str:
    ks = list(r["synthetic"]["psnr"])
    lines = [
        f"tokenizer {r['fingerprint'][:16]}  K={r['num_latents']}  V={r['codebook_size']}  clip={r['clip_shape']}",
        r["heldout"],
        "",
        "| set | metric | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    for source in ("synthetic", "textures"):
        s = r[source]
        lines.append(f"| {source} | PSNR dB | " + " | ".join(f"{s['psnr'][k]:.2f}" for k in ks) + " |")
        lines.append(f"| {source} | SSIM | " + " | ".join(f"{s['ssim'][k]:.3f}" for k in ks) + " |")
    lines.append("")
    lines.append(f"codebook usage: {r['codebook_usage']:.1%} of {r['codebook_size']} codes")
    for source in ("synthetic", "textures"):
        s = r[source]
        line = (
            f"{source}: prior top-5 accuracy {s['prior_top5_accuracy']:.2%} "
            f"({s['prior_top5_accuracy'] / r['prior_top5_chance']:.1f}x chance {r['prior_top5_chance']:.2%})"
        )
        if "spearman_head_k_sc" in s:
            line += (
                f"; head argmax k mean {s['head_argmax_k_mean']:.1f}, Spearman vs SC {s['spearman_head_k_sc']:+.3f},"
                f" vs TC {s['spearman_head_k_tc']:+.3f}"
            )
        lines.append(line)
    return "\n".join(lines)
