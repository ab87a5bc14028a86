"""``vaportok-rl sweep``: report files, kill-and-resume (a real killed process and an injected crash), dry run,
errors before any run starts, stale folders, the shipped recipes, the Markdown table.

Every run is tiny: a random-init built-in tokenizer (8 frames of 16x16, K = 12), B = 2 videos, L = 2 clips,
G = 4 paths, a few steps, 2 held-out videos.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vaportok_rl.cli.sweep import main as cli
from vaportok_rl.sweep import RESULT_COLUMNS, SweepError, format_table, load_results, load_sweep, run_sweep
from vaportok_rl.sweep import run as sweep_module
from vaportok_rl.train_config import DEFAULT_REWARDS

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "recipes" / "vaportok_paper.yaml"
REAL_RUN_TRAINING = sweep_module.run_training


@pytest.fixture(scope="module")
def tokenizer_file(tiny_tokenizer_file) -> Path:
    return tiny_tokenizer_file


def tiny_overrides(tokenizer_file: Path, output_dir: Path, steps: int = 3) -> list[str]:
    return [
        f"tokenizer={tokenizer_file}",
        f"steps={steps}",
        "rollout.videos_per_step=2",
        "rollout.clips_per_video=2",
        "grpo.group_size=4",
        "eval.num_videos=2",
        "log.eval_every=2",
        "log.checkpoint_every=2",
        f"log.output_dir={output_dir}",
    ]


def write_recipe(path: Path, overrides: list[str], runs: list[dict], **extra) -> Path:
    recipe = {"base": str(BASE), "overrides": overrides, "runs": runs, **extra}
    path.write_text(json.dumps(recipe, indent=1))  # JSON is YAML
    return path


THREE_RUNS = [
    {"name": "base"},
    {"name": "recon_gen_x4", "overrides": ["rewards.reconstruction.weight=4", "rewards.generation.weight=4"]},
    {"name": "wo_efficiency", "overrides": ["rewards.efficiency=null"]},
]


class Calls:
    """Wraps sweep.run_training: records (run folder name, resume) of every call."""

    def __init__(self, monkeypatch, before=None):
        self.calls: list[tuple[str, bool]] = []
        real = REAL_RUN_TRAINING  # not a wrapper installed earlier in the same test

        def wrapped(config, *, tokenizer=None, resume=False, progress=True):
            name = Path(config.log.output_dir).name
            self.calls.append((name, resume))
            if before is not None:
                before(name, monkeypatch)
            return real(config, tokenizer=tokenizer, resume=resume, progress=progress)

        monkeypatch.setattr(sweep_module, "run_training", wrapped)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, tokenizer_file):
    """The 3-run sweep, run once through run_sweep (module-scoped: several tests read it)."""
    tmp = tmp_path_factory.mktemp("sweep")
    recipe = write_recipe(tmp / "sweep.yaml", tiny_overrides(tokenizer_file, tmp / "out"), THREE_RUNS)
    loads = []
    real_load = sweep_module.load_tokenizer_spec
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_module, "load_tokenizer_spec", lambda spec: loads.append(spec) or real_load(spec))
        result = run_sweep(recipe, progress=False, log=lambda msg: None)
    return recipe, tmp / "out", result, loads


def test_a_sweep_writes_results_plots_and_table(finished_sweep):
    recipe, out, result, loads = finished_sweep
    assert len(loads) == 1, "the tokenizer is loaded once and shared by the runs"
    assert result["trained"] == ["base", "recon_gen_x4", "wo_efficiency"] and not result["failed"]
    for name in ("results.csv", "rewards.png", "pareto.png", "table.md", "sweep.json"):
        assert (out / name).is_file(), name
    for name in ("rewards.png", "pareto.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with (out / "results.csv").open() as f:
        header = next(csv.reader(f))
    assert header == list(RESULT_COLUMNS)
    rows = {r["run"]: r for r in load_results(out)}
    assert list(rows) == ["base", "recon_gen_x4", "wo_efficiency"]
    assert (rows["base"]["w_reconstruction"], rows["recon_gen_x4"]["w_reconstruction"]) == (1.0, 4.0)
    assert rows["recon_gen_x4"]["w_generation"] == 4.0 and rows["recon_gen_x4"]["w_efficiency"] == 1.0
    assert rows["wo_efficiency"]["w_efficiency"] == 0.0 and rows["wo_efficiency"]["reward_efficiency"] is None
    for run, row in rows.items():
        assert row["seed"] == 0 and row["steps"] == 3
        for key in ("tokens", "psnr", "mse", "lpips", "prior_top5", "sampled_tokens", "reward_reconstruction"):
            assert row[key] is not None and math.isfinite(row[key]), (run, key)
        assert 1 <= row["tokens"] <= 12 and 0 <= row["prior_top5"] <= 1 and row["lpips"] >= 0
        # the sweep's held-out metrics of the tuned head agree with the trainer's own final evaluation of it
        final = json.loads((out / run / "summary.json").read_text())["final_eval"]
        assert row["tokens"] == pytest.approx(final["eval/argmax_tokens/mean"])
        assert row["psnr"] == pytest.approx(final["eval/argmax_psnr"], abs=1e-4)
        assert row["psnr"] == pytest.approx(10 * math.log10(1 / row["mse"]), abs=3)  # mean of per-clip PSNR
    table = (out / "table.md").read_text()
    assert table == result["table"]
    assert "| Run | Missing reward |" in table and "| wo_efficiency | efficiency |" in table
    assert "LPIPS" in table and "Prior top-5 ACC" in table and "MSE" in table


def test_a_finished_sweep_is_not_retrained(finished_sweep, monkeypatch):
    recipe, out, _, _ = finished_sweep
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    calls = Calls(monkeypatch)
    result = run_sweep(recipe, progress=False, log=lambda msg: None)
    assert calls.calls == [] and result["skipped"] == ["base", "recon_gen_x4", "wo_efficiency"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")} == mtimes
    assert len(result["rows"]) == 3


def test_a_changed_recipe_does_not_mix_with_finished_runs(finished_sweep):
    recipe, out, _, _ = finished_sweep
    with pytest.raises(SweepError, match=r"base.*grpo"):
        run_sweep(recipe, ["grpo.beta=0"], progress=False, log=lambda msg: None)
    assert cli([str(recipe), "grpo.beta=0", "--dry-run"]) == 2


def test_killed_sweep_process_resumes_only_the_missing_runs(tmp_path, tokenizer_file, monkeypatch):
    out = tmp_path / "out"
    runs = [{"name": "a"}, {"name": "b", "overrides": ["steps=40"]}, {"name": "c"}]
    recipe = write_recipe(tmp_path / "sweep.yaml", [*tiny_overrides(tokenizer_file, out, steps=2)], runs)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "vaportok_rl.cli", "sweep", str(recipe), "--no-progress"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:  # kill it once run a is finished and run b has a checkpoint (b is mid-run: 40 steps)
        while not ((out / "a" / "summary.json").is_file() and list((out / "b" / "checkpoints").glob("step-*"))):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the sweep did not get to run b in time"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "b" / "summary.json").exists(), "run b finished before the kill; make it longer"
    assert not (out / "c").exists()
    a_summary = (out / "a" / "summary.json").stat().st_mtime_ns

    calls = Calls(monkeypatch)
    result = run_sweep(recipe, progress=False, log=lambda msg: None)
    assert calls.calls == [("b", True), ("c", False)]  # a is not re-run, b resumes from its checkpoint
    assert (out / "a" / "summary.json").stat().st_mtime_ns == a_summary
    assert result["skipped"] == ["a"] and result["trained"] == ["b", "c"]
    train = [
        json.loads(line)["step"]
        for line in (out / "b" / "metrics.jsonl").read_text().splitlines()
        if '"reward"' in line and '"eval/reward"' not in line
    ]
    assert train == list(range(1, 41)), "the resumed run logs every step exactly once"
    assert len(load_results(out)) == 3


def test_a_crash_in_run_two_stops_the_sweep_and_a_rerun_finishes_it(tmp_path, tokenizer_file, monkeypatch):
    import vaportok_rl.train.state as trainer

    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "sweep.yaml", tiny_overrides(tokenizer_file, out, steps=4), [{"name": n} for n in "abc"]
    )
    real_save = trainer.save_checkpoint

    def crash_after_first_checkpoint(name, patch):
        if name == "b":

            def save_then_crash(*args, **kwargs):
                real_save(*args, **kwargs)
                raise RuntimeError("injected crash")

            patch.setattr(trainer, "save_checkpoint", save_then_crash)
        else:
            patch.setattr(trainer, "save_checkpoint", real_save)

    first = Calls(monkeypatch, before=crash_after_first_checkpoint)
    with pytest.raises(RuntimeError, match="injected crash"):
        run_sweep(recipe, progress=False, log=lambda msg: None)
    assert first.calls == [("a", False), ("b", False)]  # stopped at b: c never started
    assert (out / "a" / "summary.json").is_file() and not (out / "b" / "summary.json").exists()
    assert [p.name for p in (out / "b" / "checkpoints").iterdir()] == ["step-000002"]
    a_summary = (out / "a" / "summary.json").stat().st_mtime_ns

    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    second = Calls(monkeypatch)
    assert cli([str(recipe), "--no-progress"]) == 0
    assert second.calls == [("b", True), ("c", False)]
    assert (out / "a" / "summary.json").stat().st_mtime_ns == a_summary
    assert [r["run"] for r in load_results(out)] == ["a", "b", "c"]


def test_keep_going_runs_past_a_failing_run(tmp_path, tokenizer_file, monkeypatch, capsys):
    out = tmp_path / "out"
    overrides = [*tiny_overrides(tokenizer_file, out, steps=1), "eval.num_videos=0"]
    recipe = write_recipe(tmp_path / "sweep.yaml", overrides, [{"name": "a"}, {"name": "b"}])

    def fail_a(name, patch):
        if name == "a":
            raise RuntimeError("injected failure")

    Calls(monkeypatch, before=fail_a)
    assert cli([str(recipe), "--keep-going", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "1 run(s) failed: a" in captured.err
    assert not (out / "a" / "summary.json").exists() and (out / "b" / "summary.json").is_file()
    assert [r["run"] for r in load_results(out)] == ["b"]


def test_dry_run_lists_runs_grid_and_seeds(tmp_path, tokenizer_file, capsys):
    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "sweep.yaml",
        tiny_overrides(tokenizer_file, out),
        [{"name": "plain"}, {"name": "wo_pen", "overrides": ["rewards.penalty=null"]}],
        seeds=[0, 3],
        grid={"rewards.reconstruction.weight": [1, 4], "optim.lr": [0.001]},
    )
    assert cli([str(recipe), "--dry-run", "steps=5"]) == 0
    text = capsys.readouterr().out
    sweep = load_sweep(recipe, ["steps=5"])
    ids = [r.run_id for r in sweep.runs]
    names = [f"{run}-reconstruction.weight-{w}_lr-0.001" for run in ("plain", "wo_pen") for w in (1, 4)]
    assert ids == [f"{name}/seed{s}" for name in names for s in (0, 3)]
    for run in sweep.runs:
        assert run.run_id in text and run.config.steps == 5 and run.config.optim.lr == 0.001
        assert run.output_dir == out / run.run_id
        assert run.config.rewards["reconstruction"].weight == float(run.name.split("weight-")[1].split("_")[0])
        assert (run.config.rewards["penalty"] is None) == run.name.startswith("wo_pen")
    assert "new" in text and "8 run(s)" in text
    assert not out.exists(), "a dry run writes nothing"


def test_the_shipped_recipes_expand(tmp_path):
    recon_gen = load_sweep(ROOT / "recipes" / "sweep_recon_gen.yaml", output_dir=tmp_path)
    order = ("efficiency", "penalty", "diversity", "reconstruction", "generation")
    weights = {r.name: tuple(r.config.rewards[k].weight for k in order) for r in recon_gen.runs}
    assert list(weights.values()) == [(1, 1, 1, 1, 1), (1, 1, 1, 2, 2), (1, 1, 1, 4, 4), (1, 1, 1, 8, 8)]
    assert len(recon_gen.runs) == 12 and {r.seed for r in recon_gen.runs} == {0, 1, 2}  # 4 weightings x 3 seeds
    assert recon_gen.root == tmp_path
    ablation = load_sweep(ROOT / "recipes" / "ablation_leave_one_out.yaml", output_dir=tmp_path)
    assert len(ablation.runs) == 6  # six reward sets x one seed
    missing = {r.name: [k for k, v in r.config.rewards.items() if v is None] for r in ablation.runs}
    assert missing["full"] == [] and missing["wo_generation"] == ["generation"]


def test_a_bad_key_fails_before_any_run_naming_the_run_and_key(tmp_path, tokenizer_file, capsys):
    out = tmp_path / "out"
    runs = [{"name": "good"}, {"name": "typo", "overrides": ["rewards.reconstruction.wieght=4"]}]
    recipe = write_recipe(tmp_path / "sweep.yaml", tiny_overrides(tokenizer_file, out), runs)
    assert cli([str(recipe), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'typo'" in err and "rewards.reconstruction.wieght" in err and "weight" in err
    assert not out.exists(), "no run may start"
    # a reward plugin that does not load fails before training too, naming the run
    runs = [{"name": "good"}, {"name": "plugin", "overrides": ["rewards.nosuch={}"]}]
    recipe = write_recipe(tmp_path / "sweep.yaml", tiny_overrides(tokenizer_file, out), runs)
    assert cli([str(recipe), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'plugin'" in err and "nosuch" in err
    assert not (out / "good").exists()
    # a malformed grid
    recipe = write_recipe(tmp_path / "sweep.yaml", tiny_overrides(tokenizer_file, out), runs, grid={"optim.lr": 3})
    assert cli([str(recipe), "--dry-run"]) == 2
    assert "grid.optim.lr" in capsys.readouterr().err


def test_table_is_the_table_1_analogue_for_leave_one_out_with_seeds():
    def row(name, seed, missing, tokens, psnr):
        weights = {f"w_{k}": 0.0 if k == missing else 1.0 for k in DEFAULT_REWARDS}
        return {"name": name, "seed": seed, **weights, "tokens": tokens, "psnr": psnr, "mse": 0.01, "lpips": 0.2,
                "prior_top5": 0.5}  # fmt: skip

    rows = [
        row("full", 0, None, 40, 30.0),
        row("full", 1, None, 42, 31.0),
        row("wo_efficiency", 0, "efficiency", 60, 32.0),
        row("wo_efficiency", 1, "efficiency", 62, 33.0),
    ]
    table = format_table(rows).splitlines()
    assert table[0] == "| Missing reward | #Tokens | PSNR (dB) | MSE | LPIPS | Prior top-5 ACC (%) | Seeds |"
    assert table[2] == (
        "| none (all five) | 41.0 ± 1.4 | 30.50 ± 0.71 | 0.01000 ± 0.00000 | 0.2000 ± 0.0000 | 50.0 ± 0.0 | 2 |"
    )
    assert table[3].startswith("| efficiency | 61.0 ± 1.4 |")
    no_missing = format_table([{**r, "w_efficiency": 1.0} for r in rows[:2]]).splitlines()
    assert no_missing[0].startswith("| Run | Weights E:P:D:R:G | #Tokens |") and "| full | 1:1:1:1:1 |" in no_missing[2]
