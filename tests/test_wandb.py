"""``log.report_to: wandb`` offline: the run's wandb history holds every metrics.jsonl key with the same values
at the same steps, plus the held-out eval plot as an image; WANDB_MODE defaults to offline.

The offline run is read back from its ``run-<id>.wandb`` transaction log (wandb's LevelDB-log framing of
``wandb_internal_pb2.Record`` protobufs), which is what ``wandb sync`` uploads.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pytest

wandb = pytest.importorskip("wandb")

from vaportok_rl.train import run_training  # noqa: E402
from vaportok_rl.train_config import load_train_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def wandb_records(path: Path):
    """Yield the protobuf Records of a .wandb file (LevelDB log: 32 KiB blocks, 7-byte chunk headers)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B", f"{path} is not a wandb transaction log"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk if kind == 4 else chunk)
            pending = b""
            yield record
        elif kind == 2:  # FIRST
            pending = chunk
        elif kind == 3:  # MIDDLE
            pending += chunk


def history(run_file: Path) -> dict[int, dict]:
    """{step: {key: value}} of the logged history (nested keys joined with '/')."""
    rows: dict[int, dict] = {}
    for record in wandb_records(run_file):
        if record.WhichOneof("record_type") != "history":
            continue
        row = {}
        for item in record.history.item:
            key = item.key or "/".join(item.nested_key)
            row[key] = json.loads(item.value_json)
        rows.setdefault(int(row["_step"]), {}).update(row)
    return rows


def test_wandb_offline_logs_the_jsonl_keys_and_eval_images(tmp_path, monkeypatch, tiny_tokenizer_file):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    config = load_train_config(
        ROOT / "recipes" / "vaportok_paper.yaml",
        [
            f"tokenizer={tiny_tokenizer_file}",
            "steps=2",
            "rollout.videos_per_step=2",
            "rollout.clips_per_video=2",
            "grpo.group_size=4",
            "eval.num_videos=2",
            "log.eval_every=1",
            "log.report_to=wandb",
            f"log.output_dir={out}",
        ],
    )
    run_training(config, progress=False)

    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "wandb must default to offline and write into the run folder"
    assert "WANDB_MODE" not in os.environ
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = {line["step"] for line in lines}
    # wandb's service process may still be appending to the transaction log when finish() has returned (seen
    # once under a loaded test run): read it again until every step is there, for at most 30 s.
    deadline = time.monotonic() + 30
    while set(logged := history(next(runs[0].glob("run-*.wandb")))) != steps and time.monotonic() < deadline:
        time.sleep(0.5)
    assert steps == {0, 1, 2} == set(logged)
    keys = set()
    for line in lines:
        row = logged[line["step"]]
        for key, value in line.items():
            if key == "step":
                continue
            keys.add(key)
            assert key in row, f"{key} (step {line['step']}) is in metrics.jsonl but not in wandb"
            assert row[key] == pytest.approx(value, rel=1e-6), key
    expected = {"reward", "tokens/mean", "rewards/generation/mean", "eval/argmax_psnr", "eval/rewards/efficiency/mean"}
    assert expected <= keys

    for step in (0, 1, 2):  # the held-out eval plot, as a wandb image, at every evaluation
        image = {k.split("/")[-1]: v for k, v in logged[step].items() if k.startswith("eval/tokens_vs_complexity/")}
        assert image.get("_type") == "image-file", logged[step].keys()
        assert (runs[0] / "files" / image["path"]).is_file()
        assert (out / "plots" / f"eval-{step:06d}.png").is_file()
