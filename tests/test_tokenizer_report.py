"""tokenizer-report: measured on eval's held-out videos (or a folder), with the PCA floor beside every row."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, save_tiny_tokenizer
from einops import rearrange

from vaportok_rl.cli.tokenizer_report import main
from vaportok_rl.data import heldout_videos, write_video
from vaportok_rl.metrics import psnr
from vaportok_rl.tokenizer import load_tokenizer
from vaportok_rl.tokenizer.pca_floor import fit_pca_floor

ARGS = ["--videos", "2", "--clips-per-video", "2", "--floor-clips", "64", "--json"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tiny.safetensors")


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_report_is_measured_on_evals_heldout_videos_with_the_floor_beside(tiny, capsys):
    rc, out, _ = run(["--tokenizer", tiny, *ARGS], capsys)
    assert rc == 0
    report = json.loads(out)
    assert list(report["sets"]) == ["synthetic", "textures"]
    assert report["sets"]["textures"]["split"] == "test"
    tokenizer = load_tokenizer(tiny)
    K = tokenizer.num_latents
    # the k = K row is the PSNR of eval's held-out clips (the same loader eval uses), decoded in full
    videos, _ = heldout_videos("synthetic", frames=8, size=16, videos=2, clips_per_video=2)
    clips = rearrange(videos, "b l c t h w -> (b l) c t h w")
    rec = tokenizer.decode(tokenizer.encode(clips).latents, torch.full((4,), K)).clamp(0, 1)
    s = report["sets"]["synthetic"]
    assert s["clips"] == 4
    assert s["psnr"][str(K)] == pytest.approx(float(psnr(rec, clips).mean()), abs=1e-3)
    for k in s["psnr"]:
        assert s["margin_db"][k] == pytest.approx(s["psnr"][k] - s["pca_floor_psnr"][k], abs=2e-3)
    floor = list(s["pca_floor_psnr"].values())
    assert floor == sorted(floor)  # more coefficients, no worse
    assert s["prior_top5_at_k"][str(K)] == pytest.approx(s["prior_top5_accuracy"], abs=1e-4)
    assert report["pca_floor"]["clips"] == 64 and report["pca_floor"]["bits"] == 6
    assert 0 < report["codebook_usage"] <= 1


def test_report_on_a_folder_and_the_table(tiny, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        write_video(folder / f"v{i}.mp4", (rng.random((16, 24, 24, 3)) * 255).astype(np.uint8))
    rc, out, _ = run(["--tokenizer", tiny, "--data", folder, "--videos", "5", "--clips-per-video", "2",
                      "--no-floor"], capsys)  # fmt: skip
    assert rc == 0
    assert "PCA floor" not in out and f"| {folder} | PSNR dB |" in out
    assert "prior top-5 accuracy" in out


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--data", "/no/such/folder"], ["data", "/no/such/folder", "existing folder"]),
        (["--tokenizer", "/no/such.safetensors"], ["tokenizer", "/no/such.safetensors"]),
    ],
)
def test_mistakes_are_one_line(tiny, argv, needles, capsys):
    rc, out, err = run(["--tokenizer", tiny, *ARGS, *argv], capsys)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    for needle in needles:
        assert needle in err


def test_benchmark_script_and_library_floor_agree(tmp_path):
    gen = torch.Generator().manual_seed(0)
    basis = torch.randn(6, 3 * 4 * 8 * 8, generator=gen)
    train = (0.5 + 0.05 * torch.randn(80, 6, generator=gen) @ basis).clamp(0, 1).view(80, 3, 4, 8, 8)
    test = (0.5 + 0.05 * torch.randn(10, 6, generator=gen) @ basis).clamp(0, 1).view(10, 3, 4, 8, 8)
    torch.save(train, tmp_path / "train.pt")
    torch.save(test, tmp_path / "test.pt")
    done = subprocess.run(
        [sys.executable, ROOT / "benchmarks" / "pca_floor.py", "--train", tmp_path / "train.pt", "--test",
         tmp_path / "test.pt", "--k", "2,6"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    script = json.loads(done.stdout.strip().splitlines()[-1])
    floor = fit_pca_floor(train, 6)
    assert script["6bit"] == [round(v, 2) for v in floor.psnr(test, [2, 6]).values()]
    # six components span the (nearly linear) data: continuous PSNR at k = 6 is far above k = 2
    assert script["continuous"][1] > script["continuous"][0] + 5
