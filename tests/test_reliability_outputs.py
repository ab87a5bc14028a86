"""Output folders of eval, sweep and export: nothing a user (or another run) made is replaced without
--overwrite, every refusal is one line and exit status 2, and what each command claims it finishes or leaves
resumable. Also eval's device and memory checks, a sweep's corrupt runs and its table over non-paper rewards,
and an export interrupted by a full disk. Every test runs in its own tmp working directory (conftest)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from conftest import FakeTokenizer
from test_reliability import assert_one_clear_line, run
from test_sweep import tiny_overrides, write_recipe

from vaportok_rl.export import WEIGHTS_FILE, save_pretrained
from vaportok_rl.run_folder import read_record
from vaportok_rl.runs import load_head, save_head
from vaportok_rl.sweep import format_table, load_sweep, result_row
from vaportok_rl.sweep import run as sweep_module

# =============================================================================================== eval


def eval_argv(tok, head="pretrained", *extra):
    return [
        "eval", "--tokenizer", tok, "--head", head, "--data", "synthetic", "--allocator", "fast",
        "--videos", 2, "--clips-per-video", 1, "--no-lpips", "--budgets", 3, 6, "--json", *extra,
    ]  # fmt: skip


@pytest.fixture
def tok(tiny_tokenizer_file) -> Path:
    return tiny_tokenizer_file


@pytest.fixture
def exported_head(tmp_path, tok) -> Path:
    """The tiny tokenizer's own head, exported to a folder named ``my_head``, with its weights perturbed."""
    from vaportok_rl.export import save_pretrained
    from vaportok_rl.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tok)
    head = tokenizer.head
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return save_pretrained(head, tmp_path / "heads" / "my_head", tokenizer_fingerprint=tokenizer.fingerprint)


def test_eval_default_out_is_per_head_and_a_second_eval_is_refused(capsys, tok, exported_head):
    code, out, err = run(capsys, *eval_argv(tok, "pretrained"))
    assert code == 0, err
    code, out2, err = run(capsys, *eval_argv(tok, exported_head))
    assert code == 0, err
    first, second = Path("runs/eval/pretrained-synthetic"), Path("runs/eval/my_head-synthetic")
    assert json.loads((first / "eval.json").read_text())["setup"]["head"] == "pretrained"
    assert json.loads((second / "eval.json").read_text())["setup"]["head"] == str(exported_head)
    assert json.loads(out) == json.loads((first / "eval.json").read_text())
    assert read_record(first)["kind"] == "eval" and read_record(first)["status"] == "finished"
    # the same eval again: refused before any work, naming the files; the first report is untouched
    before = (first / "eval.json").read_bytes()
    code, out, err = run(capsys, *eval_argv(tok, "pretrained"))
    assert_one_clear_line(code, err, "--out", str(first), "finished eval", "eval.json", "--overwrite")
    assert out == "" and err.count("\n") == 1  # nothing was evaluated
    assert (first / "eval.json").read_bytes() == before
    # --overwrite replaces the report and plots, and leaves the user's own files alone
    (first / "notes.txt").write_text("mine")
    code, out, err = run(capsys, *eval_argv(tok, "pretrained", "--overwrite"))
    assert code == 0, err
    assert json.loads((first / "eval.json").read_text()) == json.loads(out)
    assert (first / "notes.txt").read_text() == "mine"
    # a folder of the user's files is refused without --overwrite
    mine = Path("mine")
    mine.mkdir()
    (mine / "thesis.tex").write_text("...")
    code, _, err = run(capsys, *eval_argv(tok, "pretrained", "--out", mine))
    assert_one_clear_line(code, err, "--out", "mine", "thesis.tex", "did not make")


def test_eval_measure_gets_its_own_default_out():
    import argparse

    from vaportok_rl.cli.eval import default_out

    def out(head, data="synthetic", measure="psnr"):
        return default_out(argparse.Namespace(head=head, data=data, measure=measure)).as_posix()

    assert out("default") == "runs/eval/default-synthetic"
    assert out("default", measure="mse") == "runs/eval/default-synthetic-mse"
    assert out("default", measure="plugins/my_q.py:Quality") == "runs/eval/default-synthetic-Quality"
    Path("r/checkpoints/step-000040").mkdir(parents=True)
    assert out("r/checkpoints/step-000040", data="textures") == "runs/eval/r-step-000040-textures"


@pytest.mark.parametrize(
    "device, needles",
    [
        ("cuda", ["--device cuda", "no CUDA device here", "expected cpu"]),
        ("cuda:1", ["--device cuda:1", "no CUDA device here"]),
        ("tpu9", ["--device tpu9", "not a torch device", "expected cpu"]),
        ("xpu", ["--device xpu", "no xpu device here", "expected cpu"]),
    ],
)
def test_eval_device_that_is_not_here_is_one_line(capsys, tok, monkeypatch, device, needles):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    code, out, err = run(capsys, *eval_argv(tok, "pretrained", "--device", device))
    assert_one_clear_line(code, err, *needles)
    assert out == "" and not Path("runs").exists()  # refused before anything was made


def test_eval_too_big_for_memory_is_refused_before_loading_videos(capsys, tok, monkeypatch):
    import vaportok_rl.data
    import vaportok_rl.resources

    def no_loading(*args, **kwargs):
        raise AssertionError("videos were loaded before the memory check")

    monkeypatch.setattr(vaportok_rl.data, "heldout_videos", no_loading)
    code, out, err = run(capsys, *eval_argv(tok, "pretrained", "--videos", 10**9))  # an absurd count
    assert_one_clear_line(code, err, "--videos 1000000000", "needs about", "GiB", "of RAM available", "lower")
    assert out == "" and not Path("runs/eval/pretrained-synthetic").exists()  # the claimed folder is gone again

    class Low:
        available = 1 << 20  # 1 MiB free: even the tiny default set does not fit

    monkeypatch.setattr(vaportok_rl.resources.psutil, "virtual_memory", lambda: Low())
    code, _, err = run(capsys, *eval_argv(tok, "pretrained"))
    assert_one_clear_line(code, err, "--videos 2", "--clips-per-video 1", "needs about", "0.0 GiB")


# =============================================================================================== sweep


ROOT = Path(__file__).resolve().parents[1]
REAL_RUN_TRAINING = sweep_module.run_training


class Calls:
    """Wraps sweep.run_training: records (run folder name, resume) of every call (``before(name, patch)`` first)."""

    def __init__(self, monkeypatch, before=None):
        self.calls: list[tuple[str, bool]] = []

        def wrapped(config, **kwargs):
            name = Path(config.log.output_dir).name
            self.calls.append((name, kwargs.get("resume", False)))
            if before is not None:
                before(name, monkeypatch)
            return REAL_RUN_TRAINING(config, **kwargs)

        monkeypatch.setattr(sweep_module, "run_training", wrapped)


METRICS = {"tokens": 40.0, "tokens_std": 3.0, "psnr": 30.0, "mse": 0.001, "lpips": 0.1, "prior_top5": 0.5}


def table_of(recipe: Path) -> str:
    """The sweep's table for a recipe's runs, through the rows a sweep writes (no training)."""
    rows = []
    for one in load_sweep(recipe).runs:
        one.output_dir.mkdir(parents=True)
        (one.output_dir / "summary.json").write_text("{}")
        rows.append(result_row(one, METRICS))
    return format_table(rows)


def test_sweep_table_describes_the_recipes_own_rewards(tmp_path):
    base = ROOT / "recipes" / "grpo_default.yaml"  # psnr + token_cost: none of the paper's five
    runs = [{"name": "base"}, {"name": "pricey", "overrides": ["rewards.token_cost.weight=0.2"]}]
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(json.dumps({"base": str(base), "overrides": [f"log.output_dir={tmp_path / 'a'}"], "runs": runs}))
    table = table_of(recipe).splitlines()
    assert table[0].startswith("| Run | Weights psnr:token_cost | #Tokens |"), table[0]
    assert table[2].startswith("| base | 1:0.1 |") and table[3].startswith("| pricey | 1:0.2 |")
    assert not any(name in "\n".join(table) for name in ("efficiency", "generation", "Missing"))
    # a leave-one-out over the recipe's own rewards names the one missing
    runs.append({"name": "wo_cost", "overrides": ["rewards.token_cost=null"]})
    recipe.write_text(json.dumps({"base": str(base), "overrides": [f"log.output_dir={tmp_path / 'b'}"], "runs": runs}))
    table = table_of(recipe).splitlines()
    assert table[0].startswith("| Run | Missing reward | Weights psnr:token_cost |"), table[0]
    assert table[2].startswith("| base | none (all 2) | 1:0.1 |") and table[4].startswith("| wo_cost | token_cost |")
    assert "efficiency" not in "\n".join(table)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_tokenizer_file):
    """A finished sweep of two tiny runs (4 steps, a checkpoint every 2), never interrupted: (recipe, folder)."""
    tmp = tmp_path_factory.mktemp("sweep2")
    out = tmp / "out"
    recipe = write_recipe(tmp / "sweep.yaml", tiny_overrides(tiny_tokenizer_file, out, steps=4), [{"name": "a"},
                          {"name": "b", "overrides": ["optim.lr=0.003"]}])  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        assert sweep_module.run_sweep(recipe, progress=False)["trained"] == ["a", "b"]
    return recipe, out


def head_tensors(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "head.safetensors"))


def assert_same_heads(out: Path, reference: Path) -> None:
    for name in ("a", "b"):
        got, want = head_tensors(out / name), head_tensors(reference / name)
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in got), f"run {name}: the head differs"


def test_sweep_killed_mid_run_then_rerun_is_bit_exact(tmp_path, two_runs, monkeypatch):
    import vaportok_rl.train.state as trainer

    recipe, reference = two_runs
    out = tmp_path / "out"
    real_save = trainer.save_checkpoint

    def crash_in_b(name, patch):  # run b dies right after its first checkpoint (step 2 of 4), like a kill -9
        def save_then_die(*args, **kwargs):
            real_save(*args, **kwargs)
            raise SystemExit("killed")

        patch.setattr(trainer, "save_checkpoint", save_then_die if name == "b" else real_save)

    Calls(monkeypatch, before=crash_in_b)
    with pytest.raises(SystemExit, match="killed"):
        sweep_module.run_sweep(recipe, output_dir=out, progress=False)
    assert (out / "a" / "summary.json").is_file() and not (out / "b" / "summary.json").exists()
    assert read_record(out)["status"] == "running" and read_record(out / "b")["status"] == "running"
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    calls = Calls(monkeypatch)
    result = sweep_module.run_sweep(recipe, output_dir=out, progress=False)
    assert calls.calls == [("b", True)] and result["skipped"] == ["a"]
    assert_same_heads(out, reference)  # the resumed run ends where the uninterrupted one did, bit for bit
    assert read_record(out)["kind"] == "sweep" and read_record(out)["status"] == "finished"


@pytest.mark.parametrize("broken", ["summary.json", "head.safetensors"])
def test_sweep_rerun_trains_a_run_with_a_corrupt_file_again(capsys, tmp_path, two_runs, monkeypatch, broken):
    import shutil

    recipe, reference = two_runs
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    path = out / "a" / broken
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # a disk error, a kill mid-copy
    calls = Calls(monkeypatch)
    code, _, err = run(capsys, "sweep", recipe, "--output-dir", out, "--no-progress")
    assert code == 0, err
    assert "Traceback" not in err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "run a" in warning[0] and "again" in warning[0], err
    assert str(path) in warning[0]
    assert calls.calls == [("a", False)]  # trained again from scratch; b untouched
    assert_same_heads(out, reference)


def test_sweep_rerun_recomputes_corrupt_sweep_metrics(capsys, tmp_path, two_runs, monkeypatch):
    import shutil

    recipe, reference = two_runs
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    cache = out / "b" / "sweep_metrics.json"
    good = json.loads(cache.read_text())
    cache.write_text(cache.read_text()[:40])
    calls = Calls(monkeypatch)
    code, _, err = run(capsys, "sweep", recipe, "--output-dir", out, "--no-progress")
    assert code == 0, err
    assert "Traceback" not in err and calls.calls == []
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and str(cache) in warning[0] and "recomputing" in warning[0], err
    assert json.loads(cache.read_text()) == good


def test_sweep_folder_of_someone_else_is_refused_unless_overwrite(capsys, tmp_path, two_runs, monkeypatch):
    recipe, _ = two_runs
    calls = Calls(monkeypatch)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("...")
    code, _, err = run(capsys, "sweep", recipe, "--output-dir", mine, "--no-progress")
    assert_one_clear_line(code, err, "sweep folder", str(mine), "thesis.tex", "--overwrite")
    assert sorted(p.name for p in mine.iterdir() if not p.name.startswith(".")) == ["thesis.tex"]  # (the lock file)
    assert calls.calls == []
    # a training run's folder (e.g. runs/grpo_default under a sweep of recipes/grpo_default.yaml)
    train = tmp_path / "train"
    train.mkdir()
    (train / "vaportok-run.json").write_text(json.dumps({"kind": "train", "status": "finished"}))
    (train / "head.safetensors").write_bytes(b"a trained head")
    code, _, err = run(capsys, "sweep", recipe, "--output-dir", train, "--no-progress")
    assert_one_clear_line(code, err, "sweep folder", str(train), "a train run", "--overwrite")
    assert read_record(train)["kind"] == "train" and calls.calls == []
    # --overwrite: the sweep runs there, the user's file stays
    code, _, err = run(capsys, "sweep", recipe, "--output-dir", mine, "--no-progress", "--overwrite")
    assert code == 0, err
    assert (mine / "thesis.tex").read_text() == "..." and (mine / "table.md").is_file()
    assert calls.calls == [("a", False), ("b", False)] and read_record(mine)["kind"] == "sweep"
    # and re-running the same sweep there continues it (nothing to do) without --overwrite
    code, _, err = run(capsys, "sweep", recipe, "--output-dir", mine, "--no-progress")
    assert code == 0, err
    assert len(calls.calls) == 2


# =============================================================================================== export


def perturbed(head, seed: int):
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + p.numel())))
    return head


@pytest.fixture
def run_folder(tmp_path, head) -> Path:
    """A finished training run folder (the trainer's format) around the conftest head."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = {"tokenizer": "fake", "seed": 0, "steps": 2, "rewards": {"efficiency": {"weight": 1.0}}}
    save_head(perturbed(head, 0), run_dir, tokenizer_fingerprint=FakeTokenizer.fingerprint, steps=2, config=config)
    (run_dir / "summary.json").write_text(json.dumps({"steps": 2}))
    (run_dir / "config.yaml").write_text(json.dumps(config))
    return run_dir


def test_export_refuses_a_users_folder_and_another_heads_export_unless_overwrite(capsys, tmp_path, run_folder, head):
    out = tmp_path / "export"
    assert run(capsys, "export", run_folder, "--out", out)[0] == 0
    assert read_record(out)["kind"] == "export" and read_record(out)["status"] == "finished"
    code, _, err = run(capsys, "export", run_folder, "--out", out)
    assert code == 0, err  # the same head again: refreshed
    other = save_pretrained(perturbed(head, 1), tmp_path / "other", tokenizer_fingerprint=FakeTokenizer.fingerprint)
    weights = (other / WEIGHTS_FILE).read_bytes()
    code, _, err = run(capsys, "export", run_folder, "--out", other)
    assert_one_clear_line(code, err, "--out", str(other), "finished export", "model.safetensors", "--overwrite")
    assert (other / WEIGHTS_FILE).read_bytes() == weights
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("...")
    code, _, err = run(capsys, "export", run_folder, "--out", mine)
    assert_one_clear_line(code, err, "--out", str(mine), "thesis.tex", "did not make", "--overwrite")
    code, out_, err = run(capsys, "export", run_folder, "--out", mine, "--overwrite")
    assert code == 0, err
    assert (mine / "thesis.tex").read_text() == "..." and "thesis.tex" not in out_  # left alone, not listed
    code, _, err = run(capsys, "export", run_folder, "--out", other, "--overwrite")
    assert code == 0, err
    got, want = load_head(other).state_dict(), load_head(run_folder).state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want) and (other / WEIGHTS_FILE).read_bytes() != weights


def full_disk_at(monkeypatch, name: str) -> None:
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_export_on_a_full_disk_is_one_line_and_leaves_no_half_export(capsys, tmp_path, run_folder, head, monkeypatch):
    old = save_pretrained(perturbed(head, 1), tmp_path / "old", tokenizer_fingerprint=FakeTokenizer.fingerprint)
    full_disk_at(monkeypatch, "README.md")  # model.safetensors and config.json are written by then
    out = tmp_path / "exports" / "new"
    code, stdout, err = run(capsys, "export", run_folder, "--out", out)
    assert_one_clear_line(code, err, "--out", str(out), "README.md", "No space left on device", "nothing was exported")
    assert stdout == "" and not out.exists()  # no half-written export, no folder it made
    # over an earlier export (of another head, with --overwrite): the earlier one stays whole and loads
    before = {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()}
    code, _, err = run(capsys, "export", run_folder, "--out", old, "--overwrite")
    assert_one_clear_line(code, err, "No space left on device", "nothing was exported")
    assert {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()} == before  # the record too
    assert not [p for p in old.iterdir() if p.name.startswith(".export-tmp")]
    load_head(old)  # digests still match
    monkeypatch.undo()
    assert run(capsys, "export", run_folder, "--out", old)[0] == 2  # still another head's finished export
