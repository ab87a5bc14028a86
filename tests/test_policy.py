import pytest
import torch
from conftest import D, K
from torch.distributions import Categorical

from vaportok_rl.policy import TaildropPolicy


@pytest.fixture
def latents() -> torch.Tensor:
    return torch.randn(5, K, D, generator=torch.Generator().manual_seed(2))  # [N, K, D]


def test_logits_shape(policy, latents):
    assert policy.logits(latents).shape == (5, K)


def test_argmax_is_deterministic_and_the_mode(policy, latents):
    first = policy.sample(latents, "argmax", torch.Generator().manual_seed(0))
    second = policy.sample(latents, "argmax", torch.Generator().manual_seed(99))
    assert torch.equal(first, second)
    assert torch.equal(first, policy.logits(latents).argmax(-1) + 1)
    probs = policy.distribution(latents, "argmax").probs  # degenerate: all mass on the argmax
    assert torch.equal(probs.argmax(-1) + 1, first) and torch.allclose(probs.max(-1).values, torch.ones(5))


def test_argmax_log_prob_and_entropy_use_the_full_distribution(policy, latents):
    keep = policy.sample(latents, "argmax")
    full = Categorical(logits=policy.logits(latents))
    torch.testing.assert_close(policy.log_prob(latents, keep, "argmax"), full.log_prob(keep - 1))
    torch.testing.assert_close(policy.entropy(latents, "argmax"), full.entropy())


def test_pre_argmax_never_exceeds_argmax(policy, latents, generator):
    argmax = policy.sample(latents, "argmax")  # [N]
    keep = policy.sample(latents, "pre_argmax", generator, num_samples=200)  # [200, N]
    assert keep.shape == (200, 5)
    assert (keep <= argmax).all() and (keep >= 1).all()
    probs = policy.distribution(latents, "pre_argmax").probs  # [N, K]
    beyond = torch.arange(1, K + 1) > argmax.unsqueeze(-1)
    assert (probs[beyond] == 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))


def test_pre_argmax_with_recorded_cut_scores_old_actions_finitely(policy, latents):
    cut = torch.full((5,), K)  # a cut at K is the full distribution
    full = policy.log_prob(latents, torch.full((5,), K), "sample")
    torch.testing.assert_close(policy.log_prob(latents, torch.full((5,), K), "pre_argmax", cut), full)
    with pytest.raises(ValueError, match="max_keep"):
        policy.distribution(latents, "sample", max_keep=cut)


def test_sample_frequencies_match_probabilities(policy, latents, generator):
    keep = policy.sample(latents, "sample", generator, num_samples=4000)  # [S, N]
    counts = torch.nn.functional.one_hot(keep - 1, K).float().mean(0)  # [N, K]
    probs = policy.distribution(latents, "sample").probs
    assert (counts - probs).abs().max() < 0.04  # ~4 standard errors at p = 1/8, S = 4000


def test_sampling_is_reproducible_from_the_generator(policy, latents):
    a = policy.sample(latents, "sample", torch.Generator().manual_seed(5), num_samples=3)
    b = policy.sample(latents, "sample", torch.Generator().manual_seed(5), num_samples=3)
    assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["sample", "pre_argmax"])
def test_log_prob_sums_to_one_over_k_and_entropy_matches(policy, latents, mode):
    every_k = torch.arange(1, K + 1).unsqueeze(-1).expand(K, 5)  # [K, N]
    logp = policy.log_prob(latents, every_k, mode)  # [K, N]
    torch.testing.assert_close(logp.exp().sum(0), torch.ones(5))
    dist = policy.distribution(latents, mode)
    torch.testing.assert_close(policy.entropy(latents, mode), dist.entropy())
    p = logp.exp()
    torch.testing.assert_close(policy.entropy(latents, mode), -(p * logp.nan_to_num(neginf=0.0)).sum(0))


def test_gradients_are_finite_in_pre_argmax(policy, latents):
    keep = policy.sample(latents, "pre_argmax", torch.Generator().manual_seed(0))
    (policy.log_prob(latents, keep, "pre_argmax").sum() + policy.entropy(latents, "pre_argmax").sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in policy.parameters() if p.grad is not None)


def test_unknown_mode_and_bad_keep_raise(policy, latents):
    with pytest.raises(ValueError, match="mode"):
        policy.distribution(latents, "greedy")
    with pytest.raises(ValueError, match="keep"):
        policy.log_prob(latents, torch.zeros(5, dtype=torch.long))


def test_reference_copy_is_frozen_and_independent(policy, latents):
    reference = policy.reference_copy()
    assert isinstance(reference, TaildropPolicy) and not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    assert all(p.requires_grad for p in policy.parameters())
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)
    assert not torch.equal(reference.logits(latents), policy.logits(latents))
