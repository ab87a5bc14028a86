"""Reconstruction metrics of every candidate a judge looks at: one clip decoded keeping k tokens, memoised per
(clip, k), with MSE, PSNR, SSIM and LPIPS.

    clips [N, C, T, H, W], latents [N, K, D] ──decode (clip n, keep k) once──► mse / ssim / lpips [N, K + 1]

Axis letters: docs/design.md.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vaportok_rl.metrics import LPIPSMetric, lpips_features, lpips_to_references, psnr_from_mse, ssim
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer

__all__ = ["SSIM_MIN_SIDE", "CandidateMetrics"]

SSIM_MIN_SIDE = 11  # SSIM's Gaussian window; smaller frames get ssim = null


class CandidateMetrics:
    """Reconstruction metrics per (clip n, keep count k), computed on demand and memoised.

    ``ensure(rows, ks, lpips, ssim)`` decodes each missing pair once (batches of ``chunk`` clips, sorted by clip),
    clamps it to [0, 1] and records MSE, and SSIM and LPIPS when asked (a pair asked again for a metric it lacks
    is decoded again). LPIPS is the real AlexNet LPIPS of
    :func:`vaportok_rl.metrics.lpips_video` (mean over frames; frames upsampled to >= 64 px), computed with the
    reference clip's features shared by all its candidates. ``mse`` / ``ssim`` / ``lpips`` are ``[N, K + 1]``
    arrays (column k; NaN where not computed).
    """

    def __init__(
        self,
        tokenizer: FrozenTokenizer,
        encoded: Encoded,
        clips: Tensor,
        *,
        lpips_metric: LPIPSMetric | None = None,
        chunk: int = 256,
        lpips_chunk_frames: int = 256,
    ):
        if len(encoded) != len(clips):
            raise ValueError(f"encoded: {len(encoded)} clips, but clips has {len(clips)}")
        self.tokenizer, self.encoded, self.clips = tokenizer, encoded, clips
        self.lpips_metric = lpips_metric
        self.chunk, self.lpips_chunk_frames = int(chunk), int(lpips_chunk_frames)
        N, K = len(encoded), tokenizer.num_latents
        self.num_latents = K
        self.mse = np.full((N, K + 1), np.nan)
        self.ssim = np.full((N, K + 1), np.nan)
        self.lpips = np.full((N, K + 1), np.nan)
        self._done = np.zeros((N, K + 1), dtype=bool)
        self._done_ssim = np.zeros((N, K + 1), dtype=bool)
        self._done_lpips = np.zeros((N, K + 1), dtype=bool)
        h, w = clips.shape[-2:]
        self._ssim_ok = min(h, w) >= SSIM_MIN_SIDE
        self.decodes = 0

    @torch.no_grad()
    def ensure(self, rows: np.ndarray, ks: np.ndarray, lpips: bool = False, ssim: bool = False) -> None:
        rows, ks = np.asarray(rows, dtype=np.int64).ravel(), np.asarray(ks, dtype=np.int64).ravel()
        if lpips and self.lpips_metric is None:
            raise ValueError("CandidateMetrics: LPIPS requested but no lpips_metric was given")
        ssim = ssim and self._ssim_ok
        flat = np.unique(rows * (self.num_latents + 1) + ks)  # sorted: by clip, then k
        r, k = np.divmod(flat, self.num_latents + 1)
        todo = ~self._done[r, k] | (lpips & ~self._done_lpips[r, k]) | (ssim & ~self._done_ssim[r, k])
        r, k = r[todo], k[todo]
        for i in range(0, len(r), self.chunk):
            self._compute(r[i : i + self.chunk], k[i : i + self.chunk], lpips, ssim)

    def _compute(self, r: np.ndarray, k: np.ndarray, lpips: bool, with_ssim: bool) -> None:
        dev = self.clips.device
        rt = torch.from_numpy(r).to(dev)
        keep = torch.from_numpy(k).to(dev)
        rec = self.tokenizer.decode(self.encoded.latents[rt], keep).float().clamp(0.0, 1.0)  # [M, C, T, H, W]
        self.decodes += len(r)
        ref = self.clips[rt].float()
        self.mse[r, k] = (rec - ref).pow(2).flatten(1).mean(1).double().cpu().numpy()
        if with_ssim:
            self.ssim[r, k] = ssim(rec, ref).double().cpu().numpy()
            self._done_ssim[r, k] = True
        self._done[r, k] = True
        if lpips:
            self.lpips[r, k] = self._lpips(rec, r)
            self._done_lpips[r, k] = True

    def _lpips(self, rec: Tensor, r: np.ndarray) -> np.ndarray:
        """LPIPS of reconstructions rec [M, C, T, H, W] against clips r [M]; reference features once per clip."""
        module = self.lpips_metric.module
        T = rec.shape[2]
        per = max(1, self.lpips_chunk_frames // T)  # pairs per network pass
        out = []
        for i in range(0, len(r), per):
            rows = r[i : i + per]
            uniq, inv = np.unique(rows, return_inverse=True)
            ref_feats = lpips_features(module, self.clips[torch.from_numpy(uniq).to(self.clips.device)])
            index = torch.from_numpy(inv.reshape(-1))  # [m]: each reconstruction's reference among uniq
            distance = lpips_to_references(module, rec[i : i + per], ref_feats, index, self.lpips_chunk_frames)
            out.append(distance.double().cpu())
        return torch.cat(out).numpy()

    def gather(self, keep: np.ndarray, lpips: bool) -> dict[str, np.ndarray]:
        """Per-clip metrics of one allocation (keep [N] in 1..K): mse, psnr, ssim, lpips arrays [N]."""
        keep = np.asarray(keep, dtype=np.int64)
        rows = np.arange(len(keep))
        self.ensure(rows, keep, lpips=lpips, ssim=True)
        mse = self.mse[rows, keep]
        return {
            "mse": mse,
            "psnr": psnr_from_mse(mse),
            "ssim": self.ssim[rows, keep],
            "lpips": self.lpips[rows, keep] if lpips else np.full(len(keep), np.nan),
        }
