import pytest
import torch
from conftest import CLIP_SHAPE, FakeTokenizer, K

from vaportok_rl.complexity import complexity
from vaportok_rl.rollout import Rollout, collect_rollout, decode_paths, encode_videos, rollout_log_prob
from vaportok_rl.tokenizer.protocol import FrozenTokenizer


class SpyTokenizer(FakeTokenizer):
    """Records the batch size of every decode / prior_correct call."""

    def __init__(self):
        super().__init__()
        self.decode_calls: list[int] = []
        self.prior_calls: list[torch.Tensor] = []

    def decode(self, latents, keep):
        self.decode_calls.append(len(keep))
        return super().decode(latents, keep)

    def prior_correct(self, encoded, topk=5):
        self.prior_calls.append(encoded.codes.clone())
        return super().prior_correct(encoded, topk)


def _collect(tokenizer, policy, videos, generator, **kwargs):
    kwargs = {"group_size": 4, "mode": "sample", "needs": set(), **kwargs}
    return collect_rollout(tokenizer, policy, policy.reference_copy(), videos, generator=generator, **kwargs)


def test_fake_tokenizer_satisfies_the_protocol(tokenizer):
    assert isinstance(tokenizer, FrozenTokenizer)


def test_encode_videos_is_b_major_and_chunked(tokenizer, videos):
    encoded = encode_videos(tokenizer, videos, chunk=4)
    assert encoded.latents.shape == (6, K, 4)
    torch.testing.assert_close(encoded.latents[1 * 2 + 1], tokenizer.encode(videos[1, 1:2]).latents[0])


def test_batched_decode_equals_per_sample_decodes(tokenizer, videos, generator):
    encoded = encode_videos(tokenizer, videos)
    B, G, L = 3, 4, 2
    keep = torch.randint(1, K + 1, (B, G, L), generator=generator)
    batched = decode_paths(tokenizer, encoded, keep, chunk=5)  # chunks that straddle paths
    assert batched.shape == (B, G, L, *CLIP_SHAPE)
    for b in range(B):
        for g in range(G):
            for l in range(L):
                n = b * L + l
                single = tokenizer.decode(encoded.latents[n : n + 1], keep[b, g, l : l + 1])[0]
                assert (batched[b, g, l] - single).abs().max() <= 1e-5


def test_rollout_shapes_and_log_probs(tokenizer, policy, videos, generator):
    rollout = _collect(tokenizer, policy, videos, generator, needs={"reconstructions", "prior_correct"})
    assert (rollout.B, rollout.G, rollout.L, rollout.num_latents) == (3, 4, 2, K)
    assert rollout.keep.dtype == torch.long and rollout.keep.shape == (3, 4, 2)
    assert rollout.reconstructions.shape == (3, 4, 2, *CLIP_SHAPE)
    assert rollout.prior_correct.shape == (3, 2, K) and rollout.prior_correct.dtype == torch.bool
    sc, tc = complexity(videos)
    torch.testing.assert_close(rollout.sc, sc)
    torch.testing.assert_close(rollout.tc, tc)
    # the reference starts equal to the policy, and the current log-probs reproduce old_logp exactly
    torch.testing.assert_close(rollout.ref_logp, rollout.old_logp)
    torch.testing.assert_close(rollout_log_prob(policy, rollout), rollout.old_logp)
    assert not rollout.old_logp.requires_grad and rollout_log_prob(policy, rollout).requires_grad


def test_rollout_without_needs_never_decodes_or_scores(policy, videos, generator):
    spy = SpyTokenizer()
    rollout = _collect(spy, policy, videos, generator, needs=set())
    assert spy.decode_calls == [] and spy.prior_calls == []
    assert rollout.reconstructions is None and rollout.prior_correct is None


def test_decode_is_one_batched_pass_in_chunks(policy, videos, generator):
    spy = SpyTokenizer()
    rollout = _collect(spy, policy, videos, generator, needs={"reconstructions"}, decode_chunk=10)
    B, G, L = rollout.keep.shape
    clip = torch.arange(B * L).reshape(B, 1, L).expand(B, G, L)
    distinct = len(set(zip(clip.flatten().tolist(), rollout.keep.flatten().tolist(), strict=True)))
    # B·G·L = 24 truncations; each distinct (clip, k) decoded once, at most 10 per call, every call full but the last
    assert sum(spy.decode_calls) == distinct <= 24
    assert all(n == 10 for n in spy.decode_calls[:-1]) and 0 < spy.decode_calls[-1] <= 10


def test_prior_correct_once_per_clip(policy, videos, generator):
    spy = SpyTokenizer()
    rollout = _collect(spy, policy, videos, generator, needs={"prior_correct"}, group_size=5)
    assert len(spy.prior_calls) == 1
    assert torch.equal(spy.prior_calls[0], rollout.encoded.codes)  # each of the B·L clips once, not per sample


def test_reused_encoding_skips_the_encoder(tokenizer, policy, videos, generator, monkeypatch):
    encoded = encode_videos(tokenizer, videos)
    monkeypatch.setattr(tokenizer, "encode", lambda clips: pytest.fail("encode called"))
    rollout = _collect(tokenizer, policy, videos, generator, encoded=encoded)
    assert rollout.encoded is encoded


def test_rollout_is_reproducible_from_the_generator(tokenizer, policy, videos):
    a = _collect(tokenizer, policy, videos, torch.Generator().manual_seed(3))
    b = _collect(tokenizer, policy, videos, torch.Generator().manual_seed(3))
    assert torch.equal(a.keep, b.keep)


def test_pre_argmax_rollout_records_its_cut(tokenizer, policy, videos, generator):
    rollout = _collect(tokenizer, policy, videos, generator, mode="pre_argmax")
    assert rollout.max_keep.shape == (3, 2)
    assert (rollout.keep <= rollout.max_keep.unsqueeze(1)).all()
    assert torch.isfinite(rollout.old_logp).all() and torch.isfinite(rollout.ref_logp).all()


def test_argmax_rollout_has_identical_paths(tokenizer, policy, videos, generator):
    rollout = _collect(tokenizer, policy, videos, generator, mode="argmax")
    assert (rollout.keep == rollout.keep[:, :1]).all()


def test_bad_arguments_name_the_field(tokenizer, policy, videos, generator):
    with pytest.raises(ValueError, match="needs"):
        _collect(tokenizer, policy, videos, generator, needs={"reconstruction"})
    with pytest.raises(ValueError, match="mode"):
        _collect(tokenizer, policy, videos, generator, mode="greedy")
    with pytest.raises(ValueError, match="videos"):
        encode_videos(tokenizer, videos[..., :4])


def test_rollout_validates_shapes(tokenizer, videos):
    encoded = encode_videos(tokenizer, videos)
    fields = dict(videos=videos, encoded=encoded, keep=torch.ones(3, 4, 2, dtype=torch.long),
                  reconstructions=None, prior_correct=None, sc=torch.zeros(3, 2), tc=torch.zeros(3, 2),
                  old_logp=torch.zeros(3, 4, 2), ref_logp=torch.zeros(3, 4, 2), num_latents=K)  # fmt: skip
    Rollout(**fields)
    with pytest.raises(ValueError, match="old_logp"):
        Rollout(**{**fields, "old_logp": torch.zeros(3, 4)})
