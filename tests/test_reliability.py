"""Bad inputs a user can give, each ending in one clear line (naming the file, key or plugin) and exit status 2,
or in a documented recovery (resuming from the newest *readable* checkpoint, saying so); never a traceback, and
nothing computed is lost. Every test runs in its own tmp working directory (conftest)."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TOKENIZER, FakeTokenizer, save_tiny_tokenizer
from test_trainer import TINY as TRAIN_TINY

from vaportok_rl.cli import main as vaportok_rl
from vaportok_rl.data import write_video
from vaportok_rl.export import save_pretrained
from vaportok_rl.runs import checkpoint_dirs, load_head
from vaportok_rl.tokenizer.head import CONFIG_FILE, ExportError, load_exported_head

TINY = [*TRAIN_TINY, "--no-progress"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = vaportok_rl([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_clear_line(code: int, err: str, *needles: str) -> str:
    """Exit status 2, no traceback, and one stderr line holding every needle; returns that line."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text("steps: 3\nlog: {checkpoint_every: 1}\n")
    return path


def train(capsys, recipe, out, *extra):
    return run(capsys, "train", recipe, *TINY, f"log.output_dir={out}", *extra)


# =============================================================================================== resuming


def test_truncated_newest_checkpoint_resumes_from_the_newest_readable_one(capsys, recipe, tmp_path):
    out = tmp_path / "run"
    code, _, err = train(capsys, recipe, out, "steps=2")
    assert code == 0, err
    newest = checkpoint_dirs(out)[-1]
    tensors = newest / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])  # a crash / full disk while the filesystem wrote it
    code, _, err = run(capsys, "train", recipe, "--resume", "steps=3", *TINY, f"log.output_dir={out}")
    assert code == 0, err
    assert "Traceback" not in err
    assert str(tensors.parent) in err and "step-000001" in err and "resuming from" in err  # says so
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 3  # the lines after step 1 were redone, not duplicated


def test_truncated_meta_json_and_partial_metrics_line_resume_too(capsys, recipe, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, recipe, out, "steps=2")[0] == 0
    meta = checkpoint_dirs(out)[-1] / "meta.json"
    meta.write_text(meta.read_text()[:50])
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "reward": 0.')  # a killed run's partial last line
    code, _, err = run(capsys, "train", recipe, "--resume", *TINY, f"log.output_dir={out}")
    assert code == 0, err
    assert "Traceback" not in err and str(meta.parent) in err and "metrics.jsonl" in err
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # the partial line is gone; every other line is JSON


def test_no_readable_checkpoint_is_one_line_naming_them(capsys, recipe, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, recipe, out, "steps=1")[0] == 0
    for folder in checkpoint_dirs(out):
        (folder / "tensors.safetensors").write_bytes(b"")
    code, _, err = run(capsys, "train", recipe, "--resume", *TINY, f"log.output_dir={out}")
    assert_one_clear_line(code, err, "no readable checkpoint", "step-000001")


def test_flags_and_overrides_mix(capsys, recipe, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, recipe, out, "steps=1")[0] == 0
    code, _, err = run(capsys, "train", recipe, "--resume", "steps=2", *TINY, f"log.output_dir={out}")
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["steps"] == 2


# =============================================================================================== bad data


@pytest.mark.parametrize("bad", ["zero-byte", "not-a-video", "too-short"])
def test_bad_file_under_data_source_fails_before_training(capsys, recipe, tmp_path, bad):
    folder = tmp_path / "videos"
    folder.mkdir()
    frames = (np.random.default_rng(0).random((8, 16, 16, 3)) * 255).astype(np.uint8)
    write_video(folder / "good.mp4", frames)
    target = folder / f"{bad}.mp4"
    if bad == "zero-byte":
        target.write_bytes(b"")
    elif bad == "not-a-video":
        target.write_text("this is not a video\n" * 10)
    else:
        write_video(target, frames[:2])  # 2 frames; 2 clips of 4 frames need 8
    out = tmp_path / "run"
    code, _, err = train(capsys, recipe, out, f"data.source={folder}")
    assert_one_clear_line(code, err, "data.source", str(target))
    assert not checkpoint_dirs(out)  # nothing trained


# =============================================================================================== output paths


def test_unwritable_output_dir_fails_before_any_work(capsys, recipe, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    import vaportok_rl.train.loop as trainer

    monkeypatch.setattr(trainer, "load_tokenizer_spec", lambda spec: pytest.fail("work before the check"))
    code, _, err = train(capsys, recipe, tmp_path / "a_file" / "run")
    assert_one_clear_line(code, err, "log.output_dir", "a_file", "not writable")


@pytest.mark.parametrize("safetensors_error", [False, True])  # safetensors reports a full disk as its own error
def test_disk_error_mid_training_is_one_line_and_keeps_the_last_checkpoint(
    capsys, recipe, tmp_path, monkeypatch, safetensors_error
):
    from safetensors import SafetensorError

    import vaportok_rl.train.state as trainer

    real, calls = trainer.save_checkpoint, []

    def full_disk(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2 and safetensors_error:
            raise SafetensorError(f"Error while serializing: I/O error: No space left on device (os error 28) {path}")
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(trainer, "save_checkpoint", full_disk)
    out = tmp_path / "run"
    code, _, err = train(capsys, recipe, out)
    line = assert_one_clear_line(code, err, "No space left on device", "step 2", "step-000001", "--resume")
    assert "step-000002" in line
    assert [p.name for p in checkpoint_dirs(out)] == ["step-000001"]


def test_eval_out_unwritable_fails_before_evaluating(capsys, tmp_path):
    (tmp_path / "a_file").write_text("")
    tok = save_tiny_tokenizer(tmp_path / "tok.safetensors")
    code, out, err = run(
        capsys, "eval", "--tokenizer", tok, "--head", "pretrained", "--data", "synthetic", "--allocator", "fast",
        "--out", tmp_path / "a_file" / "eval", "--no-lpips",
    )  # fmt: skip
    assert_one_clear_line(code, err, "--out", "a_file", "nothing was evaluated")
    assert err.count("\n") == 1  # no progress line: no evaluation started


def test_eval_disk_error_after_evaluating_keeps_the_printed_report(capsys, tmp_path, monkeypatch):
    import vaportok_rl.cli.eval as cli_eval

    def full_disk(report, out):
        raise OSError(28, "No space left on device", str(Path(out) / "rd_psnr.png"))

    monkeypatch.setattr(cli_eval, "write_plots", full_disk)
    tok = save_tiny_tokenizer(tmp_path / "tok.safetensors")
    code, out, err = run(
        capsys, "eval", "--tokenizer", tok, "--head", "pretrained", "--data", "synthetic", "--allocator", "fast",
        "--videos", 2, "--clips-per-video", 2, "--out", tmp_path / "eval", "--no-lpips", "--json",
    )  # fmt: skip
    assert_one_clear_line(code, err, "--out", "No space left on device", "printed above")
    assert json.loads(out)["schema"].startswith("vaportok-eval/")  # the whole report reached stdout


# =============================================================================================== plugins


RAISING_PLUGIN = """
import torch

from vaportok_rl.rewards import Reward

CALLS = []


class Flaky(Reward):
    name = "flaky"

    def __call__(self, rollout):
        CALLS.append(1)
        if len(CALLS) == 4:  # the held-out evaluation at step 0, training steps 1 and 2, then training step 3
            raise ZeroDivisionError("the plugin's own bug")
        return torch.zeros(rollout.B, rollout.G)
"""


def test_reward_plugin_raising_mid_training_names_plugin_and_step(capsys, recipe, tmp_path):
    plugin = tmp_path / "flaky_reward.py"
    plugin.write_text(RAISING_PLUGIN)
    out = tmp_path / "run"
    code, _, err = train(capsys, recipe, out, f"rewards={{flaky: {{spec: '{plugin}:Flaky'}}}}")
    kept = checkpoint_dirs(out)
    assert [p.name for p in kept] == ["step-000001", "step-000002"]  # what was done before stays
    assert_one_clear_line(code, err, "'flaky'", "flaky_reward.py", "ZeroDivisionError", "step 3", str(kept[-1]))


def test_rewards_list_accepts_a_grid_sweep(capsys, tmp_path):
    (tmp_path / "base.yaml").write_text("steps: 1\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("base: base.yaml\ngrid:\n  grpo.beta: [0.0, 0.1]\n")
    code, out, err = run(capsys, "rewards", "list", "--recipe", sweep)
    assert code == 0, err
    assert "Rewards of" in out


# =============================================================================================== exported heads


@pytest.fixture
def export(tmp_path, head) -> Path:
    return save_pretrained(head, tmp_path / "export", tokenizer_fingerprint=FakeTokenizer.fingerprint)


def edit_config(export: Path, **changes) -> None:
    config = json.loads((export / CONFIG_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (export / CONFIG_FILE).write_text(json.dumps(config))


def test_edited_export_config_is_detected(export):
    config = json.loads((export / CONFIG_FILE).read_text())
    edit_config(export, head={**config["head"], "temperature": 0.01})
    with pytest.raises(ExportError, match="config_sha256.*edited"):
        load_head(export)


@pytest.mark.parametrize("digest", ["weights_sha256", "config_sha256"])
def test_missing_digest_is_an_error_unless_forced(export, head, digest):
    edit_config(export, **{digest: None})
    if digest == "weights_sha256":  # the config digest covers the weights digest: refresh it for this case
        from vaportok_rl.tokenizer.head import config_digest

        config = json.loads((export / CONFIG_FILE).read_text())
        edit_config(export, config_sha256=config_digest(config))
    with pytest.raises(ExportError, match=f"no {digest}.*force=True"):
        load_exported_head(export)
    with pytest.warns(UserWarning, match=f"no {digest}"):
        loaded = load_head(export, force=True)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), head.state_dict().values(), strict=True))


def test_absurd_width_is_a_clear_error_not_an_allocation(export):
    from vaportok_rl.tokenizer.head import config_digest

    config = json.loads((export / CONFIG_FILE).read_text())
    config["head"]["width"] = 10**12
    config["config_sha256"] = config_digest(config)  # even a consistent config: the weights do not fit
    (export / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ExportError, match="architecture.*(cannot be built|do not fit)"):
        load_head(export)


def test_eval_cli_names_the_bad_export(capsys, tmp_path, export):
    edit_config(export, tokenizer_fingerprint="x")
    tok = save_tiny_tokenizer(tmp_path / "tok.safetensors")
    code, _, err = run(
        capsys, "eval", "--tokenizer", tok, "--head", export, "--data", "synthetic", "--allocator", "fast",
        "--out", tmp_path / "eval",
    )  # fmt: skip
    assert_one_clear_line(code, err, "--head", str(export), "config_sha256")


# =============================================================================================== tokenizers


def test_corrupt_tokenizer_file_names_its_path(capsys, recipe, tmp_path):
    tok = save_tiny_tokenizer(tmp_path / "tok.safetensors")
    tok.write_bytes(tok.read_bytes()[: len(tok.read_bytes()) // 2])
    code, _, err = run(capsys, "train", recipe, *TINY, f"tokenizer={tok}", f"log.output_dir={tmp_path / 'run'}")
    assert_one_clear_line(code, err, str(tok))
    code, _, err = run(
        capsys, "eval", "--tokenizer", tok, "--head", "pretrained", "--data", "synthetic", "--allocator", "fast",
        "--out", tmp_path / "eval",
    )  # fmt: skip
    assert_one_clear_line(code, err, "--tokenizer", str(tok))


def test_tokenizer_of_the_wrong_size_is_one_line(capsys, tmp_path):
    tok = save_tiny_tokenizer(tmp_path / "tok.safetensors", num_latents=TINY_TOKENIZER["num_latents"] + 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, _, err = run(
            capsys, "eval", "--tokenizer", tok, "--head", "default", "--data", "synthetic", "--allocator", "fast",
            "--out", tmp_path / "eval",
        )  # fmt: skip
    assert_one_clear_line(code, err, "--head")


# =============================================================================================== nothing a user made


def bytes_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def test_train_refuses_a_folder_of_the_users_files_and_overwrite_keeps_the_others(capsys, recipe, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "notes.txt"):
        (out / name).write_text(f"the user's {name}\n")
    before = bytes_of(out)
    code, _, err = train(capsys, recipe, out)
    assert_one_clear_line(code, err, str(out), "did not make", "config.yaml", "--overwrite")
    assert bytes_of(out) == before
    code, _, err = train(capsys, recipe, out, "--overwrite")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "the user's notes.txt\n"  # not a file train writes: left alone
    assert (out / "summary.json").read_text() != before["summary.json"].decode()


def test_a_finished_run_is_neither_replaced_nor_resumed_past_its_end(capsys, recipe, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, recipe, out)[0] == 0
    shutil.rmtree(out / "checkpoints")  # a finished run whose checkpoints were deleted to save space
    before = bytes_of(out)
    code, _, err = train(capsys, recipe, out)
    assert_one_clear_line(code, err, "finished train run", "head.safetensors", "--overwrite")
    code, _, err = train(capsys, recipe, out, "--resume")
    assert_one_clear_line(code, err, "finished at step 3", "steps=N")
    assert bytes_of(out) == before


def test_resume_trains_a_finished_run_on_and_refuses_to_shorten_one(capsys, recipe, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, recipe, out)[0] == 0
    code, _, err = train(capsys, recipe, out, "--resume", "steps=4")
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
    killed = tmp_path / "killed"  # an unfinished run whose newest checkpoint is past the steps asked for
    shutil.copytree(out / "checkpoints", killed / "checkpoints")
    code, _, err = train(capsys, recipe, killed, "--resume", "steps=2")
    assert_one_clear_line(code, err, "step 4", "past steps=2")
    assert not (killed / "summary.json").exists()


def test_distill_refuses_a_grpo_run_and_its_own_finished_run(capsys, tmp_path, tiny_tokenizer_file):
    grpo = tmp_path / "grpo"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps: 2\n")
    assert train(capsys, recipe, grpo)[0] == 0
    head = (grpo / "head.safetensors").read_bytes()
    distill = [
        "distill",
        f"tokenizer={tiny_tokenizer_file}",
        "data.videos=2",
        "data.clips_per_video=2",
        "distill.steps=2",
        "distill.batch=4",
        "distill.knob_prices=[]",
        f"table_cache={tmp_path / 'cache'}",
        "--no-progress",
    ]
    code, _, err = run(capsys, *distill, f"output_dir={grpo}")
    assert_one_clear_line(code, err, "a train run", "--overwrite")
    assert (grpo / "head.safetensors").read_bytes() == head
    assert run(capsys, *distill, f"output_dir={tmp_path / 'd'}")[0] == 0
    head = (tmp_path / "d" / "head.safetensors").read_bytes()
    code, _, err = run(capsys, *distill, f"output_dir={tmp_path / 'd'}", "distill.price=0.3")
    assert_one_clear_line(code, err, "finished distill run", "--overwrite")
    assert (tmp_path / "d" / "head.safetensors").read_bytes() == head


def test_a_second_process_on_the_same_folder_is_refused_and_a_crash_leaves_no_lock(capsys, recipe, tmp_path):
    from vaportok_rl.run_folder import claim

    out = tmp_path / "run"
    with claim(out, "train", writes=()):  # another process writing it now (flock: per open file, so it shows here)
        code, _, err = train(capsys, recipe, out)
        assert_one_clear_line(code, err, str(out), "being written by", "pid")
    assert train(capsys, recipe, out)[0] == 0  # released: the folder is free again


def _kill_after_checkpoint(argv: list[str], step: int, cwd: Path) -> int:
    """Run the CLI in a child process that SIGKILLs itself right after writing checkpoint ``step``: a real kill -9,
    at a known point."""
    import subprocess
    import sys

    code = (
        "import os, signal, sys\n"
        "import vaportok_rl.train.state as t\n"
        "real = t.save_checkpoint\n"
        "def save(path, *a, **k):\n"
        "    out = real(path, *a, **k)\n"
        f"    if path.name == 'step-{step:06d}':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return out\n"
        "t.save_checkpoint = save\n"
        "from vaportok_rl.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True).returncode


@pytest.mark.parametrize(("command", "kill_at"), [("train", 2), ("distill", 4)])  # distill checkpoints at its end
def test_kill_9_then_resume_is_bit_exact_logs_included(capsys, tmp_path, tiny_tokenizer_file, command, kill_at):
    from safetensors.torch import load_file

    (tmp_path / "recipe.yaml").write_text("steps: 4\nlog: {checkpoint_every: 1, eval_every: 2}\n")
    if command == "train":
        args = ["train", str(tmp_path / "recipe.yaml"), *TINY]
        out_key = "log.output_dir"
    else:
        args = ["distill", f"tokenizer={tiny_tokenizer_file}", "data.videos=2", "data.clips_per_video=2"]
        args += ["distill.steps=4", "distill.batch=4", f"table_cache={tmp_path / 'cache'}", "--no-progress"]
        out_key = "output_dir"
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(capsys, *args, f"{out_key}={a}")[0] == 0
    killed = _kill_after_checkpoint([*args, f"{out_key}={b}"], kill_at, tmp_path)
    assert killed == -9 or not (b / "summary.json").exists(), killed
    code, _, err = run(capsys, *args, f"{out_key}={b}", "--resume")
    assert code == 0, err
    head_a, head_b = load_file(a / "head.safetensors"), load_file(b / "head.safetensors")
    assert all(torch.equal(head_a[k], head_b[k]) for k in head_a)
    drop = ("step_time", "seconds")
    logs = [
        [{k: v for k, v in json.loads(x).items() if k not in drop} for x in (d / "metrics.jsonl").open()]
        for d in (a, b)
    ]
    assert logs[0] == logs[1]


# =============================================================================================== runs that stop


def test_a_diverging_run_stops_naming_the_step_and_the_lr_and_keeps_the_last_checkpoint(capsys, recipe, tmp_path):
    out = tmp_path / "run"
    code, _, err = train(capsys, recipe, out, "optim.lr=1e30", "optim.max_grad_norm=null")
    assert_one_clear_line(code, err, "diverged at step", "optim.lr = 1e+30")
    assert not (out / "head.safetensors").exists()
    for path in checkpoint_dirs(out):  # what was checkpointed is finite
        tensors = load_file_(path / "tensors.safetensors")
        assert all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("head."))


def load_file_(path):
    from safetensors.torch import load_file

    return load_file(path)


def test_a_group_too_large_for_memory_is_refused_before_any_work(capsys, recipe, tmp_path, monkeypatch):
    import vaportok_rl.resources as resources

    class Tiny:
        available = 10_000

    monkeypatch.setattr(resources.psutil, "virtual_memory", lambda: Tiny)
    code, _, err = train(capsys, recipe, tmp_path / "run", "grpo.group_size=64")
    assert_one_clear_line(code, err, "grpo.group_size 64", "GiB")
    assert not checkpoint_dirs(tmp_path / "run")


def test_world_size_without_a_launcher_is_one_line(capsys, recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = train(capsys, recipe, tmp_path / "run")
    assert_one_clear_line(code, err, "WORLD_SIZE=2", "torchrun")


def test_ctrl_c_says_where_the_run_stands_and_exits_130(capsys, recipe, tmp_path, monkeypatch):
    import vaportok_rl.train.state as trainer

    real = trainer.save_checkpoint

    def interrupt_after_step_2(path, *args, **kwargs):
        real(path, *args, **kwargs)
        if path.name == "step-000002":
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", interrupt_after_step_2)
    code, _, err = train(capsys, recipe, tmp_path / "run")
    assert code == 130 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "step-000002" in err and "--resume" in err
    monkeypatch.setattr(trainer, "save_checkpoint", real)
    assert train(capsys, recipe, tmp_path / "run", "--resume")[0] == 0


def test_torchrun_with_videos_that_do_not_split_is_one_line_from_rank_0(recipe, tmp_path):
    import subprocess

    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH (it comes with torch); cannot start 2 processes")
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "vaportok_rl.cli", "train", str(recipe)]
    command += [*TINY, "rollout.videos_per_step=3", f"log.output_dir={tmp_path / 'run'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("vaportok-rl train:")]
    assert len(ours) == 1 and "videos_per_step: 3" in ours[0] and "2 processes" in ours[0], result.stderr
    # torchrun's agent reports the failed children with its own ChildFailedError; nothing of ours raised through
    assert "vaportok_rl/" not in result.stderr and "ConfigError" not in result.stderr
    assert not (tmp_path / "run").exists()  # before any work


def test_a_table_cache_path_that_is_a_file_is_refused_and_kept(capsys, tmp_path, tiny_tokenizer_file):
    cache = tmp_path / "notes.txt"
    cache.write_text("the user's notes\n")
    code, _, err = run(
        capsys,
        "distill",
        f"tokenizer={tiny_tokenizer_file}",
        "data.videos=2",
        "distill.steps=2",
        f"table_cache={cache}",
        f"output_dir={tmp_path / 'd'}",
        "--no-progress",
    )
    assert_one_clear_line(code, err, "table_cache", "is a file")
    assert cache.read_text() == "the user's notes\n"


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(capsys, tmp_path, monkeypatch):
    import vaportok_rl.cli.eval as eval_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(eval_cli, "main", interrupted)
    code, _, err = run(capsys, "eval", "--head", "default")
    assert code == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "interrupted (Ctrl-C)" in err and "run the same command again" in err


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, "run"])
def test_ctrl_c_in_a_sweep_says_rerun_to_continue_and_exits_130(capsys, tmp_path, monkeypatch, interrupt):
    import vaportok_rl.cli.sweep as sweep_cli
    from vaportok_rl.train import TrainingInterrupted

    def interrupted(*args, **kwargs):  # between runs, or inside one (its checkpoints kept)
        raise KeyboardInterrupt if interrupt is KeyboardInterrupt else TrainingInterrupted("interrupted (Ctrl-C)")

    monkeypatch.setattr(sweep_cli, "run_sweep", interrupted)
    code, _, err = run(capsys, "sweep", tmp_path / "sweep.yaml")
    assert code == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "re-run the same command to continue the sweep" in err


def test_a_file_named_like_a_runs_folder_is_the_users_and_is_refused(capsys, recipe, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoints").write_text("the user's file, not a folder of checkpoints\n")
    code, _, err = train(capsys, recipe, out)
    assert_one_clear_line(code, err, "did not make", "checkpoints", "--overwrite")
    code, _, err = train(capsys, recipe, out, "--resume")  # a resume finds no checkpoint folder there
    assert code == 2 and "Traceback" not in err
    assert (out / "checkpoints").read_text().startswith("the user's file")
