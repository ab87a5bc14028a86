"""How each chooser picks k per clip, before any of them is judged: the head as a policy (argmax, pre_argmax,
sampled keep counts), the head's scores fed to AdapTok's budgeted allocators, and the head's logits (which the
price knob, :func:`vaportok_rl.budget.keep_for_budget`, turns into keep counts at any mean budget). The search
chooser, which needs only the decoder, is :mod:`vaportok_rl.judge.search`; the oracles are
:mod:`vaportok_rl.judge.oracles`.

    latents [N, K, D] ──► head ──► P(k) [N, K] ──► policy keep [N] (argmax / pre_argmax / sample)
                                       └─► HeadScorer: P(k <= k_q) [N, Q] ──► allocator at a budget ──► keep [N]

Axis letters: N clips, K tokens, D latent width, Q k-grid points (docs/design.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from vaportok_rl.allocators import allocate
from vaportok_rl.judge.inputs import check_k_grid
from vaportok_rl.policy import TaildropPolicy
from vaportok_rl.tokenizer.head import TaildropHead
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer

__all__ = ["BASELINES", "HEAD_ILP_OPTIONS", "HeadScorer", "allocator_keep", "policy_keeps"]

BASELINES = ("fixed", "bithr", "bidelta", "ilp")
"""AdapTok's allocators, always compared (plus ``--allocator`` when it is ``fast``)."""
HEAD_ILP_OPTIONS = {"mip_rel_gap": 1e-4, "time_limit": 10.0}
"""``ilp`` on the head's scores: HiGHS's default relative gap and a time limit. The head's CDFs can be nearly
linear (many near-ties), where proving a gap of exactly 0 takes HiGHS minutes for a 1e-4 difference in a proxy
objective; the oracle, whose objective is the one that matters, is solved to gap 0 (``ORACLE_ILP_TIME_LIMIT``)."""


class HeadScorer:
    """Quality from the head's distribution: ``quality[n, q] = P(k <= k_grid[q])``, the head's CDF.

    Why the CDF. The head puts mass on "how many tokens this clip needs"; ``P(k <= x)`` is its probability that
    ``x`` tokens suffice. Unlike ``P(k = x)`` (which peaks at the mode and falls after it), it is non-decreasing
    in ``x`` like a true quality curve -- more tokens never hurt -- which AdapTok's threshold searches assume
    (their score must fall as tokens are added) and the knapsack rewards sensibly. It lies in [0, 1] for every
    clip, so one global threshold means the same thing everywhere: ``bithr`` on it keeps each clip's head quantile
    at a common level, ``bidelta`` stops where the next grid step holds less than a common share of mass, and
    ``ilp`` / ``fast`` maximise the expected number of clips whose needed count is covered.
    """

    name = "head"

    def __init__(self, head: TaildropHead, chunk: int = 1024):
        self.head = head
        self.chunk = chunk

    @torch.no_grad()
    def __call__(self, tokenizer: FrozenTokenizer, encoded: Encoded, clips: Tensor | None, k_grid) -> np.ndarray:
        grid = check_k_grid(k_grid, self.head.config.num_latents)
        dev = next(self.head.parameters()).device
        parts = []
        for i in range(0, len(encoded), self.chunk):
            logits = self.head(encoded.latents[i : i + self.chunk].to(dev)).double()  # [n, K]
            parts.append(torch.softmax(logits, -1).cumsum(-1).clamp(0.0, 1.0).cpu())  # CDF over k = 1..K
        cdf = torch.cat(parts).numpy()  # [N, K]
        return cdf[:, grid - 1]  # [N, Q]


@torch.no_grad()
def policy_keeps(
    policy: TaildropPolicy, latents: Tensor, modes: Sequence[str], seed: int, chunk: int
) -> tuple[Tensor, dict[str, np.ndarray]]:
    """The head's own keep counts on latents [N, K, D]: (argmax keep [N], ``{"policy/<mode>": keep [N]}``), the
    sampled modes drawing, in the order of ``modes``, from one generator seeded with ``seed``."""
    N = len(latents)
    argmax_keep = torch.cat([policy.argmax_keep(latents[i : i + chunk]) for i in range(0, N, chunk)])
    generator = torch.Generator(device=latents.device).manual_seed(int(seed))
    keeps: dict[str, np.ndarray] = {}
    for mode in modes:
        if mode == "argmax":
            k = argmax_keep
        else:
            k = torch.cat([policy.sample(latents[i : i + chunk], mode, generator) for i in range(0, N, chunk)])
        keeps[f"policy/{mode}"] = k.cpu().numpy().astype(np.int64)
    return argmax_keep, keeps


def allocator_keep(name: str, head_quality: np.ndarray, grid: np.ndarray, budget: float) -> np.ndarray:
    """Allocator ``name`` on the head's scores [N, Q] at a mean budget: keep counts [N] on the grid (``ilp``
    with :data:`HEAD_ILP_OPTIONS`)."""
    options = dict(HEAD_ILP_OPTIONS) if name == "ilp" else {}
    return grid[allocate(name, head_quality, grid, budget, **options).choice]
