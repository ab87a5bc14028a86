"""The sweep recipe: :class:`SweepConfig` (a base training recipe and named override sets) and :class:`RunSpec` (one
run of it). :func:`vaportok_rl.sweep.load_sweep`, the one sweep expander, turns it into TrainConfig objects."""

from __future__ import annotations

from dataclasses import dataclass, field

from vaportok_rl.config import check_non_negative_int

__all__ = ["RunSpec", "SweepConfig"]


@dataclass
class RunSpec:
    """One named run of a sweep: overrides applied on top of the sweep's base recipe and shared overrides."""

    name: str
    """Run name; its outputs go to <base log.output_dir>/<name> (plus /seed<k> when the sweep lists seeds)."""
    overrides: list[str] = field(default_factory=list)
    """Dotted "key=VALUE" overrides of this run, as on the command line (e.g. "rewards.efficiency=null")."""

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name) or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"name: expected a folder-safe run name (no whitespace or '/'), got {self.name!r}")


@dataclass
class SweepConfig:
    """A sweep recipe: named override sets over one base recipe, e.g. ::

        base: grpo_default.yaml          # relative to this file
        overrides: [steps=100]           # for every run (optional)
        seeds: [0, 1, 2]                 # each run once per seed (optional)
        runs:
          - {name: full}
          - {name: wo_efficiency, overrides: ["rewards.efficiency=null"]}

    Run ``name`` with seed ``k`` trains base ⊕ overrides ⊕ the run's overrides ⊕ ``seed=k``, writing to
    ``<log.output_dir>/<name>/seed<k>``. :func:`vaportok_rl.sweep.load_sweep` expands a ``grid:`` into ``runs`` and
    builds and validates every run's config.
    """

    base: str
    """The base training recipe; a relative path is relative to the sweep file's folder."""
    runs: list[RunSpec]
    """The runs, in order; names must be unique."""
    overrides: list[str] = field(default_factory=list)
    """Dotted "key=VALUE" overrides applied to every run before its own."""
    seeds: list[int] | None = None
    """Repeat every run once per seed (``seed=k``); null runs each once with the recipe's seed."""

    def __post_init__(self) -> None:
        if not self.base.strip():
            raise ValueError("base: expected the path of a training recipe, got ''")
        if not self.runs:
            raise ValueError("runs: expected at least one run")
        names = [run.name for run in self.runs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"runs: duplicate run names {duplicates}")
        if self.seeds is not None:
            if not self.seeds:
                raise ValueError("seeds: expected a non-empty list or null")
            for i, seed in enumerate(self.seeds):
                check_non_negative_int(f"seeds[{i}]", seed)
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"seeds: duplicate seeds in {self.seeds}")
