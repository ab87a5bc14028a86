"""Issue 12's maths: decision-level advantages, deduplicated decoding, the per-clip PSNR oracle, tokens saved
against Fixed, the price knob and the search chooser -- each against a hand computation or brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from vaportok_rl.budget import keep_at_price, keep_for_budget
from vaportok_rl.grpo import compute_advantages, grpo_loss
from vaportok_rl.judge import (
    fixed_tokens_for,
    oracle_keep,
    savings_record,
    search_for_budget,
    search_keep,
    tokens_saved,
)
from vaportok_rl.policy import TaildropPolicy
from vaportok_rl.rollout import decode_paths, encode_videos
from vaportok_rl.target_fit import TargetFit, price_targets
from vaportok_rl.tokenizer.head import HeadConfig, TaildropHead

# ---------------------------------------------------------------------------------------- decision credit


def test_decision_advantages_equal_per_clip_group_normalised_rewards():
    # B=1 video, G=3 paths, L=2 clips; rewards psnr (per clip) and token_cost (per clip), weights 1 and 0.5.
    psnr = torch.tensor([[[20.0, 30.0], [22.0, 30.0], [24.0, 33.0]]])  # [B, G, L]
    cost = -torch.tensor([[[4.0, 8.0], [8.0, 8.0], [12.0, 14.0]]])  # [B, G, L]
    R = torch.stack([psnr, cost], dim=-1)  # [B, G, L, R]
    A = compute_advantages(R, [1.0, 0.5], scale_rewards="group", reward_aggregation="sum_then_normalize")
    # by hand: clip 0 totals 18, 18, 18 -> all zero; clip 1 totals 26, 26, 26 -> zero. Make clip 1 differ:
    assert A.shape == (1, 3, 2)
    assert torch.allclose(A, torch.zeros(1, 3, 2))
    R[0, 2, 1, 0] = 36.0  # clip 1, path 2: total 29 against 26, 26
    A = compute_advantages(R, [1.0, 0.5], scale_rewards="group", reward_aggregation="sum_then_normalize")
    t = torch.tensor([26.0, 26.0, 29.0])
    expected = (t - t.mean()) / (t.std() + 1e-4)
    assert torch.allclose(A[0, :, 1], expected)
    assert torch.allclose(A[0, :, 0], torch.zeros(3))  # clip 0's credit is untouched by clip 1's outcome


def test_decision_batch_scaling_uses_one_std_over_every_decision():
    R = torch.randn(2, 4, 3, 1, generator=torch.Generator().manual_seed(0))
    A = compute_advantages(R, [1.0], scale_rewards="batch", reward_aggregation="sum_then_normalize", eps=0.0)
    centred = R[..., 0] - R[..., 0].mean(dim=1, keepdim=True)
    assert torch.allclose(A, centred / R[..., 0].flatten().std())


def test_grpo_loss_takes_per_decision_advantages():
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(2, 3, 4, generator=g).requires_grad_()
    old = logp.detach() + 0.1 * torch.randn(2, 3, 4, generator=g)
    A_path = torch.randn(2, 3, generator=g)
    a, _ = grpo_loss(logp, old, None, A_path, beta=0.0)
    b, _ = grpo_loss(logp, old, None, A_path.unsqueeze(-1).expand(2, 3, 4), beta=0.0)
    assert torch.allclose(a, b)  # a path advantage is a decision advantage shared by the path's decisions
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(logp, old, None, torch.zeros(2, 3, 5), beta=0.0)


# ---------------------------------------------------------------------------------------- deduplicated decode


def test_deduplicated_decode_equals_full(tokenizer, videos):
    B, L = videos.shape[:2]
    G, K = 5, tokenizer.num_latents
    encoded = encode_videos(tokenizer, videos)
    keep = torch.randint(1, 3, (B, G, L), generator=torch.Generator().manual_seed(3))  # many repeats
    calls = []
    original = tokenizer.decode

    def counting(latents, k):
        calls.append(len(k))
        return original(latents, k)

    tokenizer.decode = counting
    out = decode_paths(tokenizer, encoded, keep, chunk=4)
    tokenizer.decode = original
    for b, g, l in itertools.product(range(B), range(G), range(L)):
        one = tokenizer.decode(encoded.latents[b * L + l : b * L + l + 1], keep[b, g, l : l + 1])
        torch.testing.assert_close(out[b, g, l], one[0], rtol=0, atol=1e-6)
    distinct = len({(b * L + l, int(keep[b, g, l])) for b, g, l in itertools.product(range(B), range(G), range(L))})
    assert sum(calls) == distinct < B * G * L
    assert K >= 2


# ---------------------------------------------------------------------------------------- oracle and savings


def brute_force_best(quality: np.ndarray, ks: np.ndarray, budget: float) -> float:
    best = -math.inf
    for choice in itertools.product(range(len(ks)), repeat=quality.shape[0]):
        if ks[list(choice)].mean() <= budget + 1e-9:
            best = max(best, quality[np.arange(quality.shape[0]), list(choice)].mean())
    return best


@pytest.mark.parametrize("seed", range(4))
def test_psnr_oracle_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    ks = np.array([1, 2, 4, 6, 8])
    # concave-ish and convex-ish PSNR curves: the oracle must not assume either
    quality = np.sort(rng.uniform(10, 30, size=(4, len(ks))), axis=1) + rng.normal(0, 0.3, size=(4, len(ks)))
    for budget in (2.0, 3.5, 5.0):
        keep = oracle_keep(quality, ks, budget)
        assert keep.mean() <= budget + 1e-9
        col = {k: j for j, k in enumerate(ks)}
        got = quality[np.arange(4), [col[k] for k in keep]].mean()
        assert got == pytest.approx(brute_force_best(quality, ks, budget), abs=1e-9)


def test_tokens_saved_matches_a_hand_computation():
    # Fixed: mean PSNR 20 dB at k=8, 24 dB at k=16 -> 22 dB costs Fixed 12 tokens.
    fixed_ks, fixed_q = np.array([8, 16]), np.array([20.0, 24.0])
    assert fixed_tokens_for(22.0, fixed_ks, fixed_q) == pytest.approx(12.0)
    assert tokens_saved(9.0, 22.0, fixed_ks, fixed_q) == pytest.approx(1 - 9 / 12)
    assert tokens_saved(15.0, 22.0, fixed_ks, fixed_q) == pytest.approx(1 - 15 / 12)  # worse than Fixed
    assert fixed_tokens_for(19.0, fixed_ks, fixed_q) == 8.0  # below Fixed's curve: its first k
    assert tokens_saved(8.0, 25.0, fixed_ks, fixed_q) == pytest.approx(1 - 8 / 16)  # past it: its largest k


def test_savings_record_by_hand():
    # two clips, k in {1, 2}: clip 0 gains 10 dB from its second token, clip 1 gains 1 dB.
    ks = np.array([1, 2])
    quality = np.array([[10.0, 20.0], [30.0, 31.0]])
    rec = savings_record(np.array([2, 1]), quality, ks)  # the smart allocation, 1.5 tokens, mean 25 dB
    # Fixed: 20 dB at k=1, 25.5 at k=2 -> 25 dB costs 1 + 5/5.5 tokens
    k_fixed = 1 + 5 / 5.5
    assert rec["fixed_tokens"] == pytest.approx(k_fixed)
    assert rec["tokens_saved"] == pytest.approx(1 - 1.5 / k_fixed)
    assert rec["oracle_share"] == pytest.approx(1.0)  # it is the oracle at 1.5 tokens
    dumb = savings_record(np.array([1, 2]), quality, ks)  # 1.5 tokens, mean 20.5 dB
    assert dumb["tokens_saved"] < 0 < rec["tokens_saved"]


# ---------------------------------------------------------------------------------------- price knob


def test_price_knob_meets_budgets_and_is_monotone():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 16, generator=g).cumsum(-1)
    means = [float(keep_at_price(logits, p).float().mean()) for p in np.linspace(-3, 3, 13)]
    assert all(a >= b for a, b in zip(means, means[1:], strict=False))  # a higher price never keeps more
    for budget in (2.0, 5.5, 9.0, 14.0):
        keep, _ = keep_for_budget(logits, budget)
        assert keep.float().mean() <= budget + 1e-9
        assert keep.float().mean() >= budget - 16 / 50  # within one clip's step of the budget


def test_price_knob_on_utility_logits_is_the_oracle():
    # logits = PSNR / T: the knob at price p is argmax_k PSNR - p·T·k, the oracle at price p·T.
    rng = np.random.default_rng(1)
    quality = np.cumsum(rng.uniform(0, 2, size=(6, 8)), axis=1)
    T = 0.5
    for price in (0.2, 0.6, 1.0):
        knob = keep_at_price(torch.as_tensor(quality / T), price / T).numpy()
        assert (knob == hard_oracle_keep(quality, price)).all()


# ---------------------------------------------------------------------------------------- search chooser


def test_search_finds_least_k_reaching_target_and_counts_decodes():
    quality = np.array([[10, 12, 14, 16, 18, 20, 22, 24], [20, 20.5, 21, 21.5, 22, 22.5, 23, 23.5]])
    probes = []

    def psnr(rows, keep):
        probes.append(len(rows))
        return quality[rows, keep - 1]

    result = search_keep(psnr, 2, 8, target=21.0)
    assert result.keep.tolist() == [7, 3]  # 22 dB at k=7 (first >= 21); 21 dB at k=3
    assert result.decodes.tolist() == [3, 3] and sum(probes) == 6  # log2(8) probes per clip
    assert search_keep(psnr, 2, 8, target=99.0).keep.tolist() == [8, 8]
    budgeted = search_for_budget(psnr, 2, 8, budget=4.0)
    assert budgeted.keep.mean() <= 4.0


# ---------------------------------------------------------------------------------------- distillation
K_TOY, D_TOY, N_TOY = 8, 4, 64


def two_kinds_of_clips() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, TaildropHead]:
    """Latents that carry the answer (kind 0 or 1 of N clips), keep counts k [K] and a fresh seeded tiny head."""
    g = torch.Generator().manual_seed(0)
    kind = torch.arange(N_TOY) % 2
    latents = torch.randn(N_TOY, K_TOY, D_TOY, generator=g) * 0.1 + kind[:, None, None].float()
    k = torch.arange(1, K_TOY + 1, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = HeadConfig(latent_dim=D_TOY, num_latents=K_TOY, width=16, layers=1, heads=2, temperature=1.0)
        head = TaildropHead(config)
    return kind, latents, k, head


def fit(head: TaildropHead, latents, utility, price, temperature, knob_prices=(), steps=150) -> list[float]:
    """The enumerated-groups fit the trainer runs (TargetFit.loss), on a hand-made utility table; one clip a video."""
    targets, tilts = price_targets(utility, price, knob_prices, temperature)
    table = TargetFit(
        latents, utility.float(), targets, tilts, clips_per_video=1, videos_per_step=32, seed=0, decodes=0
    )
    policy, losses = TaildropPolicy(head), []
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=0.01)
    for step in range(steps):
        loss, _ = table.loss(policy, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def hard_oracle_keep(quality, price: float) -> np.ndarray:
    """The oracle's keep count per clip at a price: argmax_k quality[n, k] - price·k -> [N] in 1..K."""
    q = np.asarray(quality, dtype=np.float64)
    return (q - price * np.arange(1, q.shape[-1] + 1)).argmax(-1) + 1


def test_enumerated_fit_learns_the_oracle_choice():
    # clip type 0 wants few tokens, type 1 wants many.
    K = K_TOY
    kind, latents, k, head = two_kinds_of_clips()
    quality = torch.where(kind[:, None] == 0, 20 + 0.01 * k, 20 + 1.0 * k)  # [N, K]
    losses = fit(head, latents, quality - 0.1 * k, price=0.1, temperature=0.1)
    assert losses[-1] < losses[0]
    keep = head(latents).argmax(-1) + 1
    assert (keep[kind == 0] == 1).all() and (keep[kind == 1] == K).all()


def test_multi_price_fit_lets_the_knob_reach_other_prices():
    # two kinds of clips with different marginal dB per token; the oracle's choice depends on the price.
    kind, latents, k, head = two_kinds_of_clips()
    # concave piecewise-linear PSNR: kind 0 gains 0.3 dB/token up to k = 3, kind 1 1.5 dB/token up to k = 6, then
    # both 0.1 dB/token: the oracle keeps (3, 6) at 0.2 dB/token, (1, 6) at 1.0, (8, 8) at 0.0
    knee, slope = torch.where(kind == 0, 3, 6)[:, None], torch.where(kind == 0, 0.3, 1.5).double()[:, None]
    quality = 20 + slope * torch.minimum(k, knee) + 0.1 * (k - knee).clamp(min=0)  # [N, K]
    fit(head, latents, quality - 0.2 * k, price=0.2, temperature=0.05, knob_prices=[0.0, 1.0], steps=300)
    with torch.no_grad():
        logits = head(latents)
    for price in (0.0, 0.2, 1.0):  # the knob tilt for price p is (p - λ) / temperature per token
        knob = keep_at_price(logits, (price - 0.2) / 0.05)
        assert (knob.numpy() == hard_oracle_keep(quality, price)).all(), price
