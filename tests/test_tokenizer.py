"""The built-in tokenizer: per-sample truncation masks, the single-pass prior, save/load, the protocol."""

import pytest
import torch
from conftest import TINY_TOKENIZER

from vaportok_rl.tokenizer import FrozenTokenizer, Tokenizer, TokenizerConfig, load_tokenizer, save_tokenizer
from vaportok_rl.tokenizer.default import freeze
from vaportok_rl.tokenizer.protocol import prior_accuracy

TINY = {**TINY_TOKENIZER, "decoder_layers": 2}


@pytest.fixture(scope="module")
def tokenizer():
    torch.manual_seed(0)
    model = Tokenizer(TokenizerConfig(**TINY))
    with torch.no_grad():  # a non-zero skip path, so the test covers both decoder paths
        model.skip_out.normal_(0, 0.1)
        model.patch_basis.normal_(0, 0.1)
    return freeze(model)


@pytest.fixture(scope="module")
def clips():
    return torch.rand(5, 3, 8, 16, 16, generator=torch.Generator().manual_seed(1))


def test_implements_protocol(tokenizer):
    assert isinstance(tokenizer, FrozenTokenizer)
    assert tokenizer.clip_shape == (3, 8, 16, 16)


def test_mixed_k_batch_equals_each_sample_alone(tokenizer, clips):
    enc = tokenizer.encode(clips)
    keep = torch.tensor([1, 12, 5, 7, 3])
    batched = tokenizer.decode(enc.latents, keep)
    for n in range(len(clips)):
        alone = tokenizer.decode(enc.latents[n : n + 1], keep[n : n + 1])
        assert (batched[n] - alone[0]).abs().max() <= 1e-5


def test_tokens_past_k_cannot_change_the_output(tokenizer, clips):
    enc = tokenizer.encode(clips)
    keep = torch.tensor([1, 4, 6, 11, 2])
    before = tokenizer.decode(enc.latents, keep)
    perturbed = enc.latents.clone()
    tail = torch.arange(12) >= keep[:, None]  # [N, K]
    perturbed[tail] = torch.randn_like(perturbed[tail]) * 100
    after = tokenizer.decode(perturbed, keep)
    assert torch.equal(before, after)
    # ... while a token inside k does change it
    perturbed = enc.latents.clone()
    perturbed[:, 0] += 1.0
    assert not torch.allclose(before, tokenizer.decode(perturbed, keep))


def test_prior_accuracy_from_one_pass_equals_explicit_per_k_masked_pass(tokenizer, clips):
    enc = tokenizer.encode(clips)
    correct = tokenizer.prior_correct(enc, topk=5)  # [N, K], one causal pass
    K = tokenizer.num_latents
    for k in range(1, K + 1):
        # explicit: run the prior on the first k latents only (positions past k do not exist at all)
        logits = tokenizer.prior(enc.latents[:, :k]) if k == K else _prior_prefix(tokenizer, enc.latents[:, :k])
        top = logits.topk(5, dim=-1).indices
        explicit = (top == enc.codes[:, :k, None]).any(-1).float().mean(1)
        single_pass = prior_accuracy(correct, torch.full((len(clips),), k))
        assert torch.allclose(single_pass, explicit, atol=1e-6), k


def _prior_prefix(tokenizer, latents_prefix):
    """The prior on a shorter sequence: same weights, positions [0, k)."""
    prior = tokenizer.prior
    N, k, _ = latents_prefix.shape
    x = torch.cat([prior.bos.expand(N, -1, -1), prior.inp(latents_prefix[:, :-1])], 1) + prior.pos[:k]
    for block in prior.blocks:
        x = block(x, prior.causal[:k, :k])
    return prior.out(prior.norm(x))


def test_encode_is_deterministic_and_checks_shapes(tokenizer, clips):
    a, b = tokenizer.encode(clips), tokenizer.encode(clips)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.latents, b.latents)
    with pytest.raises(ValueError, match=r"clips: expected \[N, 3, 8, 16, 16\]"):
        tokenizer.encode(torch.rand(2, 3, 8, 16, 17))
    with pytest.raises(ValueError, match="keep"):
        tokenizer.decode(a.latents, torch.tensor([0, 1, 1, 1, 1]))


def test_save_load_roundtrip_and_fingerprint_check(tokenizer, clips, tmp_path):
    path = save_tokenizer(tokenizer, tmp_path / "tok.safetensors")
    loaded = load_tokenizer(path)
    assert loaded.fingerprint == tokenizer.fingerprint
    enc = loaded.encode(clips)
    assert torch.equal(enc.codes, tokenizer.encode(clips).codes)
    assert not any(p.requires_grad for p in loaded.parameters())
    # a tampered file is caught
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(path)
    tensors["to_patch.bias"] = tensors["to_patch.bias"] + 1e-3
    save_file(tensors, tmp_path / "bad.safetensors", metadata=meta)
    with pytest.raises(ValueError, match="fingerprint"):
        load_tokenizer(tmp_path / "bad.safetensors")


def test_fingerprint_ignores_the_head(tokenizer):
    model = Tokenizer(TokenizerConfig(**TINY))
    model.load_state_dict(tokenizer.state_dict())
    with torch.no_grad():
        model.head.out.bias.add_(1.0)
    assert model.fingerprint == tokenizer.fingerprint


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="size"):
        TokenizerConfig(size=30)
    with pytest.raises(ValueError, match="skip_rank"):
        TokenizerConfig(skip_rank=-1)
