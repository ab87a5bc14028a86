"""Budget control at inference: one tuned head, any mean token budget, through one knob -- a price per token.

A head trained on the reward PSNR(k) - λ·k (GRPO with ``psnr`` + ``token_cost``, or distilled from the
oracle's Boltzmann targets) scores each k of a clip by ~ (PSNR(k) - λ·k) / T plus a per-clip constant. Asking
for another budget is asking for another price: tilt every clip's logits by the same ``price`` per token and
take each clip's best k::

    keep_n(price) = argmax_k  logits[n, k] - price · k          (price = 0: the head's own argmax)

The same tilt for every clip is what the oracle's Lagrangian does (one price for all clips), so the head's
ranking of clips is kept and only the exchange rate moves. ``keep_n(price)`` never rises as the price rises,
so :func:`keep_for_budget` finds the price for a mean budget by bisection, then spends what is left of the
budget one token step at a time on the clips whose logits lose least by it.

Axis letters: N clips, K tokens (see docs/design.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["keep_at_price", "keep_for_budget"]


def keep_at_price(logits: Tensor, price: float) -> Tensor:
    """logits [N, K] over k = 1..K -> keep [N] long: argmax_k logits - price·k (ties: the fewest tokens)."""
    K = logits.shape[-1]
    k = torch.arange(1, K + 1, device=logits.device, dtype=logits.dtype)
    return (logits - price * k).argmax(-1) + 1


def keep_for_budget(logits: Tensor, budget: float, *, rounds: int = 60) -> tuple[Tensor, float]:
    """The allocation [N] whose mean keep count is ``budget`` (within 1/N of a token, where reachable), and the
    price it took. logits [N, K] (any scale; the head's, with or without its temperature)."""
    N, K = logits.shape
    if not 1 <= budget <= K:
        raise ValueError(f"budget: expected a mean keep count in [1, {K}], got {budget}")
    logits = logits.double()
    span = float(logits.max() - logits.min()) + 1.0
    lo, hi = -span, span  # price lo keeps K everywhere, price hi keeps 1 everywhere
    for _ in range(rounds):
        mid = 0.5 * (lo + hi)
        if keep_at_price(logits, mid).double().mean() > budget:
            lo = mid
        else:
            hi = mid
    keep = keep_at_price(logits, hi)  # mean <= budget, the cheapest price that gets there
    richer = keep_at_price(logits, lo)  # mean > budget
    # Spend the rest on the clips that gain from the lower price, those whose logits lose least per token first.
    room = int(round(budget * N)) - int(keep.sum())
    if room > 0:
        rows = (richer != keep).nonzero().squeeze(-1)
        rows_cost = logits[rows, keep[rows] - 1] - logits[rows, richer[rows] - 1]  # logit given up by moving
        per_token = rows_cost / (richer[rows] - keep[rows]).double()
        for n in rows[per_token.argsort()].tolist():
            step = int(richer[n] - keep[n])
            if step <= room:
                keep[n], room = richer[n], room - step
    return keep, hi
