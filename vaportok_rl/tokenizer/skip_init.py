"""The closed-form start of the built-in tokenizer's skip path, fitted on training clips before pretraining: the
patch-PCA basis (:func:`fit_patch_basis`) and the skip maps as a quantized clip-level PCA (:func:`fit_linear_path`)."""

from __future__ import annotations

import torch

from vaportok_rl.tokenizer.model import Tokenizer

__all__ = ["fit_linear_path", "fit_patch_basis"]


@torch.no_grad()
def fit_patch_basis(model: Tokenizer, clips: torch.Tensor) -> float:
    """Closed-form patch PCA for the skip path; returns the share of patch variance the basis keeps."""
    r = model.config.skip_rank
    patches = model.patchify(clips).flatten(0, 1).double()  # [N·patches, patch values]
    mean = patches.mean(0)
    cov = torch.cov((patches - mean).T)
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    model.patch_mean.copy_(mean.float())
    if r:
        model.patch_basis.copy_(eigvecs[:, -r:].flip(-1).T.float())
    return float(eigvals[-r:].sum() / eigvals.sum()) if r else 0.0


@torch.no_grad()
def fit_linear_path(
    model: Tokenizer, clips: torch.Tensor, per_token: list[int], scale: float, whiten: float = 1.0, first: int = 0
) -> float:
    """Initialise the skip maps as a clip-level PCA over the patch coefficients, in variance order.

    Token j's code vector starts as (scale * a_i, ..., scale * a_{i+m_j-1}, 1, 0, ...) with a_i the whitened
    PCA coefficients, m_j = per_token[j]; the decoder's skip map inverts it. The transformer's share of the
    code (pre_quant) starts at zero and grows as it learns. Returns the share of variance the components hold."""
    K, c = model.num_latents, model.config.code_dim
    if not any(per_token) or model.skip_in is None:
        return 0.0
    if max(per_token) + 1 > c:
        raise ValueError(f"optim.init_coefs_per_token: {max(per_token)} + 1 constant must fit code_dim={c}")
    coef = ((model.patchify(clips) - model.patch_mean) @ model.patch_basis.T).flatten(1).double()  # [N, patches·rank]
    cov = torch.cov(coef.T)
    eigvals, eigvecs = torch.linalg.eigh(cov)
    eigvals, eigvecs = eigvals.flip(0).clamp_min(1e-12), eigvecs.flip(1)  # descending
    slots = [(j, d) for j in range(K) for d in range(per_token[j])][: eigvecs.shape[1]]  # component i -> (token, dim)
    n = len(slots)
    w_in = torch.zeros(K * c, coef.shape[1], dtype=torch.float64)
    b_in = torch.zeros(K * c, dtype=torch.float64)
    w_out = torch.zeros(K, c, coef.shape[1], dtype=torch.float64)
    mean = coef.mean(0)
    # whiten < 1: components below the first detail token's first one shrink with their variance (1 = exactly 1.0)
    reference = eigvals[sum(per_token[:first])] if first < K else eigvals[0]
    shrink = (eigvals / reference).clamp_max(1.0) ** ((1.0 - whiten) / 2)
    for i, (j, d) in enumerate(slots):
        w_in[j * c + d] = scale * eigvecs[:, i] / eigvals[i].sqrt() * shrink[i]
        b_in[j * c + d] = -w_in[j * c + d] @ mean
        w_out[j, d] = eigvecs[:, i] * eigvals[i].sqrt() / scale / shrink[i]
    b_in[torch.arange(K) * c + torch.tensor(per_token)] = 1.0  # the constant component
    model.skip_in.weight.copy_(w_in.float())
    model.skip_in.bias.copy_(b_in.float())
    model.skip_out.copy_(w_out.float())
    for residual in (model.pre_quant, model.to_patch):  # the transformers start silent, then learn the rest
        residual.weight.zero_()
        residual.bias.zero_()
    # the decoder reads codes back from the latents: start skip_read as the pseudo-inverse of post_quant
    pinv = torch.linalg.pinv(model.post_quant.weight)  # [code_dim, D]
    model.skip_read.weight.copy_(pinv)
    model.skip_read.bias.copy_(-pinv @ model.post_quant.bias)
    # the mean patch coefficients live in patch_mean already; the path starts exact for continuous codes
    return float(eigvals[:n].sum() / eigvals.sum())
