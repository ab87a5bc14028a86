"""The run's log: metrics.jsonl (always, main process only) and wandb (``log.report_to: wandb``)."""

from __future__ import annotations

import json
import os
import secrets
import warnings
from pathlib import Path

import numpy as np
import torch

from vaportok_rl.complexity import complexity
from vaportok_rl.config import to_dict
from vaportok_rl.heldout import HeldOutEval
from vaportok_rl.plots import tokens_vs_complexity
from vaportok_rl.policy import TaildropPolicy
from vaportok_rl.run_files import METRICS_FILE, read_metrics_lines
from vaportok_rl.train_config import TrainConfig

__all__ = ["RunLog", "eval_plot"]


class RunLog:
    """metrics.jsonl (always) and wandb (``log.report_to: wandb``), main process only."""

    def __init__(
        self, config: TrainConfig, output_dir: Path, *, enabled: bool, resume_step: int | None, wandb_id: str | None
    ):
        self.enabled, self.path, self.wandb, self.wandb_id = enabled, output_dir / METRICS_FILE, None, wandb_id
        self.kept: list[dict] = []
        if not enabled:
            return
        records = []
        if resume_step is not None and self.path.is_file():  # drop what a killed run logged after its checkpoint
            records, bad = read_metrics_lines(self.path)
            if bad:
                warnings.warn(
                    f"{self.path}: dropped unreadable line(s) {bad} (a partial line left by a killed run); the "
                    f"lines up to the resumed step {resume_step} are kept",
                    RuntimeWarning,
                    stacklevel=3,
                )
            records = [r for r in records if r["step"] <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in records))
        self.kept = records  # what a resumed run logged before its checkpoint
        if config.log.report_to == "wandb":
            import wandb  # the optional [wandb] extra: only with log.report_to: wandb

            self.wandb_id = wandb_id or secrets.token_hex(4)
            self.wandb = wandb.init(
                project=config.log.wandb_project,
                name=config.log.run_name or output_dir.name,
                dir=str(output_dir),
                config=to_dict(config),
                id=self.wandb_id,
                resume="allow",
                mode=os.environ.get("WANDB_MODE", "offline"),
            )  # offline unless the user says

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def images(self, step: int, paths: dict[str, Path]) -> None:
        """Log PNG files as wandb images (added for issue 6; the JSONL file has no images)."""
        if self.wandb is not None:
            import wandb  # the optional [wandb] extra: only with log.report_to: wandb

            self.wandb.log({key: wandb.Image(str(path)) for key, path in paths.items()}, step=step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def eval_plot(
    evaluator: HeldOutEval, policy: TaildropPolicy, ref_policy: TaildropPolicy, output_dir: Path, step: int
) -> Path:
    """Added for issue 6 (wandb images): kept tokens of the argmax head vs the held-out clips' SC / TC, next to
    the starting head's, written to output_dir/plots/eval-NNNNNN.png."""

    with torch.no_grad():
        keep = policy.argmax_keep(evaluator.encoded.latents).cpu().numpy()  # [N]
        start = ref_policy.argmax_keep(evaluator.encoded.latents).cpu().numpy()  # [N]
    videos = evaluator.videos.cpu()  # [B, L, C, T, H, W]
    if videos.shape[3] >= 2:
        sc, tc = (x.flatten().numpy() for x in complexity(videos))
    else:  # one-frame clips have no temporal complexity
        sc, tc = complexity(videos.repeat_interleave(2, dim=3))[0].flatten().numpy(), np.zeros(len(keep))
    path = output_dir / "plots" / f"eval-{step:06d}.png"
    title = f"held-out clips, step {step}"
    tokens_vs_complexity(keep, sc, tc, policy.num_latents, path, title=title, label="current", compare={"start": start})
    return path
