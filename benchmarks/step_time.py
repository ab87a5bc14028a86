"""A GRPO step's time, this working tree against another revision, measured side by side in one run.

Both trees train the same recipe for a few steps (no held-out evaluation, no checkpoints) in alternating child
processes, one thread each unless told otherwise; each step's ``step_time`` is read from its metrics.jsonl and
the first step (warm-up) is dropped. Printed: the median step time of each tree and their ratio.

    python benchmarks/step_time.py                              # against HEAD, recipes/grpo_default.yaml
    python benchmarks/step_time.py --before HEAD~3 --steps 8 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def step_times(tree: Path, recipe: Path, steps: int, out: Path, threads: int) -> list[float]:
    """Train ``steps`` steps with the package of ``tree``; the step times after the first."""
    overrides = [f"steps={steps}", "eval.num_videos=0", "log.log_every=1", "log.checkpoint_every=0"]
    command = [sys.executable, "-m", "vaportok_rl.cli", "train", str(recipe), *overrides, f"log.output_dir={out}"]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run([*command, "--no-progress"], cwd=tree, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{tree}: training failed:\n{result.stderr[-2000:]}")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["step_time"] for r in lines if "step_time" in r][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD", help="the revision to compare with (default: HEAD)")
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "grpo_default.yaml"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each tree")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before], check=True)
        # the installed package maps vaportok_rl.builtin_rewards to this tree's rewards/: the other tree gets its own
        (before / "vaportok_rl" / "builtin_rewards").symlink_to(before / "rewards", target_is_directory=True)
        try:
            times: dict[str, list[float]] = {"before": [], "after": []}
            for r in range(args.rounds):
                for name, tree in (("before", before), ("after", ROOT)):
                    out = Path(tmp) / f"{name}-{r}"
                    times[name] += step_times(tree, Path(args.recipe).resolve(), args.steps, out, args.threads)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=True)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"recipe {args.recipe}, {args.steps} steps x {args.rounds} rounds, {args.threads} thread(s)")
    for name, t in times.items():
        label = args.before if name == "before" else "working tree"
        print(f"  {name:<6} ({label}): median step {median[name]:.3f} s  (min {min(t):.3f}, max {max(t):.3f})")
    print(f"  after / before = {median['after'] / median['before']:.3f}")


if __name__ == "__main__":
    main()
