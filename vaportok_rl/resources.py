"""What a run needs from the machine, checked before any work: how it was launched, and whether its biggest
allocation fits. Each check returns None when fine, else the one line to tell the user (the caller raises its
own error type, so this module imports nothing of the package)."""

from __future__ import annotations

import os

import psutil
import torch

__all__ = ["device_problem", "launcher_problem", "memory_problem", "tensor_bytes"]


def launcher_problem() -> str | None:
    """``WORLD_SIZE`` > 1 without the variables a launcher sets (torchrun sets RANK, LOCAL_RANK, MASTER_ADDR and
    MASTER_PORT): accelerate would otherwise fail deep inside with a message about multi-node launches."""
    world = os.environ.get("WORLD_SIZE", "1")
    if not world.isdigit():
        return f"WORLD_SIZE={world!r} in the environment: expected a whole number of processes"
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if int(world) > 1 and missing:
        return (
            f"WORLD_SIZE={world} is set but no launcher started this process ({', '.join(missing)} unset): launch "
            f"with torchrun --standalone --nproc_per_node {world} -m vaportok_rl.cli ..., or unset WORLD_SIZE"
        )
    return None


def device_problem(text: str | None) -> tuple[torch.device | None, str | None]:
    """(the torch device ``text`` names, None) when it exists here -- None: cuda if available, else cpu -- else
    (None, what is wrong and what to give instead)."""
    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu"), None
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        return None, "not a torch device; expected cpu, cuda or cuda:N"
    if device.type == "cpu":
        return device, None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return None, "no CUDA device here; expected cpu (or leave --device out)"
        if device.index is not None and device.index >= count:
            return None, f"this machine has {count} CUDA device(s); expected cpu or cuda:0..cuda:{count - 1}"
        return device, None
    if device.type == "mps" and torch.backends.mps.is_available():
        return device, None
    return None, f"no {device.type} device here; expected cpu" + (" or cuda" if torch.cuda.is_available() else "")


def tensor_bytes(*shape: int, dtype: torch.dtype = torch.float32) -> int:
    n = 1
    for size in shape:
        n *= int(size)
    return n * torch.empty((), dtype=dtype).element_size()


def memory_problem(what: str, nbytes: int, device: torch.device | str = "cpu", *, share: float = 0.8) -> str | None:
    """``what`` needs about ``nbytes`` at once; more than ``share`` of the device's free memory (RAM available
    to this process, or the GPU's free memory) is refused with both numbers, before the allocation would fail
    or the machine would swap."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free = torch.cuda.mem_get_info(device)[0]
        where = f"free on {device}"
    else:
        free = psutil.virtual_memory().available
        where = "of RAM available"
    if nbytes <= share * free:
        return None
    return f"{what} needs about {_gib(nbytes)} at once, but only {_gib(free)} is {where}"


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"
