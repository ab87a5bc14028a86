"""Who may write an output folder: every command that writes one records what made it, and refuses a folder that
holds anything else unless the user says so (``--overwrite``, or ``--resume`` where that applies).

A claimed folder holds, beside the command's own files::

    vaportok-run.json    {"kind": "train", "status": "running" | "finished", "started": ..., "finished": ..., ...}
    .vaportok.lock       an advisory lock (fcntl.flock) held while the command runs; the kernel drops it when the
                         process dies, so a crash (even kill -9) never leaves it stuck

The rule, the same for every command (train, distill, pretrain, eval, sweep, export):

- an empty or new folder is claimed;
- a folder holding an *unfinished* run of the same kind is continued with ``--resume`` (restarted without it only
  when it holds no checkpoint yet: then it holds nothing worth keeping);
- anything else (a user's own files, another kind of run, a finished run) is refused, naming the files in the way
  and both ways out; ``--overwrite`` removes only the files the command itself writes and leaves the rest alone;
- a second process on the same folder is refused while the first holds the lock.

This module sits below everything that writes (tokenizer pretraining included); of the package it imports only
vaportok_rl.errors and the atomic writer.
See docs/outputs.md.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaportok_rl.checkpoint import atomic_write_file
from vaportok_rl.errors import UserError

try:  # POSIX; elsewhere folders are claimed without a lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK", "RECORD", "RunFolder", "RunFolderError", "claim", "read_record", "refuse_finished_resume"]

RECORD = "vaportok-run.json"
LOCK = ".vaportok.lock"
SHOWN = 4  # files named in an error before "and N more"


class RunFolderError(UserError):
    """An output folder the command may not write (a user's mistake: one line, exit 2)."""


def read_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's record, or None where there is none (or it is unreadable: then the folder is not known to be
    a vaportok-rl run, and is treated as the user's)."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("kind"), str) else None


def refuse_finished_resume(
    folder: str | os.PathLike, kind: str, steps: int, *, steps_key: str = "steps", what: str = "output folder"
) -> None:
    """``--resume`` on a finished run of ``kind`` continues it only past the step it finished at (its record's
    ``steps``): asking for no more steps would rewrite its summary and head for nothing. Call it before any work
    (it reads the record only). Raises :class:`RunFolderError` naming the step and both ways out."""
    previous = read_record(folder) or {}
    if previous.get("kind") != kind or previous.get("status") != "finished":
        return
    done = int(previous.get("steps", 0))
    if steps <= done:
        raise RunFolderError(
            f"--resume: {what} {folder} holds a {kind} run that finished at step {done}; nothing to resume at "
            f"{steps_key}={steps}: pass {steps_key}=N with N > {done} to train on, or --overwrite (without "
            f"--resume) to start over"
        )


@dataclass
class RunFolder:
    """A claimed folder: holds the lock until :meth:`release` (or the end of a ``with`` block)."""

    path: Path
    kind: str
    record: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] | None = None  # the record found when claimed (None: a new folder)
    _lock: Any = None

    def write_record(self, **info: Any) -> None:
        self.record.update(info)
        text = json.dumps(self.record, indent=1, sort_keys=True)
        atomic_write_file(self.path / RECORD, lambda tmp: tmp.write_text(text))  # a crash leaves old or new

    def finish(self, **info: Any) -> None:
        """Mark the run finished (a later command refuses the folder without --overwrite or --resume)."""
        self.write_record(status="finished", finished=_now(), **info)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the flock
            self._lock = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim(
    folder: str | os.PathLike,
    kind: str,
    *,
    writes: Collection[str],
    resume: bool = False,
    overwrite: bool = False,
    what: str = "output folder",
    resumable: Collection[str] = ("checkpoints",),
    **info: Any,
) -> RunFolder:
    """Claim ``folder`` for a command of ``kind`` before any work is done for it (see the module docstring).

    ``writes``: the top-level names the command writes (what ``--overwrite`` may remove); ``resumable``: those of
    them whose presence means there is progress to resume (checkpoints); ``what``: how the user names the folder
    (a config key or flag) in errors; ``info``: recorded in ``vaportok-run.json`` (e.g. the command line).
    Raises :class:`RunFolderError`."""
    if resume and overwrite:
        raise RunFolderError(f"{what} {folder}: --resume continues a run and --overwrite replaces it; pass one")
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{what} {path}: is a file, expected a folder (or a path that does not exist yet)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock = _lock(path, what)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise RunFolderError(f"{what} {path}: not writable ({error.strerror or error})") from None
    try:
        previous = read_record(path)
        _check(path, kind, previous, writes, resumable, resume, overwrite, what)
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    record = {
        "kind": kind,
        "status": "running",
        "started": _now(),
        "pid": os.getpid(),
        **({"created": previous.get("created", previous.get("started"))} if previous and resume else {}),
        **info,
    }
    record.setdefault("created", record["started"])
    run = RunFolder(path=path, kind=kind, previous=previous, _lock=lock)
    run.write_record(**record)
    return run


def _check(
    path: Path,
    kind: str,
    previous: dict | None,
    writes: Collection[str],
    resumable: Collection[str],
    resume: bool,
    overwrite: bool,
    what: str,
) -> None:
    entries = sorted(p.name for p in path.iterdir() if not p.name.startswith(".") and p.name != RECORD)
    if not entries:
        return
    mine = previous is not None and previous.get("kind") == kind
    progress = [n for n in entries if n in resumable and (path / n).is_dir() and any((path / n).iterdir())]
    if resume:
        if previous is not None and not mine:
            raise RunFolderError(
                f"{what} {path} holds a {previous['kind']} run, not a {kind} run: --resume continues a {kind} run; "
                f"choose that run's folder, or pass --overwrite (without --resume) to replace it"
            )
        return  # the command checks that there is something to resume (and that it is not already finished)
    if mine and previous.get("status") == "running" and not progress:
        return  # our own run, killed before its first checkpoint: nothing in it is worth keeping
    if overwrite:
        for name in entries:
            if name in writes:
                target = path / name
                shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        return
    if previous is None:
        held, outs = f"files that vaportok-rl {kind} did not make", ""
    elif not mine:
        held, outs = f"a {previous['kind']} run", ""
    elif previous.get("status") == "finished":
        held, outs = f"a finished {kind} run", ""
    else:
        held, outs = f"an unfinished {kind} run", "pass --resume to continue it, "
    shown = ", ".join(entries[:SHOWN]) + (f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else "")
    raise RunFolderError(
        f"{what} {path} holds {held} ({shown}): {outs}pass --overwrite to replace what this command writes "
        f"there, or choose another {what}"
    )


def _lock(path: Path, what: str) -> Any:
    if fcntl is None:
        return None
    handle = open(path / LOCK, "a+")  # noqa: SIM115 - held open for the run: the lock lives with the descriptor
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunFolderError(
            f"{what} {path} is being written by {holder} right now; wait for it to end, or choose another {what}"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"vaportok-rl (pid {os.getpid()})")
    handle.flush()
    return handle


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
