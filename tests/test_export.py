"""Export of tuned heads: bit-for-bit round trip, fingerprint checks, TorchScript check, no pickle, atomic writes.

Run folders are written in the trainer's format (``runs.save_head`` + summary.json + config.yaml) around the
conftest head and FakeTokenizer; one test exports a real (tiny, 2-step) training run end to end.
"""

from __future__ import annotations

import copy
import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from conftest import FakeTokenizer
from safetensors.torch import load_file

from vaportok_rl import TaildropHead
from vaportok_rl.checkpoint import save_checkpoint
from vaportok_rl.cli.export import main as cli
from vaportok_rl.config import save_yaml
from vaportok_rl.export import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
    ExportError,
    FingerprintMismatchError,
    export_run,
    load_head,
    save_pretrained,
)
from vaportok_rl.runs import save_head

CONFIG = {
    "tokenizer": "tests/conftest.py:FakeTokenizer",
    "seed": 3,
    "steps": 5,
    "rewards": {
        "efficiency": {"spec": None, "weight": 1.0, "kwargs": {}},
        "penalty": {"spec": None, "weight": 2.0, "kwargs": {"shape": "quadratic"}},
        "diversity": None,
    },
    "plugin_paths": [],
    "grpo": {"group_size": 4, "beta": 0.1},
    "rollout": {"videos_per_step": 2, "clips_per_video": 2, "mode": "pre_argmax"},
    "log": {"output_dir": "/somewhere/run"},
}
EVAL0 = {"step": 0, "eval/reward": 0.25, "eval/argmax_psnr": 11.25, "eval/argmax_tokens/mean": 6.5}
EVAL5 = {"step": 5, "eval/reward": 0.5, "eval/argmax_psnr": 12.125, "eval/argmax_tokens/mean": 4.0}


@pytest.fixture
def trained_head(head) -> TaildropHead:
    """The conftest head with every weight perturbed, so a fresh init could never pass for a loaded one."""
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return head


@pytest.fixture
def run_dir(tmp_path, trained_head) -> Path:
    """A finished run folder in the trainer's format."""
    run = tmp_path / "run"
    run.mkdir()
    save_head(trained_head, run, tokenizer_fingerprint=FakeTokenizer.fingerprint, steps=5, config=CONFIG)
    summary = {
        "steps": 5,
        "tokenizer_fingerprint": FakeTokenizer.fingerprint,
        "initial_eval": EVAL0,
        "final_eval": EVAL5,
        "eval_history": [EVAL0, EVAL5],
        "last_train": {"reward": 0.4},
        "seconds": 1.5,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    save_yaml(CONFIG, run / "config.yaml")
    return run


class OtherTokenizer(FakeTokenizer):
    fingerprint = "another-tokenizer-v1"


def assert_same_head(a: TaildropHead, b: TaildropHead) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key
    assert a.config == b.config


# ---------------------------------------------------------------------------------------------- round trip


def test_export_round_trips_bit_for_bit(run_dir, tmp_path, trained_head):
    out = export_run(run_dir, tmp_path / "export")
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == ["README.md", CONFIG_FILE, WEIGHTS_FILE, "vaportok-run.json"]  # + the claim's record
    rng = torch.get_rng_state()
    loaded = TaildropHead.from_pretrained(out, tokenizer=FakeTokenizer())
    assert torch.equal(rng, torch.get_rng_state())  # loading leaves the global RNG alone
    assert_same_head(loaded, trained_head)
    assert not loaded.training
    latents = torch.randn(5, 8, 4)
    assert torch.equal(loaded(latents), trained_head.eval()(latents))
    assert_same_head(load_head(out / WEIGHTS_FILE), trained_head)  # a file inside the folder works too


def test_config_json_and_model_card(run_dir, tmp_path):
    out = export_run(run_dir, tmp_path / "export")
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["format"] == FORMAT and config["format_version"] == FORMAT_VERSION
    assert config["head"] == {
        "latent_dim": 4,
        "num_latents": 8,
        "width": 8,
        "layers": 1,
        "heads": 2,
        "temperature": 1.0,
    }
    assert config["temperature"] == 1.0 and config["sampling_mode"] == "pre_argmax"
    assert config["tokenizer_fingerprint"] == FakeTokenizer.fingerprint
    assert config["reward_weights"] == {"efficiency": 1.0, "penalty": 2.0}  # the null entry was dropped
    assert config["rewards"]["penalty"] == {"spec": "penalty", "weight": 2.0, "kwargs": {"shape": "quadratic"}}
    training = config["training"]
    assert training["final_eval"] == EVAL5 and training["seed"] == 3 and training["grpo"]["group_size"] == 4
    assert "log" not in training  # no local output paths leak into the export
    card = (out / "README.md").read_text()
    for text in (
        "fake-tokenizer-v0",
        "from_pretrained",
        "| eval/argmax_psnr | 11.25 | 12.12 | 0.875 |",
        "| penalty | `penalty` | 2 |",
        "pre_argmax",
    ):
        assert text in card, text


def test_torchscript_export_is_checked_and_loads(run_dir, tmp_path, trained_head):
    assert cli([str(run_dir), "--out", str(tmp_path / "ts"), "--format", "torchscript"]) == 0
    path = tmp_path / "ts" / TORCHSCRIPT_FILE
    assert TORCHSCRIPT_FILE in json.loads((tmp_path / "ts" / CONFIG_FILE).read_text())["files"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream
        scripted = torch.jit.load(str(path))
    latents = torch.randn(6, 8, 4)  # another batch size than the trace's
    assert (scripted(latents) - trained_head.eval()(latents)).abs().max() <= 1e-5


def test_torchscript_mismatch_is_an_error_and_writes_nothing(run_dir, tmp_path, monkeypatch):
    real_trace = torch.jit.trace

    class Off(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, x):
            return self.module(x) + 1e-3

    monkeypatch.setattr(torch.jit, "trace", lambda module, example, **kw: Off(real_trace(module, example, **kw)))
    with pytest.raises(ExportError, match=r"traced head differs from the eager head by 0\.001.*not writing"):
        export_run(run_dir, tmp_path / "ts", torchscript=True)
    assert not (tmp_path / "ts").exists()


def test_torchscript_load_does_not_use_python_pickle(run_dir, tmp_path, monkeypatch):
    """The docs' claim: torch.jit.load reads the archive with libtorch's C++ reader, not Python's pickle."""
    export_run(run_dir, tmp_path / "ts", torchscript=True)
    forbid_pickle(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(tmp_path / "ts" / TORCHSCRIPT_FILE))
    assert scripted(torch.randn(2, 8, 4)).shape == (2, 8)


# ---------------------------------------------------------------------------------------------- fingerprints


def test_fingerprint_mismatch_is_a_clear_error_unless_forced(run_dir, tmp_path, trained_head):
    out = export_run(run_dir, tmp_path / "export")
    with pytest.raises(FingerprintMismatchError) as error:
        TaildropHead.from_pretrained(out, tokenizer=OtherTokenizer())
    message = str(error.value)
    assert "fake-tokenizer-v0" in message and "another-tokenizer-v1" in message and "force=True" in message
    with pytest.raises(FingerprintMismatchError):
        load_head(out, tokenizer="another-tokenizer-v1")  # a fingerprint string works too
    with pytest.warns(UserWarning, match="another-tokenizer-v1.*loaded anyway"):
        forced = load_head(out, tokenizer=OtherTokenizer(), force=True)
    assert_same_head(forced, trained_head)


def test_shape_mismatch_is_an_error_even_when_forced(run_dir, tmp_path):
    out = export_run(run_dir, tmp_path / "export")

    class Wider(FakeTokenizer):
        latent_dim = 6

    with pytest.raises(ExportError, match=r"\[K, D\] = \[8, 4\].*\[8, 6\]"):
        load_head(out, tokenizer=Wider(), force=True)


# ---------------------------------------------------------------------------------------------- safety


def forbid_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_no_pickle_anywhere_in_the_export_path(run_dir, tmp_path, trained_head, monkeypatch):
    forbid_pickle(monkeypatch)
    out = export_run(run_dir, tmp_path / "export", torchscript=True)
    assert_same_head(load_head(out, tokenizer=FakeTokenizer()), trained_head)
    assert cli([str(run_dir), "--out", str(tmp_path / "via-cli")]) == 0


def test_existing_out_needs_overwrite_and_never_deletes_other_files(run_dir, tmp_path, trained_head):
    out = export_run(run_dir, tmp_path / "export")
    export_run(run_dir, out)  # the same head again: its config and card are refreshed
    other = copy.deepcopy(trained_head)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(ExportError, match="finished export.*--overwrite"):
        save_pretrained(other, out, tokenizer_fingerprint=FakeTokenizer.fingerprint)
    assert_same_head(load_head(out), trained_head)
    (out / "notes.txt").write_text("mine")
    save_pretrained(other, out, tokenizer_fingerprint=FakeTokenizer.fingerprint, overwrite=True)
    assert_same_head(load_head(out), other)
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite replaces the export's files only
    export_run(run_dir, out, force=True)  # force: the older name of overwrite
    assert_same_head(load_head(out), trained_head)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    with pytest.raises(ExportError, match="did not make.*thesis.tex.*--overwrite"):
        export_run(run_dir, precious)
    assert sorted(p.name for p in precious.iterdir() if not p.name.startswith(".")) == ["thesis.tex"]
    assert cli([str(run_dir), "--out", str(precious)]) == 2


def test_failed_export_leaves_nothing_behind(run_dir, tmp_path, monkeypatch):
    import vaportok_rl.export as export

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "model_card", broken_card)
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(run_dir, tmp_path / "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no export, no temporary folder


def test_corrupted_weights_are_detected(run_dir, tmp_path):
    out = export_run(run_dir, tmp_path / "export")
    state = load_file(str(out / WEIGHTS_FILE))
    state["pos"] = state["pos"] + 1
    from safetensors.torch import save_file

    save_file(state, str(out / WEIGHTS_FILE))
    with pytest.raises(ExportError, match="does not match the SHA-256"):
        load_head(out)


def test_helpful_errors_for_wrong_folders(run_dir, tmp_path, capsys, trained_head):
    from vaportok_rl.tokenizer.head import load_exported_head

    with pytest.raises(ExportError, match="looks like a training run folder.*vaportok-rl export"):
        load_exported_head(run_dir)  # the export-format reader alone (TaildropHead.from_pretrained)
    assert_same_head(load_head(run_dir, tokenizer=FakeTokenizer()), trained_head)  # the one loader reads runs too
    assert cli([str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "run folder" in capsys.readouterr().err
    (run_dir / "head.safetensors").unlink()
    save_checkpoint(run_dir / "checkpoints" / "step-000002", {"head.x": torch.zeros(1)}, {})
    with pytest.raises(ExportError, match=r"has not finished.*checkpoints/step-000002"):
        export_run(run_dir, tmp_path / "x")


def test_checkpoint_folders_export(tmp_path, trained_head):
    tensors = {f"head.{k}": v for k, v in trained_head.state_dict().items()}
    tensors["ref_head.pos"] = torch.zeros(1)
    meta = {
        "step": 2,
        "config": CONFIG,
        "head_config": trained_head.config_dict(),
        "tokenizer_fingerprint": FakeTokenizer.fingerprint,
        "eval_history": [EVAL0],
    }
    checkpoint = save_checkpoint(tmp_path / "run" / "checkpoints" / "step-000002", tensors, meta)
    out = export_run(checkpoint, tmp_path / "export")
    assert_same_head(load_head(out, tokenizer=FakeTokenizer()), trained_head)
    assert json.loads((out / CONFIG_FILE).read_text())["training"]["steps_done"] == 2


def test_save_pretrained_and_eval_json(tmp_path, trained_head):
    out = save_pretrained(
        trained_head,
        tmp_path / "direct",
        tokenizer_fingerprint="fp",
        eval_results={"psnr": {"argmax": 24.5}, "note": "text is skipped"},
    )
    card = (out / "README.md").read_text()
    assert "| psnr/argmax | 24.5 |" in card and "note" not in card
    assert_same_head(load_head(out, tokenizer="fp"), trained_head)
    with pytest.raises(ValueError, match="mode"):
        save_pretrained(trained_head, tmp_path / "bad", tokenizer_fingerprint="fp", sampling_mode="greedy")


def test_eval_report_table_in_the_model_card(run_dir, tmp_path, trained_head):
    evaluation = pytest.importorskip("vaportok_rl.judge")
    videos = torch.rand(2, 2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    report = evaluation.evaluate(FakeTokenizer(), trained_head, videos, lpips=False)
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(report))
    assert cli([str(run_dir), "--out", str(tmp_path / "export"), "--eval-json", str(path)]) == 0
    card = (tmp_path / "export" / "README.md").read_text()
    assert "oracle" in card and "| head argmax |" in card
    assert "sweep" not in json.loads((tmp_path / "export" / CONFIG_FILE).read_text())["eval"]


def test_a_real_training_run_exports(tmp_path):
    from vaportok_rl.config import load_config
    from vaportok_rl.train import run_training
    from vaportok_rl.train_config import TrainConfig

    run = tmp_path / "run"
    config = load_config(
        TrainConfig,
        None,
        [
            "steps=2",
            "rewards={efficiency: {}}",
            "rollout.videos_per_step=2",
            "rollout.clips_per_video=2",
            "grpo.group_size=4",
            "eval.num_videos=2",
            "policy.width=8",
            "policy.layers=1",
            "policy.heads=2",
            "data.source=synthetic",
            f"log.output_dir={run}",
        ],
    )
    run_training(config, tokenizer=FakeTokenizer(), progress=False)
    assert cli([str(run), "--out", str(tmp_path / "export")]) == 0
    loaded = TaildropHead.from_pretrained(tmp_path / "export", tokenizer=FakeTokenizer())
    trained = load_file(str(run / "head.safetensors"))
    assert all(torch.equal(trained[k], v) for k, v in loaded.state_dict().items())
    card = (tmp_path / "export" / "README.md").read_text()
    assert "| eval/argmax_psnr |" in card and "before (step 0)" in card and "after (step 2)" in card
