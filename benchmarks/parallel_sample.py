"""Parallel-sample rollouts, measured side by side in one run.

1. Decoding a group: G sequential decoder calls (one per sampled truncation, each over the batch's clips)
   versus the one batched call over all B·G·L truncations that ``collect_rollout`` makes. Goal: >= 4x at G=8.
2. Where a GRPO train step's time goes: the share spent *outside* model forward/backward (tokenizer encode,
   decode and prior passes; the head's forward and backward), i.e. the trainer's own overhead. Goal: <= 10 %.

    python benchmarks/parallel_sample.py                      # the embedded default tokenizer
    python benchmarks/parallel_sample.py --tokenizer PATH --steps 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vaportok_rl.config import load_config
from vaportok_rl.policy import TaildropPolicy
from vaportok_rl.rollout import decode_paths, encode_videos
from vaportok_rl.tokenizer import load_tokenizer
from vaportok_rl.tokenizer.protocol import Encoded


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


class TimedTokenizer:
    """A FrozenTokenizer proxy that adds up the seconds spent in the wrapped tokenizer's own passes."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0
        for name in ("num_latents", "latent_dim", "codebook_size", "clip_shape", "fingerprint"):
            setattr(self, name, getattr(inner, name))

    def _timed(self, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds += time.perf_counter() - t0
        return out

    def encode(self, clips):
        return self._timed(self.inner.encode, clips)

    def decode(self, latents, keep):
        return self._timed(self.inner.decode, latents, keep)

    def prior_correct(self, encoded: Encoded, topk: int = 5):
        return self._timed(self.inner.prior_correct, encoded, topk)

    @property
    def head(self):
        return self.inner.head


class HeadClock:
    """Forward and backward hooks on the head: seconds spent in its forward and backward passes."""

    def __init__(self):
        self.seconds, self._t0, self._b0 = 0.0, 0.0, 0.0

    def attach(self, module: torch.nn.Module) -> None:
        module.register_forward_pre_hook(lambda m, a: setattr(self, "_t0", time.perf_counter()))
        module.register_forward_hook(lambda m, a, o: self._add(self._t0))
        module.register_full_backward_pre_hook(lambda m, g: setattr(self, "_b0", time.perf_counter()))
        module.register_full_backward_hook(lambda m, gi, go: self._add(self._b0))

    def _add(self, t0: float) -> None:
        self.seconds += time.perf_counter() - t0


def decode_ratio(tokenizer, B: int, G: int, L: int, repeats: int) -> tuple[float, float]:
    from vaportok_rl.data import load_videos

    C, T, H, W = tokenizer.clip_shape
    videos = load_videos("synthetic", B, L, seed=0, frames=T, size=H)
    encoded = encode_videos(tokenizer, videos)
    policy = TaildropPolicy(tokenizer.head)
    generator = torch.Generator().manual_seed(0)
    keep = policy.sample(encoded.latents, "sample", generator, num_samples=G)  # [G, N]
    keep_bgl = keep.view(G, B, L).permute(1, 0, 2).contiguous()  # [B, G, L]
    batched = best_of(lambda: decode_paths(tokenizer, encoded, keep_bgl, chunk=B * G * L), repeats)
    sequential = best_of(lambda: [tokenizer.decode(encoded.latents, keep[g]) for g in range(G)], repeats)
    return sequential, batched


def step_breakdown(tokenizer, steps: int) -> dict[str, float]:
    from vaportok_rl.train import run_training
    from vaportok_rl.train_config import TrainConfig

    timed = TimedTokenizer(tokenizer)
    clock = HeadClock()
    original_head = tokenizer.head

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            TrainConfig,
            "recipes/vaportok_paper.yaml",
            [f"steps={steps}", f"log.output_dir={Path(tmp) / 'run'}", "eval.num_videos=0", "log.checkpoint_every=0"],
        )

        import vaportok_rl.train.loop as trainer_module

        starting_head = trainer_module.starting_head

        def hooked_starting_head(tok, cfg):  # time the trainable copy of the head, whatever the trainer builds
            head = starting_head(tok, cfg)
            clock.attach(head)
            return head

        trainer_module.starting_head = hooked_starting_head
        try:
            t0 = time.perf_counter()
            run_training(config, tokenizer=timed, progress=False)
            wall = time.perf_counter() - t0
        finally:
            trainer_module.starting_head = starting_head
        rows = [
            line for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines() if '"step_time"' in line
        ]
    import json

    step_time = sum(json.loads(r)["step_time"] for r in rows)
    assert original_head is tokenizer.head
    model = timed.seconds + clock.seconds
    return {
        "steps": len(rows),
        "step_time_s": step_time,
        "tokenizer_s": timed.seconds,
        "head_s": clock.seconds,
        "outside_share": max(0.0, 1 - model / step_time),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="default")
    parser.add_argument("--B", type=int, default=8)
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--L", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    tokenizer = load_tokenizer(args.tokenizer)

    sequential, batched = decode_ratio(tokenizer, args.B, args.G, args.L, args.repeats)
    print(
        f"decode {args.B}x{args.G}x{args.L} truncations: {args.G} sequential calls {sequential:.3f} s, "
        f"one batched call {batched:.3f} s -> ratio {sequential / batched:.2f}x (goal >= 4x)"
    )
    b = step_breakdown(tokenizer, args.steps)
    print(
        f"train step ({b['steps']} steps, recipes/vaportok_paper.yaml): {b['step_time_s'] / b['steps']:.2f} s/step; "
        f"tokenizer passes {b['tokenizer_s']:.2f} s, head fwd+bwd {b['head_s']:.2f} s of {b['step_time_s']:.2f} s "
        f"-> outside model forward/backward {b['outside_share']:.1%} (goal <= 10 %)"
    )


if __name__ == "__main__":
    main()
