"""A sweep's folders before anything runs: the sweep folder's claim (kind "sweep"), the check that no run folder
holds a run of another config, and the dry-run listing of every run's status."""

from __future__ import annotations

import json
from pathlib import Path

from vaportok_rl.config import from_dict, load_yaml, to_dict
from vaportok_rl.run_files import RUN_CONFIG
from vaportok_rl.run_folder import RunFolder, RunFolderError, claim, read_record
from vaportok_rl.sweep.errors import SweepError
from vaportok_rl.sweep.expand import Sweep, SweepRun
from vaportok_rl.sweep.files import SWEEP_FILES, SWEEP_JSON
from vaportok_rl.train_config import TrainConfig


def _config_changes(run: SweepRun) -> list[str]:
    """Top-level config keys in which the run folder's config.yaml differs from the run's config now."""
    saved_path = run.output_dir / RUN_CONFIG
    if not saved_path.is_file():
        return []
    try:
        saved = to_dict(from_dict(TrainConfig, load_yaml(saved_path)))
    except (OSError, ValueError):
        return ["(unreadable config.yaml)"]
    now = to_dict(run.config)
    ignored = ("log",) if run.status() == "done" else ("log", "steps")  # a resumed run may change steps
    return [k for k in sorted(set(saved) | set(now)) if k not in ignored and saved.get(k) != now.get(k)]


def check_run_folders(sweep: Sweep) -> None:
    """Refuse to mix: a run folder left by a *different* config (edited recipe or overrides) is an error."""
    stale = [(run, changes) for run in sweep.runs if run.status() != "new" and (changes := _config_changes(run))]
    if stale:
        lines = [f"  {run.run_id} ({run.output_dir}): {', '.join(changes)}" for run, changes in stale]
        raise SweepError(
            "these run folders hold a run with a different config than the sweep now asks for:\n"
            + "\n".join(lines)
            + "\ndelete those folders, or pass --output-dir to start the sweep in a new folder"
        )


def describe_runs(sweep: Sweep) -> str:
    """The dry-run listing: one line per run with its status and own overrides."""
    rows = []
    for i, run in enumerate(sweep.runs, 1):
        status = run.status()
        if status == "resume":
            status = f"resume from step {run.resume_step()}/{run.config.total_steps}"
        elif status == "done":
            status = "done (skipped)" if run.damage() is None else "done, but unreadable: trained again"
        rows.append([str(i), run.run_id, str(run.seed), status, " ".join(run.overrides) or "-"])
    header = ["#", "RUN", "SEED", "STATUS", "OVERRIDES"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        f"sweep {sweep.recipe}: {len(sweep.runs)} run(s) over {sweep.base} -> {sweep.root}",
        f"shared overrides: {' '.join(sweep.overrides) or '-'}",
        "",
    ]
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return "\n".join(lines)


def _is_sweep_json(path: Path) -> bool:
    """A sweep.json written by a sweep (the folder of a sweep made before folders were claimed)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"recipe", "runs"} <= set(data)


def claim_sweep_folder(sweep: Sweep, *, overwrite: bool = False) -> RunFolder:
    """Claim the sweep folder (kind "sweep") before any run starts: a sweep's own folder is continued (finished
    runs are skipped, a killed one resumes); anything else in it (a user's files, another kind of run) is refused
    unless ``overwrite``, which removes what the sweep writes there (its report files and run folders) and
    nothing else. Raises :class:`SweepError`."""
    root = sweep.root
    previous = read_record(root)
    ours = previous.get("kind") == "sweep" if previous is not None else _is_sweep_json(root / SWEEP_JSON)
    writes = (*SWEEP_FILES, *dict.fromkeys(run.run_id.split("/")[0] for run in sweep.runs))
    try:
        return claim(
            root,
            "sweep",
            writes=writes,
            resume=ours and not overwrite,
            overwrite=overwrite,
            what="sweep folder",
            resumable=(),
            recipe=str(sweep.recipe),
            runs=[run.run_id for run in sweep.runs],
        )
    except RunFolderError as error:
        raise SweepError(f"{error} (--output-dir sets the sweep folder)") from None
