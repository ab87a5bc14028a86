"""grpo_loss and compute_advantages against plain per-element loop transcriptions of their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from vaportok_rl.grpo import LOSS_TYPES, compute_advantages, grpo_loss

EPS_LOW, EPS_HIGH, BETA = 0.2, 0.28, 0.1


def assert_close(actual, expected, rtol=1e-7, atol=1e-9):
    """torch.allclose with a message (torch.testing.assert_close costs ~1 s importing torch.distributed)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual - expected).abs().max().item()


# ---------------------------------------------------------------- reference transcription


def _value(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def reference_loss(logp, old_logp, ref_logp, adv, mask, eps_low, eps_high, beta, loss_type, exp=math.exp):
    """Loops over b, g, l. Works on nested lists of floats (exp=math.exp) or on tensors indexed element
    by element (exp=torch.exp), so autograd can differentiate it."""
    B, G, L = len(logp), len(logp[0]), len(logp[0][0])
    total, n_valid, path_means = 0.0, 0, []
    kl_sum = ent_sum = low = high = region = 0.0
    for b in range(B):
        for g in range(G):
            path_sum, path_n = 0.0, 0
            a = adv[b][g]
            for l in range(L):
                if mask is not None and not mask[b][g][l]:
                    continue
                ratio = exp(logp[b][g][l] - old_logp[b][g][l])
                clipped = max(1 - eps_low, min(1 + eps_high, ratio))
                objective = min(ratio * a, clipped * a)
                kl = 0.0
                if beta != 0:
                    d = ref_logp[b][g][l] - logp[b][g][l]
                    kl = exp(d) - d - 1
                loss = -objective + beta * kl
                path_sum, path_n = path_sum + loss, path_n + 1
                total, n_valid = total + loss, n_valid + 1
                kl_sum += _value(kl)
                ent_sum += -_value(logp[b][g][l])
                is_low = _value(ratio) < 1 - eps_low and a < 0
                is_high = _value(ratio) > 1 + eps_high and a > 0
                low, high, region = low + is_low, high + is_high, region + (is_low or is_high)
            if path_n > 0:
                path_means.append(path_sum / path_n)
    if loss_type == "grpo":
        loss = sum(path_means) / len(path_means) if path_means else 0.0
    elif loss_type == "dapo":
        loss = total / n_valid if n_valid else 0.0
    else:
        loss = total / (B * G * L)
    n = max(n_valid, 1)
    metrics = {
        "kl": kl_sum / n,
        "entropy": ent_sum / n,
        "clip_ratio/low_mean": low / n,
        "clip_ratio/high_mean": high / n,
        "clip_ratio/region_mean": region / n,
    }
    return loss, metrics


def make_case(B=2, G=3, L=4, seed=0):
    """float64 inputs whose ratios span both clip bounds, advantages of both signs."""
    gen = torch.Generator().manual_seed(seed)
    old_logp = -torch.rand(B, G, L, generator=gen, dtype=torch.float64) * 3 - 0.1
    ratios = torch.tensor([0.5, 0.75, 0.95, 1.0, 1.1, 1.2, 1.4, 2.0], dtype=torch.float64)
    ratio = ratios[torch.randint(len(ratios), (B, G, L), generator=gen)]
    logp = old_logp + ratio.log()
    ref_logp = old_logp + torch.randn(B, G, L, generator=gen, dtype=torch.float64) * 0.3
    advantages = torch.randn(B, G, generator=gen, dtype=torch.float64)
    advantages[0, 0], advantages[0, 1] = 1.3, -0.7
    mask = torch.rand(B, G, L, generator=gen) > 0.3
    mask[-1, -1] = False  # a path with no valid decision
    mask[0, 0, 0] = True
    return logp, old_logp, ref_logp, advantages, mask


# ---------------------------------------------------------------- grpo_loss


def test_case_exercises_both_clip_bounds():
    logp, old_logp, ref_logp, adv, _ = make_case()
    _, metrics = grpo_loss(logp, old_logp, ref_logp, adv)
    assert metrics["clip_ratio/low_mean"] > 0
    assert metrics["clip_ratio/high_mean"] > 0
    assert (adv > 0).any() and (adv < 0).any()


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("beta", [0.0, BETA])
def test_loss_and_metrics_match_loop(loss_type, masked, beta):
    logp, old_logp, ref_logp, adv, mask = make_case()
    mask = mask if masked else None
    loss, metrics = grpo_loss(
        logp, old_logp, ref_logp, adv, mask, epsilon_low=EPS_LOW, epsilon_high=EPS_HIGH, beta=beta, loss_type=loss_type
    )
    ref_loss, ref_metrics = reference_loss(
        logp.tolist(),
        old_logp.tolist(),
        ref_logp.tolist(),
        adv.tolist(),
        None if mask is None else mask.tolist(),
        EPS_LOW,
        EPS_HIGH,
        beta,
        loss_type,
    )
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(ref_loss, rel=1e-10, abs=1e-12)
    assert set(metrics) == set(ref_metrics)
    for name, value in ref_metrics.items():
        assert isinstance(metrics[name], float)
        assert metrics[name] == pytest.approx(value, rel=1e-10, abs=1e-12), name


def test_loss_types_differ_under_mask():
    logp, old_logp, ref_logp, adv, mask = make_case()
    losses = {t: grpo_loss(logp, old_logp, ref_logp, adv, mask, loss_type=t)[0].item() for t in LOSS_TYPES}
    assert len({round(v, 12) for v in losses.values()}) == 3
    # dr_grpo divides by the constant B*G*L: the masked sum over all decisions
    dapo_n = mask.sum().item()
    assert losses["dr_grpo"] * mask.numel() == pytest.approx(losses["dapo"] * dapo_n)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("masked", [False, True])
def test_gradient_matches_loop_autograd(loss_type, masked):
    logp, old_logp, ref_logp, adv, mask = make_case(B=2, G=2, L=3, seed=1)
    mask = mask if masked else None
    lp = logp.clone().requires_grad_(True)
    loss, _ = grpo_loss(lp, old_logp, ref_logp, adv, mask, beta=BETA, loss_type=loss_type)
    (grad,) = torch.autograd.grad(loss, lp)

    lp_ref = logp.clone().requires_grad_(True)
    ref_loss, _ = reference_loss(
        lp_ref, old_logp, ref_logp, adv.tolist(), mask, EPS_LOW, EPS_HIGH, BETA, loss_type, exp=torch.exp
    )
    (ref_grad,) = torch.autograd.grad(ref_loss, lp_ref)
    assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    if mask is not None:
        assert (grad[~mask] == 0).all()


def test_clipped_decisions_get_no_objective_gradient():
    logp, old_logp, ref_logp, adv, _ = make_case()
    lp = logp.clone().requires_grad_(True)
    loss, _ = grpo_loss(lp, old_logp, ref_logp, adv, beta=0.0, loss_type="dapo")
    (grad,) = torch.autograd.grad(loss, lp)
    ratio = (logp - old_logp).exp()
    a = adv.unsqueeze(-1).expand_as(ratio)
    in_region = ((ratio < 1 - EPS_LOW) & (a < 0)) | ((ratio > 1 + EPS_HIGH) & (a > 0))
    assert in_region.any() and (~in_region).any()
    assert (grad[in_region] == 0).all()
    # elsewhere the unclipped term is active: d(-ratio*A)/dlogp = -ratio*A / (number of decisions)
    assert_close(grad[~in_region], (-ratio * a / ratio.numel())[~in_region])
    # ratio outside the bounds but with the "wrong" sign of A keeps its gradient (min picks ratio*A)
    outside = (ratio < 1 - EPS_LOW) | (ratio > 1 + EPS_HIGH)
    assert (outside & ~in_region).any()
    assert (grad[outside & ~in_region] != 0).all()


def test_beta_zero_has_no_kl_contribution():
    logp, old_logp, ref_logp, adv, mask = make_case()
    loss0, metrics0 = grpo_loss(logp, old_logp, ref_logp, adv, mask, beta=0.0)
    far_ref = ref_logp - 5.0  # a very different reference changes nothing at beta = 0
    loss_far, _ = grpo_loss(logp, old_logp, far_ref, adv, mask, beta=0.0)
    loss_none, metrics_none = grpo_loss(logp, old_logp, None, adv, mask, beta=0.0)
    assert loss0.item() == loss_far.item() == loss_none.item()
    assert metrics0["kl"] == metrics_none["kl"] == 0.0
    loss_b, metrics_b = grpo_loss(logp, old_logp, ref_logp, adv, mask, beta=BETA)
    assert metrics_b["kl"] > 0
    assert loss_b.item() > loss0.item()  # k3 >= 0


def test_kl_zero_when_policy_equals_reference():
    logp, old_logp, _, adv, mask = make_case()
    loss, metrics = grpo_loss(logp, old_logp, logp.clone(), adv, mask, beta=1.0)
    loss0, _ = grpo_loss(logp, old_logp, None, adv, mask, beta=0.0)
    assert metrics["kl"] == 0.0
    assert loss.item() == pytest.approx(loss0.item(), abs=1e-15)


def test_padding_values_do_not_leak():
    logp, old_logp, ref_logp, adv, mask = make_case()
    dirty = [t.clone() for t in (logp, old_logp, ref_logp)]
    for t, fill in zip(dirty, (float("-inf"), float("nan"), float("inf")), strict=True):
        t[~mask] = fill
    lp = dirty[0].requires_grad_(True)
    for loss_type in LOSS_TYPES:
        loss, metrics = grpo_loss(lp, dirty[1], dirty[2], adv, mask, loss_type=loss_type)
        clean, clean_metrics = grpo_loss(logp, old_logp, ref_logp, adv, mask, loss_type=loss_type)
        assert loss.item() == pytest.approx(clean.item(), rel=1e-12)
        assert metrics == pytest.approx(clean_metrics, rel=1e-12)
        (grad,) = torch.autograd.grad(loss, lp)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_all_masked_gives_zero_loss_with_grad(loss_type):
    logp, old_logp, ref_logp, adv, mask = make_case()
    lp = logp.clone().requires_grad_(True)
    loss, metrics = grpo_loss(lp, old_logp, ref_logp, adv, torch.zeros_like(mask), loss_type=loss_type)
    assert loss.item() == 0.0
    assert all(v == 0.0 for v in metrics.values())
    (grad,) = torch.autograd.grad(loss, lp)
    assert (grad == 0).all()


def test_advantage_dtype_and_default_mask_float32():
    logp, old_logp, ref_logp, adv, _ = make_case()
    loss, _ = grpo_loss(logp.float(), old_logp.float(), ref_logp.float(), adv.float())
    loss64, _ = grpo_loss(logp, old_logp, ref_logp, adv)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(loss64.item(), rel=1e-5)


def test_bad_loss_type_raises():
    logp, old_logp, ref_logp, adv, _ = make_case()
    with pytest.raises(ValueError, match="loss_type") as info:
        grpo_loss(logp, old_logp, ref_logp, adv, loss_type="ppo")
    message = str(info.value)
    assert "'ppo'" in message
    assert all(t in message for t in LOSS_TYPES)


@pytest.mark.parametrize(
    "name, bad",
    [
        ("logp", lambda c: (c[0][0],) + c[1:]),
        ("old_logp", lambda c: (c[0], c[1][:, :2]) + c[2:]),
        ("ref_logp", lambda c: c[:2] + (c[2][..., :1],) + c[3:]),
        ("advantages", lambda c: c[:3] + (c[3][:1],) + c[4:]),
        ("mask", lambda c: c[:4] + (c[4][0],)),
    ],
)
def test_bad_shapes_raise_with_names(name, bad):
    case = bad(make_case())
    with pytest.raises(ValueError, match=rf"^{name}: expected shape") as info:
        grpo_loss(*case)
    assert "got (" in str(info.value)


def test_other_bad_arguments_raise():
    logp, old_logp, ref_logp, adv, mask = make_case()
    with pytest.raises(ValueError, match="mask: expected dtype torch.bool"):
        grpo_loss(logp, old_logp, ref_logp, adv, mask.float())
    with pytest.raises(ValueError, match="ref_logp: required when beta"):
        grpo_loss(logp, old_logp, None, adv, beta=0.1)
    with pytest.raises(ValueError, match="epsilon_low"):
        grpo_loss(logp, old_logp, ref_logp, adv, epsilon_low=-0.1)


# ---------------------------------------------------------------- compute_advantages


SUM = {"reward_aggregation": "sum_then_normalize"}  # TRL's: the weighted sum normalised (not the default)


def rewards_case(B=3, G=5, R=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, G, R, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 3.0][:R], dtype=torch.float64)


def test_group_scaling_zero_mean_unit_std():
    rewards = rewards_case()
    adv = compute_advantages(rewards, [1.0, 0.5], **SUM)
    assert adv.shape == (3, 5)
    assert_close(adv.mean(dim=1), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)
    assert_close(adv.std(dim=1), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-3)


def test_matches_loop_transcription_all_scalings():
    rewards = rewards_case()
    weights = [1.0, 0.5]
    B, G, R = rewards.shape
    r = [[sum(weights[i] * rewards[b, g, i].item() for i in range(R)) for g in range(G)] for b in range(B)]

    def std(xs):  # unbiased
        mu = sum(xs) / len(xs)
        return math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1))

    batch_std = std([x for row in r for x in row])
    for scale in ("group", "batch", "none"):
        adv = compute_advantages(rewards, weights, scale_rewards=scale, **SUM)
        for b in range(B):
            mu = sum(r[b]) / G
            div = {"group": std(r[b]) + 1e-4, "batch": batch_std + 1e-4, "none": 1.0}[scale]
            for g in range(G):
                assert adv[b, g].item() == pytest.approx((r[b][g] - mu) / div, rel=1e-10), (scale, b, g)


def test_batch_scaling_uses_one_std():
    rewards = rewards_case()
    centred = compute_advantages(rewards, [1.0, 0.5], scale_rewards="none", **SUM)
    batch = compute_advantages(rewards, [1.0, 0.5], scale_rewards="batch", **SUM)
    ratio = centred / batch
    assert_close(ratio, torch.full_like(ratio, ratio[0, 0].item()))
    total = (rewards * torch.tensor([1.0, 0.5], dtype=torch.float64)).sum(-1)
    assert ratio[0, 0].item() == pytest.approx(total.std().item() + 1e-4)


def test_none_scaling_is_centred_weighted_sum():
    rewards = rewards_case()
    adv = compute_advantages(rewards, torch.tensor([2.0, -1.0]), scale_rewards="none", **SUM)
    total = 2.0 * rewards[..., 0] - rewards[..., 1]
    assert_close(adv, total - total.mean(dim=1, keepdim=True))
    # without scaling the two aggregations coincide (linearity)
    adv2 = compute_advantages(
        rewards, torch.tensor([2.0, -1.0]), scale_rewards="none", reward_aggregation="normalize_then_sum"
    )
    assert_close(adv, adv2)


def test_normalize_then_sum_gives_equal_influence():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    # the same pattern with opposite signs, on scales 10^6 apart
    rewards = torch.stack([1e3 * x + 50.0, -1e-3 * x], dim=-1)  # [B, G, 2]
    eps = 1e-12  # the default 1e-4 would be 10% of the small reward's std here
    balanced = compute_advantages(rewards, [1.0, 1.0], reward_aggregation="normalize_then_sum", eps=eps)
    assert_close(balanced, torch.zeros_like(balanced), rtol=0, atol=1e-6)  # they cancel
    # summing first lets the large reward dominate
    summed = compute_advantages(rewards, [1.0, 1.0], reward_aggregation="sum_then_normalize", eps=eps)
    alone = compute_advantages(rewards[..., :1], [1.0], eps=eps)
    assert_close(summed, alone, rtol=1e-5, atol=1e-5)
    # each weighted column contributes its own z-score
    z = [compute_advantages(rewards[..., i : i + 1], [1.0], eps=eps) for i in range(2)]
    both = compute_advantages(rewards, [0.7, 0.3], reward_aggregation="normalize_then_sum", eps=eps)
    assert_close(both, 0.7 * z[0] + 0.3 * z[1])
    assert z[0].std().item() == pytest.approx(z[1].std().item(), rel=1e-3)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_constant_group_gives_zeros(scale, aggregation):
    rewards = torch.randn(2, 4, 2)
    rewards[0] = torch.tensor([0.1, 7.3])  # every sample of video 0 scores the same
    adv = compute_advantages(rewards, [1.0, 1.0], scale_rewards=scale, reward_aggregation=aggregation)
    assert torch.isfinite(adv).all()
    assert_close(adv[0], torch.zeros(4), rtol=0, atol=1e-5)
    all_constant = compute_advantages(torch.ones(2, 4, 2), [1.0, 1.0], scale_rewards=scale)
    assert (all_constant == 0).all()


def test_integer_rewards_accepted():
    adv = compute_advantages(torch.tensor([[[0], [1], [1], [0]]]), [1.0])
    assert adv.dtype == torch.float32
    assert adv.sum().abs().item() < 1e-6


def test_advantage_validation_messages():
    rewards = rewards_case()
    with pytest.raises(ValueError, match=r"weights: expected shape \[R\] = \(2,\)"):
        compute_advantages(rewards, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"rewards: expected shape \[B, G, R\]"):
        compute_advantages(rewards[..., 0], [1.0])
    with pytest.raises(ValueError, match="rewards: expected G >= 2"):
        compute_advantages(rewards[:, :1], [1.0, 1.0])
    bad = rewards.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="rewards: expected finite"):
        compute_advantages(bad, [1.0, 1.0])
    with pytest.raises(ValueError, match="scale_rewards.*'group'.*'per_video'"):
        compute_advantages(rewards, [1.0, 1.0], scale_rewards="per_video")
    with pytest.raises(ValueError, match="reward_aggregation.*'mean'"):
        compute_advantages(rewards, [1.0, 1.0], reward_aggregation="mean")
    with pytest.raises(ValueError, match="eps"):
        compute_advantages(rewards, [1.0, 1.0], eps=-1.0)
