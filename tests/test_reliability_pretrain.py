"""`vaportok-rl pretrain`: every user mistake ends in one clear line and exit status 2, nothing a user made is
overwritten without --overwrite, a kill -9 then --resume is bit-exact (logs included), a full disk keeps the last
checkpoint, Ctrl-C says how to resume (exit 130). Tiny settings of tests/test_pretrain.py: seconds per run."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from safetensors import SafetensorError
from safetensors.torch import load_file
from test_pretrain import TINY
from test_reliability import assert_one_clear_line, run

import vaportok_rl.tokenizer.pretrain as pretrain
from vaportok_rl.checkpoint import load_checkpoint
from vaportok_rl.run_folder import read_record

RECIPE = ROOT / "recipes" / "pretrain_tiny.yaml"
ARGS = ["pretrain", str(RECIPE), *TINY, "--no-progress"]  # 6 steps, checkpoints at 3 and 6, 2 prior-only steps


def pretrain_cli(capsys, out: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, *ARGS, f"log.output_dir={out}", *extra)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def metrics(out: Path, drop: tuple[str, ...] = ("elapsed_s",)) -> list[dict]:
    """metrics.jsonl without the wall-clock field (the one value a resumed run cannot reproduce)."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def loop_steps(out: Path) -> list[int]:
    return [r["step"] for r in metrics(out) if "loss" in r]


def tokenizer_tensors(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "tokenizer.safetensors")


# =============================================================================================== case 1: ownership


def test_a_finished_pretraining_is_neither_replaced_nor_resumed_past_its_end(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = pretrain_cli(capsys, out)
    assert code == 0, err
    assert "wrote" in stdout and "tokenizer.safetensors" in stdout
    assert read_record(out)["status"] == "finished" and read_record(out)["kind"] == "pretrain"
    before = files_of(out)
    code, _, err = pretrain_cli(capsys, out)
    assert_one_clear_line(code, err, str(out), "finished pretrain run", "tokenizer.safetensors", "--overwrite")
    code, _, err = pretrain_cli(capsys, out, "--resume")
    assert_one_clear_line(code, err, str(out), "finished at step 6", "optim.steps=N")
    assert files_of(out) == before  # the tokenizer (and everything else) untouched
    with pytest.raises(SystemExit) as stop:  # argparse: the two flags exclude each other
        pretrain_cli(capsys, out, "--resume", "--overwrite")
    assert stop.value.code == 2 and "not allowed with" in capsys.readouterr().err
    # --overwrite starts over (the recipe is deterministic: the same tokenizer, a log of one run, not two)
    code, _, err = pretrain_cli(capsys, out, "--overwrite")
    assert code == 0, err
    assert loop_steps(out) == [1, 2, 3, 4, 5, 6]
    assert read_record(out)["status"] == "finished"
    # --resume trains a finished run on when there are more steps to do
    code, _, err = pretrain_cli(capsys, out, "--resume", "optim.steps=7")
    assert code == 0, err
    assert loop_steps(out) == [1, 2, 3, 4, 5, 6, 7] and metrics(out)[-1]["prior_stage_steps"] == 2
    assert read_record(out)["steps"] == 7


def test_a_folder_of_the_users_files_is_refused_and_overwrite_keeps_the_others(capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's notes\n")
    (out / "tokenizer.safetensors").write_bytes(b"the user's own tokenizer")
    before = files_of(out)
    for extra in ([], ["--resume"]):  # nothing to resume: claimed as a fresh start, refused the same way
        code, _, err = pretrain_cli(capsys, out, *extra)
        assert_one_clear_line(code, err, str(out), "did not make", "notes.txt", "tokenizer.safetensors", "--overwrite")
        assert files_of(out) == before
    code, _, err = pretrain_cli(capsys, out, "--overwrite")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "the user's notes\n"  # not a file pretrain writes: left alone
    assert tokenizer_tensors(out)  # the user's file was replaced by a tokenizer, as asked


def test_a_second_process_on_the_same_folder_is_refused(capsys, tmp_path):
    from vaportok_rl.run_folder import claim

    out = tmp_path / "run"
    with claim(out, "pretrain", writes=()):  # another process writing it now
        code, _, err = pretrain_cli(capsys, out)
        assert_one_clear_line(code, err, str(out), "being written by", "pid")
    assert pretrain_cli(capsys, out)[0] == 0  # released: the folder is free again


def test_a_resume_that_does_not_fit_the_checkpoint_is_one_line_and_changes_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    assert pretrain_cli(capsys, out)[0] == 0
    before = files_of(out)  # the record (finished) included
    code, _, err = pretrain_cli(capsys, out, "--resume", "optim.steps=8", "model.width=64")
    assert_one_clear_line(code, err, str(out / "checkpoint"), "model.width=32 -> 64", "optim.steps")
    code, _, err = pretrain_cli(capsys, out, "--resume", "optim.steps=5")  # a record saying unfinished, too
    assert_one_clear_line(code, err, str(out), "finished at step 6")
    tensors = out / "checkpoint" / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])  # a truncated checkpoint
    code, _, err = pretrain_cli(capsys, out, "--resume", "optim.steps=8")
    assert_one_clear_line(code, err, str(out / "checkpoint"), "unreadable", "--overwrite")
    assert files_of(out) == before


# =============================================================================================== case 2: settings


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("optim.lr=.nan", "optim.lr", "nan"),
        ("optim.lr=-1e-3", "optim.lr", "-0.001"),
        ("optim.lr=.inf", "optim.lr", "inf"),
        ("optim.prior_lr=0", "optim.prior_lr", "0"),
        ("optim.threads=0", "optim.threads", "0"),
        ("optim.batch_size=1", "optim.batch_size", "1"),
        ("optim.head_sigma=0", "optim.head_sigma", "0"),
        ("optim.max_grad_norm=-1.0", "optim.max_grad_norm", "-1.0"),
        ("optim.weight_decay=-0.1", "optim.weight_decay", "-0.1"),
        ("optim.full_keep_prob=1.5", "optim.full_keep_prob", "1.5"),
        ("optim.head_max_center=-.inf", "optim.head_max_center", "inf"),
        ("optim.dead_code_every=-1", "optim.dead_code_every", "-1"),
        ("log.eval_every=-1", "log.eval_every", "-1"),
        ("log.checkpoint_every=-5", "log.checkpoint_every", "-5"),
        ("log.eval_clips=0", "log.eval_clips", "0"),
        ("optim.init_coefs_first=4", "optim.init_coefs_first", "4"),  # + 1 constant > model.code_dim=4
    ],
)
def test_a_bad_setting_is_one_line_naming_key_value_and_range(capsys, tmp_path, override, key, value):
    out = tmp_path / "run"
    code, _, err = pretrain_cli(capsys, out, override)
    assert_one_clear_line(code, err, key, value, "expected")
    assert not out.exists()  # refused before any work


def test_eval_and_checkpoint_every_0_mean_only_after_the_last_step(capsys, tmp_path, monkeypatch):
    saves = []
    real = pretrain.save_checkpoint

    def save(path, tensors, meta):
        saves.append(meta["step"])
        return real(path, tensors, meta)

    monkeypatch.setattr(pretrain, "save_checkpoint", save)
    out = tmp_path / "run"
    code, _, err = pretrain_cli(capsys, out, "log.eval_every=0", "log.checkpoint_every=0")
    assert code == 0, err
    assert [r["step"] for r in metrics(out) if "psnr" in r] == [6]
    assert saves == [6]


# =============================================================================================== case 3: folders


@pytest.mark.parametrize("kind", ["file", "under_a_file", "read_only"])
def test_an_output_folder_that_is_a_file_or_read_only_is_one_line_before_any_work(capsys, tmp_path, monkeypatch, kind):
    import vaportok_rl.run_folder as run_folder

    (tmp_path / "a_file").write_text("the user's file\n")
    out = {"file": tmp_path / "a_file", "under_a_file": tmp_path / "a_file" / "run", "read_only": tmp_path / "ro"}[kind]
    if kind == "read_only":
        out.mkdir()
        out.chmod(0o555)
        if os.access(out, os.W_OK):  # root ignores the mode: refuse the first write there, as the kernel would
            real_open = open

            def refusing_open(path, *args, **kwargs):
                if Path(path).parent == out:
                    raise PermissionError(errno.EACCES, "Permission denied", str(path))
                return real_open(path, *args, **kwargs)

            monkeypatch.setattr(run_folder, "open", refusing_open, raising=False)
    monkeypatch.setattr(pretrain, "build_pool", lambda config: pytest.fail("work before the check"))
    try:
        code, _, err = pretrain_cli(capsys, out)
    finally:
        if kind == "read_only":
            out.chmod(0o755)
    expected = "is a file" if kind == "file" else "not writable"
    assert_one_clear_line(code, err, "log.output_dir", str(out), expected)
    assert (tmp_path / "a_file").read_text() == "the user's file\n"
    if kind == "read_only":
        assert not [p for p in out.iterdir() if p.name != ".vaportok.lock"]


# =============================================================================================== case 4: kill -9


def _killed_child(out: Path, point: str, cwd: Path) -> int:
    """Run the CLI in a child process that SIGKILLs itself at ``point``: "step4" (entering step 4, after the step-3
    checkpoint and metric line 4, leaving a partial line 5 too) or "tokenizer" (after the last checkpoint and the
    prior stage's metric line, before the tokenizer file)."""
    code = (
        "import os, signal, sys\n"
        "import vaportok_rl.tokenizer.pretrain as p\n"
        "def die():\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "real_step = p.Pretrainer.train_step\n"
        "def step(self):\n"
        f"    if {point!r} == 'step4' and self.step == 4:\n"
        f"        with open({str(out / 'metrics.jsonl')!r}, 'a') as f:\n"
        '            f.write(\'{"step": 5, "loss": 0.\')\n'
        "        die()\n"
        "    return real_step(self)\n"
        "p.Pretrainer.train_step = step\n"
        f"if {point!r} == 'tokenizer':\n"
        "    p.save_tokenizer = lambda *a, **k: die()\n"
        "from vaportok_rl.cli import main\n"
        f"sys.exit(main({[*ARGS, f'log.output_dir={out}']!r}))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True).returncode


@pytest.mark.parametrize("point", ["step4", "tokenizer"])
def test_kill_9_then_resume_is_bit_exact_logs_included(capsys, tmp_path, point):
    a, b = tmp_path / "a", tmp_path / "b"
    assert pretrain_cli(capsys, a)[0] == 0
    assert _killed_child(b, point, tmp_path) == -signal.SIGKILL
    assert read_record(b)["status"] == "running" and not (b / "tokenizer.safetensors").exists()
    code, _, err = pretrain_cli(capsys, b, "--resume")  # the dead process's lock went with it
    assert code == 0, err
    assert metrics(a) == metrics(b)  # line for line: no duplicated steps, no partial line, one prior-stage line
    assert loop_steps(b) == [1, 2, 3, 4, 5, 6]
    ta, tb = tokenizer_tensors(a), tokenizer_tensors(b)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert read_record(b)["status"] == "finished"
    assert read_record(a)["fingerprint"] == read_record(b)["fingerprint"]


# =============================================================================================== case 5: full disk


def _full_disk_on_call(monkeypatch, module, n: int, error: type[Exception]) -> None:
    """``module.save_file`` writes half a file then fails as a full disk does, on its ``n``-th call."""
    real, calls = module.save_file, []

    def save_file(tensors, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == n:
            Path(path).write_bytes(b"\0" * 64)  # the bytes that fitted
            if error is OSError:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            raise SafetensorError(
                f"Error while serializing: I/O error: No space left on device (os error 28) at {path}"
            )
        return real(tensors, path, *args, **kwargs)

    monkeypatch.setattr(module, "save_file", save_file)


@pytest.mark.parametrize("error", [OSError, SafetensorError])  # safetensors reports disk errors as its own type
def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_one(capsys, tmp_path, monkeypatch, error):
    import vaportok_rl.checkpoint as checkpoint

    _full_disk_on_call(monkeypatch, checkpoint, 2, error)  # the step-6 checkpoint
    out = tmp_path / "run"
    code, _, err = pretrain_cli(capsys, out)
    assert_one_clear_line(
        code, err, "No space left on device", str(out / "checkpoint"), "after step 6", "step 3)", "--resume"
    )
    _, meta = load_checkpoint(out / "checkpoint")  # the previous checkpoint, whole
    assert meta["step"] == 3
    assert not [p.name for p in out.iterdir() if p.name.startswith(".checkpoint")]  # no half-written folder
    assert not (out / "tokenizer.safetensors").exists() and read_record(out)["status"] == "running"
    monkeypatch.undo()
    code, _, err = pretrain_cli(capsys, out, "--resume")
    assert code == 0, err
    assert loop_steps(out) == [1, 2, 3, 4, 5, 6]


def test_a_full_disk_writing_the_tokenizer_keeps_the_previous_one(capsys, tmp_path, monkeypatch):
    import vaportok_rl.tokenizer.default as default

    out = tmp_path / "run"
    assert pretrain_cli(capsys, out)[0] == 0
    before = (out / "tokenizer.safetensors").read_bytes()
    _full_disk_on_call(monkeypatch, default, 1, OSError)
    code, _, err = pretrain_cli(capsys, out, "--resume", "optim.steps=7")  # train on, then the disk is full
    assert_one_clear_line(code, err, "No space left on device", "tokenizer.safetensors", "after step 7", "--resume")
    assert (out / "tokenizer.safetensors").read_bytes() == before  # the previous tokenizer, whole
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tokenizer")]
    assert load_checkpoint(out / "checkpoint")[1]["step"] == 7
    monkeypatch.undo()
    code, _, err = pretrain_cli(capsys, out, "--resume", "optim.steps=7")
    assert code == 0, err
    assert (out / "tokenizer.safetensors").read_bytes() != before
    assert loop_steps(out) == [1, 2, 3, 4, 5, 6, 7] and read_record(out)["status"] == "finished"


# =============================================================================================== case 6: Ctrl-C


def test_ctrl_c_says_where_the_run_stands_and_exits_130(capsys, tmp_path, monkeypatch):
    real = pretrain.Pretrainer.train_step

    def interrupted_in_step_5(self):
        if self.step == 4:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(pretrain.Pretrainer, "train_step", interrupted_in_step_5)
    out = tmp_path / "run"
    code, _, err = pretrain_cli(capsys, out)
    assert code == 130 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in ("interrupted", "after step 4 of 6", str(out / "checkpoint"), "step 3)", "--resume"):
        assert needle in lines[0], (needle, lines[0])
    monkeypatch.undo()
    code, _, err = pretrain_cli(capsys, out, "--resume")
    assert code == 0, err
    assert loop_steps(out) == [1, 2, 3, 4, 5, 6]
