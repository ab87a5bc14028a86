"""vaportok-rl eval: scorers, the oracle, the JSON schema, plots, a folder of real .mp4 files, option errors.

Tiny on purpose (2 shared CPU cores): the conftest fake tokenizer (K = 8, 8x8 frames) for the maths, and a tiny
random-init built-in tokenizer (K = 12, 4 frames of 16x16) saved to a file for the CLI runs.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TOKENIZER

from vaportok_rl import judge as ev
from vaportok_rl.allocators import allocate
from vaportok_rl.cli.eval import main as eval_cli
from vaportok_rl.data import write_video
from vaportok_rl.judge import (
    CURVE_KEYS,
    CandidateMetrics,
    DistortionScorer,
    HeadScorer,
    default_budgets,
    default_k_grid,
    evaluate,
    shared_lpips,
)
from vaportok_rl.metrics import lpips_video
from vaportok_rl.rollout import encode_videos
from vaportok_rl.tokenizer import Tokenizer, TokenizerConfig, load_tokenizer, save_tokenizer

# ---------------------------------------------------------------------------------------------- fixtures
TINY = {**TINY_TOKENIZER, "frames": 4}


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Tokenizer(TokenizerConfig(**TINY))
    return save_tokenizer(model, tmp_path_factory.mktemp("tok") / "tiny.safetensors")


@pytest.fixture(scope="module")
def mp4_folder(tmp_path_factory) -> Path:
    """Three real .mp4 files (PyAV, 8 frames of 24x24): a flat, a drifting-gradient and a noisy video."""
    folder = tmp_path_factory.mktemp("mp4")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:24, 0:24]
    for i in range(3):
        frames = []
        for t in range(8):
            base = 0.5 + 0.4 * np.sin(0.3 * (x + 2 * t * i) + 0.2 * y * i)
            img = np.stack([base, base[::-1], 0.5 * np.ones_like(base)], -1)
            img = img + (0.15 * i) * rng.standard_normal(img.shape)
            frames.append(np.clip(img * 255, 0, 255).astype(np.uint8))
        write_video(folder / f"clip_{i}.mp4", np.stack(frames))
    return folder


def run_cli(argv, capsys) -> tuple[int, str, str]:
    rc = eval_cli([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ---------------------------------------------------------------------------------------------- grid, scorers
def test_default_k_grid_and_budgets():
    grid = default_k_grid(128)
    assert grid[:3] == [1, 4, 8] and grid[-1] == 128 and len(grid) == 33
    assert default_k_grid(12) == list(range(1, 13))
    assert default_k_grid(100)[-1] == 100  # K always included even when not a multiple of the step
    budgets = default_budgets(128)
    assert len(budgets) == 8 and budgets[0] == 8.0 and budgets[-1] == 128.0


def test_head_scorer_is_the_cdf_and_monotone_in_k(tokenizer, head, videos):
    enc = encode_videos(tokenizer, videos)
    q = HeadScorer(head)(tokenizer, enc, None, [1, 2, 3, 5, 8])  # [N, G]
    assert q.shape == (len(enc), 5)
    assert (np.diff(q, axis=1) >= 0).all(), "P(k <= x) must not decrease in x"
    assert ((q >= 0) & (q <= 1)).all() and np.allclose(q[:, -1], 1.0)
    probs = torch.softmax(head(enc.latents).double(), -1)
    np.testing.assert_allclose(q[:, 0], probs[:, 0].detach().numpy(), rtol=1e-9)
    with pytest.raises(ValueError, match="k_grid"):
        HeadScorer(head)(tokenizer, enc, None, [3, 2])


def test_distortion_scorer_is_negative_mse_of_the_decodes(tokenizer, videos):
    clips = videos.flatten(0, 1)
    enc = encode_videos(tokenizer, videos)
    grid = [1, 4, 8]
    q = DistortionScorer("mse", chunk=5)(tokenizer, enc, clips, grid)
    for g, k in enumerate(grid):
        rec = tokenizer.decode(enc.latents, torch.full((len(clips),), k)).clamp(0, 1)
        mse = (rec - clips).pow(2).flatten(1).mean(1).double().numpy()
        np.testing.assert_allclose(q[:, g], -mse, rtol=1e-6)
    psnr_q = DistortionScorer("psnr")(tokenizer, enc, clips, grid)
    np.testing.assert_allclose(psnr_q, 10 * np.log10(1 / -q), rtol=1e-6)  # other batches: float32 noise


def test_candidate_lpips_matches_lpips_video(tokenizer, videos):
    clips = videos.flatten(0, 1)
    enc = encode_videos(tokenizer, videos)
    metric = shared_lpips()
    cache = CandidateMetrics(tokenizer, enc, clips, lpips_metric=metric, chunk=4, lpips_chunk_frames=8)
    rows, ks = np.array([0, 0, 3, 5, 5]), np.array([2, 7, 1, 4, 8])
    cache.ensure(rows, ks, lpips=True)
    rec = tokenizer.decode(enc.latents[rows], torch.from_numpy(ks)).clamp(0, 1)
    ref = lpips_video(metric, rec, clips[rows]).double().numpy()
    np.testing.assert_allclose(cache.lpips[rows, ks], ref, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------- the oracle
def test_oracle_never_worse_than_any_allocation_on_its_objective(tokenizer, head, videos):
    report = evaluate(tokenizer, head, videos, allocator="fast", lpips=False, seed=3, sweep_budgets=[1.5, 3.0, 6.0])
    at = report["at_budget"]
    assert report["setup"]["k_grid"] == list(range(1, 9))  # K = 8: every k is on the grid
    oracle_mse = at["oracle"]["mse"]
    others = {**{f"policy/{m}": r for m, r in at["policy"].items()}, **at["allocators"]}
    for name, rec in others.items():
        assert rec["tokens_mean"] <= report["setup"]["budget"] + 1e-9, name
        assert oracle_mse <= rec["mse"] + 1e-12, f"oracle MSE {oracle_mse} worse than {name} {rec['mse']}"
    for i, point in enumerate(report["sweep"]["oracle"]):
        assert point["tokens_mean"] <= point["budget"] + 1e-9
        for name, curve in report["sweep"]["allocators"].items():
            assert curve[i]["budget"] == point["budget"]
            assert point["mse"] <= curve[i]["mse"] + 1e-12, (name, point["budget"])
    # the oracle is the exact knapsack optimum: ilp on the same true quality agrees
    enc = encode_videos(tokenizer, videos)
    q = DistortionScorer("mse")(tokenizer, enc, videos.flatten(0, 1), range(1, 9))
    exact = allocate("ilp", q, np.arange(1, 9), report["setup"]["budget"])
    assert math.isclose(-exact.objective / len(q), oracle_mse, rel_tol=1e-9)


# ---------------------------------------------------------------------------------------------- CLI
RECORD = {
    "tokens_mean",
    "tokens_std",
    "tokens_min",
    "tokens_max",
    "mse",
    "psnr",
    "ssim",
    "lpips",
    "prior_top5",
    "spearman_sc",
    "spearman_tc",
}
SETUP = {
    "head",
    "tokenizer",
    "data",
    "split",
    "seed",
    "videos",
    "clips_per_video",
    "clips",
    "num_latents",
    "clip_shape",
    "k_grid",
    "budget",
    "budget_source",
    "allocator",
    "allocators",
    "modes",
    "oracle",
    "lpips",
}


def test_eval_json_schema_is_stable(tiny_path, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "--tokenizer",
        tiny_path,
        "--head",
        "pretrained",
        "--data",
        "synthetic",
        "--allocator",
        "fast",
        "--videos",
        2,
        "--clips-per-video",
        2,
        "--no-lpips",
        "--json",
        "--out",
        out,
    ]
    rc, stdout, stderr = run_cli(argv, capsys)
    assert rc == 0, stderr
    report = json.loads(stdout)  # stdout holds the JSON and nothing else
    assert report == json.loads((out / "eval.json").read_text())

    assert set(report) == {
        "schema",
        "setup",
        "at_budget",
        "sweep",
        "per_clip",
        "rate_quality",
        "measure",
        "plots",
        "timing_s",
    }
    assert report["measure"] is None  # --measure psnr (the default): the rate_quality table is the judge
    assert report["schema"] == "vaportok-eval/3"
    assert set(report["setup"]) == SETUP
    assert set(report["setup"]["oracle"]) == {"solver", "metric", "ilp_fallbacks", "unproven"}
    s = report["setup"]
    assert (s["data"], s["split"], s["seed"], s["head"]) == ("synthetic", "all", 1_000_003, "pretrained")
    assert (s["clips"], s["num_latents"], s["k_grid"], s["budget_source"]) == (4, 12, list(range(1, 13)), "head_argmax")
    assert s["allocators"] == ["fixed", "bithr", "bidelta", "ilp", "fast"] and s["modes"] == ["argmax", "pre_argmax"]

    at = report["at_budget"]
    assert set(at) == {"policy", "allocators", "oracle", "oracles"}
    assert set(at["oracles"]) == {"psnr", "mse"} and at["oracles"]["psnr"] == at["oracle"]  # no LPIPS: no LPIPS oracle
    assert set(at["policy"]) == {"argmax", "pre_argmax"}
    assert set(at["allocators"]) == {"fixed", "bithr", "bidelta", "ilp", "fast"}
    for rec in [*at["policy"].values(), *at["allocators"].values(), at["oracle"]]:
        assert set(rec) == RECORD
        assert rec["lpips"] is None and math.isfinite(rec["psnr"]) and math.isfinite(rec["ssim"])
    assert at["policy"]["argmax"]["tokens_mean"] == pytest.approx(s["budget"])

    sweep = report["sweep"]
    assert set(sweep) == {"budgets", "allocators", "oracle"}
    assert set(sweep["allocators"]) == set(at["allocators"]) and len(sweep["budgets"]) == 8
    for curve in [*sweep["allocators"].values(), sweep["oracle"]]:
        assert len(curve) == 8 and all(set(p) == RECORD | {"budget"} for p in curve)

    pc = report["per_clip"]
    assert set(pc) == {"sc", "tc", "tokens"} and len(pc["sc"]) == len(pc["tc"]) == 4
    assert set(pc["tokens"]) == {"policy/argmax", "policy/pre_argmax", "oracle"} | {
        f"allocators/{n}" for n in at["allocators"]
    }
    rq = report["rate_quality"]
    assert set(rq) == {"measure", "budgets", "curves", "own", "fixed"} and rq["budgets"] == sweep["budgets"]
    assert set(rq["curves"]) == {"fixed", "oracle", "head", "search"} | set(at["allocators"])
    for curve in rq["curves"].values():
        assert len(curve) == 8 and all(set(p) == {*CURVE_KEYS, "psnr"} for p in curve)
    # the yardstick never beats itself (0 where its curve rises; < 0 where a smaller k already reached that PSNR)
    assert all(p["tokens_saved"] <= 1e-9 for p in rq["curves"]["fixed"])
    assert all(p["tokens_saved"] >= -1e-9 for p in rq["curves"]["oracle"])  # and the oracle never loses to it
    assert set(rq["own"]) == {"head/argmax", "head/pre_argmax"} | {f"allocators/{n}" for n in at["allocators"]}
    timing = {"encode", "head_scorer", "oracle_scorer", "allocate", "rate_quality", "metrics", "total"}
    assert set(report["timing_s"]) == timing
    assert set(report["plots"]) == {"rd_psnr", "rd_lpips", "tokens_vs_complexity", "token_hist", "rate_quality"}
    for path in report["plots"].values():
        assert Path(path).is_file() and Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_folder_of_mp4_files_evaluates_end_to_end(tiny_path, mp4_folder, tmp_path, capsys):
    out = tmp_path / "mp4eval"
    argv = [
        "--tokenizer",
        tiny_path,
        "--head",
        "pretrained",
        "--data",
        mp4_folder,
        "--allocator",
        "bithr",
        "--videos",
        10,
        "--clips-per-video",
        2,
        "--budget",
        5,
        "--out",
        out,
    ]
    rc, stdout, stderr = run_cli(argv, capsys)
    assert rc == 0, stderr
    assert (
        "| head argmax |" in stdout
        and "| oracle (fast, true psnr) |" in stdout
        and "| oracle (fast, true mse) |" in stdout
        and "bithr (head scorer) *" in stdout
    )
    report = json.loads((out / "eval.json").read_text())
    s = report["setup"]
    assert (s["videos"], s["clips"], s["budget"], s["budget_source"], s["split"]) == (3, 6, 5.0, "given", None)
    at = report["at_budget"]
    for rec in [*at["policy"].values(), *at["allocators"].values(), at["oracle"]]:
        assert all(math.isfinite(rec[k]) for k in ("psnr", "ssim", "lpips", "mse", "prior_top5"))
        assert rec["lpips"] >= 0
    for name in ("rd_psnr", "rd_lpips", "tokens_vs_complexity", "token_hist"):
        assert (out / f"{name}.png").stat().st_size > 10_000
    assert np.ptp(report["per_clip"]["tc"]) > 0  # the three videos differ in motion


def test_run_and_export_folders_load_and_check_the_tokenizer(tiny_path, tmp_path):
    from vaportok_rl.export import save_pretrained
    from vaportok_rl.runs import save_head

    tok = load_tokenizer(tiny_path)
    tuned = copy.deepcopy(tok.head)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.01)
    (tmp_path / "run").mkdir()
    save_head(tuned, tmp_path / "run", tokenizer_fingerprint=tok.fingerprint, steps=1, config={})
    save_pretrained(tuned, tmp_path / "export", tokenizer_fingerprint=tok.fingerprint)
    for spec in ("run", "run/head.safetensors", "export"):
        head = ev.load_head_spec(str(tmp_path / spec), tok)
        for a, b in zip(head.state_dict().values(), tuned.state_dict().values(), strict=True):
            assert torch.equal(a, b), spec

    (tmp_path / "other").mkdir()
    save_head(tuned, tmp_path / "other", tokenizer_fingerprint="0" * 64, steps=1, config={})
    save_pretrained(tuned, tmp_path / "other_export", tokenizer_fingerprint="0" * 64)
    for spec in ("other", "other_export"):
        with pytest.raises(ev.EvalError, match="--head"):
            ev.load_head_spec(str(tmp_path / spec), tok)
    assert ev.load_head_spec(str(tmp_path / "other"), tok, force=True) is not None


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--allocator", "greedy"], ["--allocator", "greedy", "bithr"]),
        (["--data", "/no/such/folder"], ["--data", "/no/such/folder", "existing folder"]),
        (["--budget", "0"], ["--budget", "'0'", "positive"]),
        (["--budget", "abc"], ["--budget", "'abc'"]),
        (["--budget", "99"], ["--budget", "99", "[1, 12]"]),
        (["--videos", "0"], ["--videos", "'0'", "positive integer"]),
        (["--head", "/no/such/head"], ["--head", "/no/such/head", "exported head"]),
        (["--tokenizer", "/no/such/tok.safetensors"], ["--tokenizer", "/no/such/tok.safetensors"]),
    ],
)
def test_bad_options_exit_2_naming_option_value_and_expectation(tiny_path, tmp_path, capsys, extra, needles):
    options = {"--tokenizer": str(tiny_path), "--head": "pretrained", "--data": "synthetic", "--allocator": "fast"}
    options[extra[0]] = extra[1]
    argv = [a for pair in options.items() for a in pair]
    rc, stdout, stderr = run_cli([*argv, "--out", tmp_path / "x", "--no-lpips"], capsys)
    assert rc == 2
    assert stdout == ""
    for needle in needles:
        assert needle in stderr, (needle, stderr)


def test_default_head_missing_is_a_clear_error(tiny_path, tmp_path, capsys, monkeypatch):
    import vaportok_rl.runs

    monkeypatch.setattr(vaportok_rl.runs, "DEFAULT_HEAD_DIR", tmp_path / "head_default")
    argv = ["--tokenizer", tiny_path, "--head", "default", "--data", "synthetic", "--allocator", "ilp"]
    rc, _, stderr = run_cli(argv, capsys)
    assert rc == 2
    assert "--head" in stderr and "'default'" in stderr and "export" in stderr and "pretrained" in stderr


def test_eval_budgets_option_sets_the_sweep_and_is_checked(tiny_path, tmp_path, capsys):
    base = ["--tokenizer", tiny_path, "--head", "pretrained", "--data", "synthetic", "--allocator", "bithr"]
    base += ["--videos", 2, "--clips-per-video", 2, "--no-lpips", "--json", "--out", tmp_path / "o"]
    rc, stdout, stderr = run_cli([*base, "--budgets", 2, 5.5], capsys)
    assert rc == 0, stderr
    report = json.loads(stdout)
    assert report["sweep"]["budgets"] == [2.0, 5.5] == report["rate_quality"]["budgets"]
    assert [len(c) for c in report["rate_quality"]["curves"].values()] == [2] * len(report["rate_quality"]["curves"])
    rc, _, stderr = run_cli([*base, "--budgets", 2, 99, "--out", tmp_path / "o2"], capsys)  # o holds a report
    assert rc == 2 and "--budgets" in stderr and "99" in stderr and "Traceback" not in stderr


# ---------------------------------------------------------------------------------------------- --measure
PRICED = '''
import torch
from vaportok_rl.rewards import Reward


class PricedPSNR(Reward):
    """PSNR with a price folded in and declared: the measure it stands for is PSNR itself."""

    name = "priced_psnr"
    needs = frozenset({"reconstructions"})
    price_per_token = 0.5

    def __call__(self, rollout):
        mse = (rollout.reconstructions.clamp(0, 1) - rollout.videos.unsqueeze(1)).pow(2).flatten(3).mean(-1)
        return -10 * torch.log10(mse.clamp(min=1e-10)) - self.price_per_token * rollout.keep.float()
'''


def test_eval_judges_by_a_measure_with_its_price_kept_apart(tiny_path, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "priced_psnr.py").write_text(PRICED)
    base = ["--tokenizer", tiny_path, "--head", "pretrained", "--data", "synthetic", "--allocator", "bithr"]
    base += ["--videos", 2, "--clips-per-video", 2, "--no-lpips", "--budgets", 3, 6]
    rc, stdout, stderr = run_cli([*base, "--measure", "priced_psnr", "--plugin-path", plugins, "--json"], capsys)
    assert rc == 0, stderr
    report = json.loads(stdout)
    judged, psnr = report["measure"], report["rate_quality"]
    assert judged["measure"] == "priced_psnr"
    # value + price·k is PSNR: Fixed's curve, the oracle and every saving equal the PSNR report's
    assert judged["fixed"]["quality"] == pytest.approx(psnr["fixed"]["psnr"], abs=1e-4)
    for name in ("head", "oracle", "bithr"):
        got = [p["tokens_saved"] for p in judged["curves"][name]]
        assert got == pytest.approx([p["tokens_saved"] for p in psnr["curves"][name]], abs=1e-6), name
    # another measure ranks differently, and the side-by-side table names both
    rc, stdout, stderr = run_cli([*base, "--measure", "mse", "--out", tmp_path / "mse"], capsys)
    assert rc == 0, stderr
    assert "equal mean MSE" in stdout and "the head under mse and under PSNR" in stdout
    mse = json.loads((tmp_path / "mse" / "eval.json").read_text())["measure"]
    assert mse["measure"] == "mse" and all(-1 < q < 0 for q in mse["fixed"]["quality"])  # minus MSE, clips in [0, 1]


@pytest.mark.parametrize(
    "measure, needles",
    [("nosuch", ["--measure nosuch", "nosuch.py"]), ("reconstruction", ["--measure reconstruction", "[B, G, L]"])],
)
def test_eval_measure_errors_are_one_line(tiny_path, tmp_path, capsys, measure, needles):
    base = ["--tokenizer", tiny_path, "--head", "pretrained", "--data", "synthetic", "--allocator", "bithr"]
    rc, stdout, stderr = run_cli([*base, "--videos", 2, "--clips-per-video", 2, "--measure", measure], capsys)
    assert rc == 2 and stdout == "" and "Traceback" not in stderr
    assert all(n in stderr for n in needles), stderr
