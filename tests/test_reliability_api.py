"""Bad input to the public API ends in one clear error naming the argument, the value and what was expected:
never a traceback deep inside torch, never a silently wrong result. Budget control and clip encoding."""

import math
import re

import pytest
import torch
from conftest import CLIP_SHAPE, TINY_TOKENIZER, FakeTokenizer

from vaportok_rl.budget import keep_at_price, keep_for_budget
from vaportok_rl.rollout import encode_videos
from vaportok_rl.tokenizer import Tokenizer, TokenizerConfig

INF = float("inf")


def _logits(N: int = 37, K: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(N, K, generator=torch.Generator().manual_seed(seed)).cumsum(-1)


# ---------------------------------------------------------------------------------------- keep_for_budget


def test_nan_logits_are_an_error_not_one_token_everywhere():
    logits = _logits(10, 8)
    logits[[2, 7], 3] = float("nan")
    with pytest.raises(ValueError, match=r"logits: 2 of 10 rows hold NaN \(first: row 2\)"):
        keep_for_budget(logits, 4.0)
    with pytest.raises(ValueError, match=r"logits: 2 of 10 rows hold NaN"):
        keep_at_price(logits, 0.0)


@pytest.mark.parametrize("budget", [2.0, 4.5, 7.25, 9.0])
def test_minus_inf_masks_are_never_picked_and_the_budget_is_filled(budget):
    logits = _logits(20, 12)
    logits[:, 0] = -INF  # no clip may keep 1 token
    logits[::3, 5:8] = -INF  # every third clip may not keep 6..8
    keep, price = keep_for_budget(logits, budget)
    assert math.isfinite(price)
    assert torch.isfinite(logits[torch.arange(20), keep - 1]).all()  # only allowed k's
    assert int(keep.sum()) == math.floor(budget * 20)  # even k's and odd k's are allowed: exact is reachable


def test_masks_that_cannot_make_the_budget_give_at_most_it():
    logits = _logits(5, 9)
    logits[:, 1::2] = -INF  # only odd k: five odd counts sum to an odd total, so 20 cannot be made
    keep, _ = keep_for_budget(logits, 4.0)
    assert int(keep.sum()) == 19 and torch.isfinite(logits[torch.arange(5), keep - 1]).all()
    with pytest.raises(ValueError, match=r"budget: 1.5 is below the smallest mean keep count .* 3"):
        keep_for_budget(torch.where(torch.arange(9) < 2, -INF, logits), 1.5)  # fewest allowed k: 3


@pytest.mark.parametrize("fn", ["keep_for_budget", "keep_at_price"])
def test_a_row_forbidden_everywhere_or_plus_inf_is_an_error(fn):
    call = (lambda x: keep_for_budget(x, 3.0)) if fn == "keep_for_budget" else (lambda x: keep_at_price(x, 0.5))
    logits = _logits(6, 8)
    logits[4] = -INF
    with pytest.raises(ValueError, match=r"logits: row 4 is -inf at every k"):
        call(logits)
    logits = _logits(6, 8)
    logits[1, 2] = INF
    with pytest.raises(ValueError, match=r"logits: \+inf at row 1, k = 3"):
        call(logits)


def test_keep_at_price_rejects_a_price_that_masks_every_k():
    with pytest.raises(ValueError, match=r"price: expected a price per token \(a finite real number\), got inf"):
        keep_at_price(_logits(4, 6), INF)  # logits - inf·k is -inf everywhere: k = 1 silently


@pytest.mark.parametrize(
    "budget, error, match",
    [
        ("24", TypeError, r"budget: expected a mean keep count per clip \(a real number\), got '24' \(str\)"),
        (None, TypeError, r"budget: .* got None"),
        (True, TypeError, r"budget: .* got True \(bool\)"),
        (torch.tensor([3.0, 4.0]), TypeError, r"budget: .* got a tensor of shape \(2,\)"),
        (float("nan"), ValueError, r"budget: .*finite real number\), got nan"),
        (INF, ValueError, r"budget: .*finite real number\), got inf"),
    ],
)
def test_a_budget_that_is_not_a_real_number_names_budget(budget, error, match):
    with pytest.raises(error, match=match):
        keep_for_budget(_logits(6, 8), budget)


@pytest.mark.parametrize("shape", [(0, 8), (4, 0), (8,), (2, 3, 4)])
def test_logits_of_the_wrong_shape_name_the_shape(shape):
    with pytest.raises(ValueError, match=re.escape(f"logits: expected shape [N, K] with N, K >= 1, got {shape}")):
        keep_for_budget(torch.zeros(shape), 1.0)


@pytest.mark.parametrize("budget", [3.0, 8.0, 12.25, 24.0, 30.5])
def test_the_budget_is_filled_exactly(budget):
    # the oracle's cap: floor(budget · N) tokens in all, never more; the price tilt alone falls a few short
    keep, _ = keep_for_budget(_logits(37, 32), budget)
    assert int(keep.sum()) == math.floor(budget * 37)
    assert int(keep.min()) >= 1 and int(keep.max()) <= 32


# ---------------------------------------------------------------------------------------- clip encoding


@pytest.fixture(scope="module")
def tiny() -> Tokenizer:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Tokenizer(TokenizerConfig(**TINY_TOKENIZER)).eval()


def _clips(n: int = 2, shape=(3, 8, 16, 16)) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(3))


def _entry(name, tiny):
    """(call, argument name, clip shape): the built-in tokenizer's two encoders, and encode_videos over a
    tokenizer that checks nothing itself (the fake one); each call takes clips [N, *clip shape]."""
    if name == "encode_videos":
        return (lambda x: encode_videos(FakeTokenizer(), x.unsqueeze(0))), "videos", CLIP_SHAPE
    return getattr(tiny, name), "clips", tiny.clip_shape


ENTRIES = ["encode", "encode_continuous", "encode_videos"]


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize(
    "scale, match",
    [
        (lambda x: x * 255, r"got min \S+ max 25\d\.\d+; 0..255 pixels\? divide by 255"),
        (lambda x: x * 2 - 1, r"got min -0\.9\d+ max 0\.9\d+; \[-1, 1\] values\? map with"),
        (lambda x: x.masked_fill(x > 0.9, float("nan")), r"got NaN values"),
    ],
    ids=["0..255", "-1..1", "nan"],
)
def test_clips_out_of_range_are_an_error_not_garbage(tiny, entry, scale, match):
    call, name, shape = _entry(entry, tiny)
    clips = _clips(2, shape)
    with pytest.raises(ValueError, match=rf"{name}: expected float values in \[0, 1\], {match}"):
        call(scale(clips))
    call((clips * 1.01 - 0.005).clamp(-0.005, 1.005))  # rounding just outside [0, 1] is tolerated


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_clips_name_the_dtype_and_the_conversion(tiny, entry, dtype):
    call, name, shape = _entry(entry, tiny)
    with pytest.raises(
        ValueError,
        match=rf"{name}: expected a \S*float\S* tensor .* got dtype {dtype}; convert"
        rf" 8-bit pixels with {name}\.float\(\) / 255",
    ):
        call((_clips(2, shape) * 255).to(dtype))


@pytest.mark.parametrize(
    "clips, match",
    [
        (_clips(2)[0], r"clips: expected \[N, 3, 8, 16, 16\], got \(3, 8, 16, 16\)"),
        (_clips(2)[..., :8], r"clips: expected \[N, 3, 8, 16, 16\], got \(2, 3, 8, 16, 8\)"),
        (_clips(2).double(), r"clips: expected dtype torch.float32 \(the tokenizer's weights\), got torch.float64"),
    ],
    ids=["4-d", "width-8", "float64"],
)
def test_the_wrong_clip_layout_or_float_dtype_says_what_was_expected(tiny, clips, match):
    # encode_continuous (the pretraining entry) and the dtype checked nothing: an einops or a matmul error
    with pytest.raises(ValueError, match=match):
        tiny.encode_continuous(clips)
    with pytest.raises(ValueError, match=match):
        tiny.encode(clips)
