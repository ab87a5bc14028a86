"""Budget control at inference: one tuned head, any mean token budget, through one knob -- a price per token.

A head trained on the reward PSNR(k) - λ·k (GRPO with ``psnr`` + ``token_cost``, or distilled from the
oracle's Boltzmann targets) scores each k of a clip by ~ (PSNR(k) - λ·k) / T plus a per-clip constant. Asking
for another budget is asking for another price: tilt every clip's logits by the same ``price`` per token and
take each clip's best k::

    keep_n(price) = argmax_k  logits[n, k] - price · k          (price = 0: the head's own argmax)

The same tilt for every clip is what the oracle's Lagrangian does (one price for all clips), so the head's
ranking of clips is kept and only the exchange rate moves. ``keep_n(price)`` never rises as the price rises,
so :func:`keep_for_budget` finds the price for a mean budget by bisection, then spends what is left of the
budget on the clips whose logits lose least per token, so the total is the budget's, as the oracle's is.

A caller may forbid a k of a clip by setting its logit to -inf: no function here ever picks it. NaN and +inf
logits are errors (a NaN row would silently keep 1 token).

Axis letters: N clips, K tokens (see docs/design.md).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["keep_at_price", "keep_for_budget"]


def _check_logits(logits: Tensor) -> Tensor:
    """logits [N, K] unchanged, or one ValueError saying what is wrong with them (shape, NaN, +inf, a row
    with every k forbidden): argmax over such rows returns k = 1 or a forbidden k without complaint."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits: expected a tensor [N, K], got {type(logits).__name__}")
    if logits.ndim != 2 or logits.shape[0] < 1 or logits.shape[1] < 1:
        raise ValueError(f"logits: expected shape [N, K] with N, K >= 1, got {tuple(logits.shape)}")
    nan_rows = logits.isnan().any(-1)
    if nan_rows.any():
        rows = nan_rows.nonzero().squeeze(-1)
        raise ValueError(
            f"logits: {len(rows)} of {len(logits)} rows hold NaN (first: row {int(rows[0])}); expected finite"
            " logits, -inf where a k is forbidden"
        )
    pos_inf = logits == float("inf")
    if pos_inf.any():
        n, k = pos_inf.nonzero()[0].tolist()
        raise ValueError(
            f"logits: +inf at row {n}, k = {k + 1} ({int(pos_inf.any(-1).sum())} rows hold +inf); expected finite"
            " logits, -inf where a k is forbidden"
        )
    dead = (logits == float("-inf")).all(-1)
    if dead.any():
        rows = dead.nonzero().squeeze(-1)
        raise ValueError(
            f"logits: row {int(rows[0])} is -inf at every k ({len(rows)} such rows); expected at least one allowed"
            " (finite) k per clip"
        )
    return logits


def _real(name: str, value: object, what: str) -> float:
    """``value`` as a finite float, or one TypeError / ValueError naming ``name``, the value and ``what``."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_complex():
            raise TypeError(f"{name}: expected {what} (a real number), got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {what} (a real number), got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected {what} (a finite real number), got {value}")
    return value


def _keep_at_price(logits: Tensor, price: float) -> Tensor:
    K = logits.shape[-1]
    k = torch.arange(1, K + 1, device=logits.device, dtype=logits.dtype)
    return (logits - price * k).argmax(-1) + 1  # -inf stays -inf at any finite price: never picked


def keep_at_price(logits: Tensor, price: float) -> Tensor:
    """logits [N, K] over k = 1..K -> keep [N] long: argmax_k logits - price·k (ties: the fewest tokens).

    A -inf logit forbids its k; NaN, +inf, a row forbidden everywhere or a non-finite price are ValueErrors."""
    price = _real("price", price, "a price per token")
    return _keep_at_price(_check_logits(logits), price)


def keep_for_budget(logits: Tensor, budget: float, *, rounds: int = 60) -> tuple[Tensor, float]:
    """The allocation keep [N] whose mean keep count is ``budget``, and the price it took.

    logits [N, K] (any scale; the head's, with or without its temperature), -inf where a k is forbidden.
    The total is filled exactly, ``keep.sum() == floor(budget · N)`` (the oracle's cap: the budget is never
    exceeded), whenever the allowed k's can make that sum; with -inf masks that cannot, it is at most the
    budget. The price is the cheapest one whose tilt alone stays within the budget; the tokens it leaves go
    to the clips that lose least logit per token, one move at a time, among allowed k.
    A budget below what the allowed k's can make (every clip at its fewest) is a ValueError."""
    logits = _check_logits(logits).detach().double()
    N, K = logits.shape
    budget = _real("budget", budget, "a mean keep count per clip")
    if not 1 <= budget <= K:
        raise ValueError(f"budget: expected a mean keep count in [1, {K}], got {budget}")
    allowed = logits > float("-inf")  # [N, K]
    total = budget * N
    cap = math.floor(total + 1e-9 * max(1.0, total))  # as allocation.check_problem: float noise must not cost a token
    least = allowed.double().argmax(-1) + 1  # each clip's fewest allowed tokens
    if int(least.sum()) > cap:
        raise ValueError(
            f"budget: {budget} is below the smallest mean keep count the allowed (finite) logits can make,"
            f" {float(least.double().mean()):g}; expected budget >= that"
        )
    finite = logits[allowed]
    span = float(finite.max() - finite.min()) + 1.0
    lo, hi = -span, span  # price lo keeps the most allowed tokens everywhere, price hi the fewest
    for _ in range(rounds):
        mid = 0.5 * (lo + hi)
        if _keep_at_price(logits, mid).double().mean() > budget:
            lo = mid
        else:
            hi = mid
    keep = _keep_at_price(logits, hi)  # mean <= budget, the cheapest price that gets there
    richer = _keep_at_price(logits, lo)  # mean > budget (unless no allowed k reaches it)
    # Spend the rest on the clips that gain from the lower price, those whose logits lose least per token first.
    room = cap - int(keep.sum())
    if room > 0:
        rows = (richer != keep).nonzero().squeeze(-1)
        rows_cost = logits[rows, keep[rows] - 1] - logits[rows, richer[rows] - 1]  # logit given up by moving
        per_token = rows_cost / (richer[rows] - keep[rows]).double()
        for n in rows[per_token.argsort()].tolist():
            step = int(richer[n] - keep[n])
            if step <= room:
                keep[n], room = richer[n], room - step
    # What is still left (less than one of those steps) goes one move at a time to the cheapest per token
    # allowed k above a clip's own that fits, so the total is exact wherever the allowed k's permit.
    k = torch.arange(1, K + 1, device=logits.device)
    while room > 0:
        step = k - keep.unsqueeze(-1)  # [N, K] tokens a move to k costs
        fits = allowed & (step > 0) & (step <= room)
        if not fits.any():
            break  # masks leave no move that fits: at most the budget
        lost = (logits.gather(1, (keep - 1).unsqueeze(-1)) - logits) / step.clamp(min=1).double()
        lost = lost.masked_fill(~fits, float("inf")).flatten()  # row-major: ties go to the first clip, fewest k
        n, j = divmod(int(lost.argmin()), K)
        room -= j + 1 - int(keep[n])
        keep[n] = j + 1
    return keep, hi
