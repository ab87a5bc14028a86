"""Enumerated groups, then sampled GRPO in the same run (issue 17, item 6): a reward that scores whole paths ([B, G])
is left out of the fit and tuned by ``grpo.path_phase.steps`` sampled steps from the fitted head, which becomes the
KL reference; the run resumes bit-exact from a checkpoint inside the fit, at its end and inside the sampled phase."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import FakeTokenizer
from safetensors.torch import load_file
from test_allocation_training import ALLOC
from test_trainer import records, tiny

from vaportok_rl.cli.export import main as export_cli
from vaportok_rl.config import ConfigError
from vaportok_rl.run_files import CHECKPOINTS, FIT_HEAD, RUN_HEAD
from vaportok_rl.runs import load_head
from vaportok_rl.train import run_training

PER_CLIP_AND_PATH = "rewards={psnr: {weight: 1.0}, token_cost: {weight: 0.1}, diversity: {weight: 5.0}}"


def enumerated(tmp_path: Path, *more: str) -> list[str]:
    return [
        PER_CLIP_AND_PATH,
        *ALLOC[1:],
        "grpo.groups=enumerated",
        "grpo.grid_points=4",
        "data.videos=6",
        "grpo.knob_prices=[0.0]",
        f"table_cache={tmp_path / 'cache'}",
        *more,
    ]


TWO_PHASES = ["steps=3", "grpo.path_phase.steps=3", "grpo.path_phase.videos_per_step=2", "log.eval_every=2"]


def test_a_path_level_reward_without_a_sampled_phase_fails_before_training_naming_both_ways_out(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"reward 'diversity'.*\[B, G\].*grpo.path_phase.steps > 0.*grpo.groups"):
        run_training(tiny(out, "steps=2", *enumerated(tmp_path)), tokenizer=FakeTokenizer(), progress=False)
    assert not (out / CHECKPOINTS).exists() and not (out / "metrics.jsonl").exists()  # nothing was trained


def test_only_path_level_rewards_leave_nothing_to_fit(tmp_path):
    config = tiny(
        tmp_path / "run",
        *enumerated(tmp_path, "rewards.psnr=null", "rewards.token_cost=null", "steps=2", "grpo.path_phase.steps=2"),
    )
    with pytest.raises(ConfigError, match=r"every reward \('diversity'.*nothing to fit"):
        run_training(config, tokenizer=FakeTokenizer(), progress=False)


def test_a_sampled_phase_needs_enumerated_groups():
    with pytest.raises(ConfigError, match=r"grpo.path_phase.steps: 2 .*grpo.groups: enumerated"):
        tiny(Path("unused"), "grpo.path_phase.steps=2")


def test_the_fit_then_the_sampled_phase_from_the_fitted_head(tmp_path, capsys):
    out = tmp_path / "run"
    summary = run_training(tiny(out, *enumerated(tmp_path, *TWO_PHASES)), tokenizer=FakeTokenizer(), progress=False)
    assert summary["steps"] == 6 and summary["table"]["path_rewards"] == ["diversity"]
    train = {r["step"]: r for r in records(out) if "loss" in r}
    assert all("kl_to_target" in train[s] for s in (1, 2, 3))  # the fit's steps
    assert all("clip_ratio/region_mean" in train[s] and "rewards/diversity/mean" in train[s] for s in (4, 5, 6))
    evaluated = [r["step"] for r in records(out) if "eval/reward" in r]
    assert evaluated == [0, 2, 3, 4, 6]  # before, every 2 steps, at the end of the fit, at the end
    # the fitted head is kept; it is the sampled phase's KL reference; the final head moved away from it
    fitted = load_file(out / FIT_HEAD / RUN_HEAD)
    last = load_file(out / CHECKPOINTS / "step-000006" / "tensors.safetensors")
    assert all(torch.equal(last[f"ref_head.{k}"], v) for k, v in fitted.items())
    final = load_file(out / RUN_HEAD)
    assert any(not torch.equal(final[k], v) for k, v in fitted.items())
    assert load_head(out / FIT_HEAD, FakeTokenizer()).config.num_latents == FakeTokenizer.num_latents
    assert json.loads((out / FIT_HEAD / "head_config.json").read_text())["steps"] == 3
    # the exported head's card says how it was made
    assert export_cli([str(out), "--out", str(tmp_path / "export")]) == 0, capsys.readouterr().err
    assert "then tuned by 3 steps of sampled GRPO" in (tmp_path / "export" / "README.md").read_text()


@pytest.mark.parametrize("checkpoint", [2, 3, 4])  # inside the fit, at its end, inside the sampled phase
def test_a_two_phase_run_resumes_bit_exact_logs_included(tmp_path, checkpoint):
    common = enumerated(tmp_path, *TWO_PHASES, "log.checkpoint_every=1", "log.keep_checkpoints=0")
    a, b = tmp_path / "a", tmp_path / "b"
    run_training(tiny(a, *common), tokenizer=FakeTokenizer(), progress=False)
    name = f"step-{checkpoint:06d}"
    shutil.copytree(a / CHECKPOINTS / name, b / CHECKPOINTS / name)
    lines = [line for line in (a / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] <= checkpoint]
    (b / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if checkpoint > 3:  # resumed past the fit: the fitted head was written at the switch, before the checkpoint
        shutil.copytree(a / FIT_HEAD, b / FIT_HEAD)
    run_training(tiny(b, *common), tokenizer=FakeTokenizer(), resume=True, progress=False)
    for head in (RUN_HEAD, f"{FIT_HEAD}/{RUN_HEAD}"):  # the final head, and the fitted one (kept, or made again)
        head_a, head_b = load_file(a / head), load_file(b / head)
        assert all(torch.equal(head_a[k], head_b[k]) for k in head_a), head
    strip = [[{k: v for k, v in r.items() if k != "step_time"} for r in records(d)] for d in (a, b)]
    assert strip[0] == strip[1]
