"""``grpo_loss`` is TRL's GRPO loss, checked against TRL's own code (not a transcription of it).

TRL's ``GRPOTrainer`` is bound to language models (it generates completions and scores them with a causal LM), so
it cannot drive the taildrop head. Its loss, though, is one method, ``GRPOTrainer._compute_loss``, that reads the
per-token log-probs from ``_get_per_token_logps_and_entropies``. Here a tiny randomly initialised causal LM
(built from a ``transformers`` config: no download) produces real per-token log-probs of random completions;
the same log-probs, old log-probs, reference log-probs, advantages and mask go through TRL's ``_compute_loss``
(on a trainer object holding just the attributes the loss reads, its log-prob method patched to return ours) and
through :func:`vaportok_rl.grpo.grpo_loss`, which sees the B·G completions as B = 1 video of G paths of L
decisions. Loss values and gradients (w.r.t. the LM's weights) must agree for ``grpo``, ``dapo`` and
``dr_grpo``, with clip-higher (epsilon_high != epsilon_low) and beta > 0.

Mapping of the reductions (one process, no gradient accumulation): TRL's ``dr_grpo`` divides by
(number of completions · ``max_completion_length``) = B·G·L; ``dapo`` by ``num_items_in_batch`` = the number of
valid tokens; ``grpo`` averages each completion's valid tokens, then the completions. Every completion here has at
least one valid token (for a completion with none, TRL's ``grpo`` counts a 0 in the mean where ``grpo_loss`` skips
it).
"""

from __future__ import annotations

import types
from collections import defaultdict

import pytest
import torch

trl = pytest.importorskip("trl")
transformers = pytest.importorskip("transformers")

from trl import GRPOTrainer  # noqa: E402

from vaportok_rl.grpo import grpo_loss  # noqa: E402

G, L, VOCAB, PROMPT = 6, 5, 32, 3


def tiny_lm() -> torch.nn.Module:
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(config)
    return model.float().train()


def completion_logps(model, input_ids: torch.Tensor) -> torch.Tensor:
    """[G, L] log-probs of the completion tokens (the last L of each row) under the model, with grad."""
    logits = model(input_ids=input_ids).logits[:, PROMPT - 1 : -1]  # [G, L, V]: position t predicts token t + 1
    return torch.log_softmax(logits.float(), -1).gather(-1, input_ids[:, PROMPT:, None]).squeeze(-1)


def trl_trainer(model, *, loss_type: str, beta: float, epsilon_low: float, epsilon_high: float):
    """A GRPOTrainer holding only what ``_compute_loss`` reads (its constructor would set up a whole training run)."""
    from accelerate import Accelerator

    trainer = object.__new__(GRPOTrainer)
    attributes = dict(
        model=model,
        accelerator=Accelerator(cpu=True),
        loss_type=loss_type,
        beta=beta,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
        importance_sampling_level="token",
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        aux_loss_enabled=False,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        max_completion_length=L,
        current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False,
        entropy_coef=0.0,
        use_adaptive_entropy=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        args=types.SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
    )
    for name, value in attributes.items():
        object.__setattr__(trainer, name, value)
    return trainer


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_grpo_loss_equals_trls_compute_loss(loss_type):
    beta, epsilon_low, epsilon_high = 0.04, 0.2, 0.28
    gen = torch.Generator().manual_seed(1)
    model = tiny_lm()
    input_ids = torch.randint(0, VOCAB, (G, PROMPT + L), generator=gen)
    mask = torch.rand(G, L, generator=gen) > 0.3
    mask[:, 0] = True  # every completion has at least one valid token (see the module docstring)
    with torch.no_grad():
        base = completion_logps(model, input_ids)  # [G, L]
    # old / reference policies a little off the current one, so ratios fall inside and outside the clip range
    old = base + 0.3 * torch.randn(G, L, generator=gen)
    ref = base + 0.2 * torch.randn(G, L, generator=gen)
    advantages = torch.randn(G, generator=gen)

    # ---- TRL's loss, its log-prob method returning the LM's log-probs
    logp_trl = completion_logps(model, input_ids)
    trainer = trl_trainer(model, loss_type=loss_type, beta=beta, epsilon_low=epsilon_low, epsilon_high=epsilon_high)
    object.__setattr__(
        trainer, "_get_per_token_logps_and_entropies", lambda *a, **k: (logp_trl, torch.zeros_like(logp_trl), None)
    )
    inputs = {
        "prompt_ids": input_ids[:, :PROMPT],
        "prompt_mask": torch.ones(G, PROMPT, dtype=torch.long),
        "completion_ids": input_ids[:, PROMPT:],
        "completion_mask": mask.long(),
        "advantages": advantages,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum().float(),
    }
    loss_trl = trainer._compute_loss(model, inputs)
    grads_trl = torch.autograd.grad(loss_trl, list(model.parameters()))

    # ---- ours: B = 1 video, G paths, L decisions
    logp_ours = completion_logps(model, input_ids)
    loss_ours, metrics = grpo_loss(
        logp_ours[None],
        old[None],
        ref[None],
        advantages[None],
        mask[None],
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
        beta=beta,
        loss_type=loss_type,
    )
    grads_ours = torch.autograd.grad(loss_ours, list(model.parameters()))

    torch.testing.assert_close(loss_ours, loss_trl, rtol=1e-6, atol=1e-7)
    for ours, theirs in zip(grads_ours, grads_trl, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    # the metrics TRL logs from the same call (means over valid tokens) agree too
    logged = trainer._metrics["train"]
    for key in ("kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"):
        assert metrics[key] == pytest.approx(logged[key][-1], rel=1e-5, abs=1e-7), key
    assert 0 < metrics["clip_ratio/region_mean"] < 1  # the clip range is actually exercised
