"""Shared fixtures, and a tiny fake tokenizer that doubles as a bring-your-own-tokenizer example.

``FakeTokenizer`` implements :class:`~vaportok_rl.tokenizer.protocol.FrozenTokenizer` with fixed random
linear maps: nothing is learned, everything is deterministic and fast, and the decoder provably ignores
tokens past ``keep``. Sizes: K = 8 tokens of width D = 4, clips 3×4×8×8, codebook V = 16.
"""

from __future__ import annotations

import pytest
import torch
from einops import einsum, rearrange
from torch import Tensor

from vaportok_rl.policy import TaildropPolicy
from vaportok_rl.tokenizer.head import HeadConfig, TaildropHead
from vaportok_rl.tokenizer.protocol import Encoded, keep_mask

K, D, V = 8, 4, 16
CLIP_SHAPE = (3, 4, 8, 8)  # C, T, H, W


class FakeTokenizer:
    """A FrozenTokenizer made of fixed random linear maps (seeded, so every instance is identical)."""

    num_latents = K
    latent_dim = D
    codebook_size = V
    clip_shape = CLIP_SHAPE
    fingerprint = "fake-tokenizer-v0"

    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        pixels = CLIP_SHAPE[0] * CLIP_SHAPE[1] * CLIP_SHAPE[2] * CLIP_SHAPE[3]
        self.encoder = torch.randn(pixels, K, D, generator=generator) / pixels**0.5  # [P, K, D]
        self.to_code = torch.randn(D, V, generator=generator)  # [D, V]
        self.decoder = torch.randn(K, D, pixels, generator=generator) / (K * D) ** 0.5  # [K, D, P]

    def encode(self, clips: Tensor) -> Encoded:
        flat = rearrange(clips, "n c t h w -> n (c t h w)")  # [N, P]
        latents = einsum(flat, self.encoder, "n p, p k d -> n k d")  # [N, K, D]
        codes = (latents @ self.to_code).argmax(-1)  # [N, K]
        return Encoded(latents=latents, codes=codes)

    def decode(self, latents: Tensor, keep: Tensor) -> Tensor:
        # The mask multiplies the tail by zero, so tokens at positions >= keep[n] cannot reach the output.
        kept = latents * keep_mask(keep, K).unsqueeze(-1)  # [N, K, D]
        flat = einsum(kept, self.decoder, "n k d, k d p -> n p")  # [N, P]
        C, T, H, W = CLIP_SHAPE
        return rearrange(torch.sigmoid(flat), "n (c t h w) -> n c t h w", c=C, t=T, h=H, w=W)

    def prior_correct(self, encoded: Encoded, topk: int = 5) -> Tensor:
        # A fixed causal "prior": it predicts token j to lie within topk codes after token j - 1 (after 0 for
        # j = 0), so correct[:, j] depends on codes[:, :j + 1] only.
        previous = torch.cat([torch.zeros_like(encoded.codes[:, :1]), encoded.codes[:, :-1]], dim=1)  # [N, K]
        return (encoded.codes - previous) % V < topk  # [N, K] bool


@pytest.fixture
def tokenizer() -> FakeTokenizer:
    return FakeTokenizer()


@pytest.fixture
def videos() -> Tensor:
    """[B=3, L=2, C, T, H, W] in [0, 1]."""
    return torch.rand(3, 2, *CLIP_SHAPE, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def head() -> TaildropHead:
    # nn.Module initialisation draws from the global RNG: seed it inside a fork so the test session's is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TaildropHead(HeadConfig(latent_dim=D, num_latents=K, width=8, layers=1, heads=2, temperature=1.0))


@pytest.fixture
def policy(head: TaildropHead) -> TaildropPolicy:
    return TaildropPolicy(head)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    """Every test runs in its own empty working directory: no test may depend on (or write into) the checkout's
    runs/ or any other folder of the directory pytest was started from. Repository files are reached through
    ``ROOT`` (absolute)."""
    monkeypatch.chdir(tmp_path)
    # reward tables are cached per test, never in the user's ~/.cache (nor shared between tests)
    monkeypatch.setenv("VAPORTOK_RL_CACHE", str(tmp_path / ".table-cache"))


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _one_cpu_thread_per_worker():
    """CI runs ``pytest -n 2`` on two cores: one torch thread per worker avoids oversubscription (tiny runs are
    ~15x faster than with two threads fighting over each core); CPU even where CUDA exists (the fake
    tokenizer's maps live on the CPU)."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACCELERATE_USE_CPU", "true")
        yield


# A tiny built-in tokenizer (random init, seeded): the real architecture at toy size, for end-to-end tests.
TINY_TOKENIZER = dict(
    frames=8,
    size=16,
    num_latents=12,
    width=32,
    encoder_layers=1,
    decoder_layers=1,
    heads=2,
    codebook_size=32,
    code_dim=4,
    skip_rank=8,
    prior_layers=1,
    prior_width=32,
    head_width=16,
)


def save_tiny_tokenizer(path, **changes):
    """Write a seeded random-init tiny built-in tokenizer to ``path``; ``changes`` edit TINY_TOKENIZER."""
    from vaportok_rl.tokenizer import Tokenizer, TokenizerConfig, save_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return save_tokenizer(Tokenizer(TokenizerConfig(**{**TINY_TOKENIZER, **changes})), path)


@pytest.fixture(scope="session")
def tiny_tokenizer_file(tmp_path_factory):
    return save_tiny_tokenizer(tmp_path_factory.mktemp("tiny_tokenizer") / "tokenizer.safetensors")
