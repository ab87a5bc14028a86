"""The GRPO trainer on tiny runs: learning, frozen tokenizer, exact resume, 2 processes = 1, plugins, logs, CLI.

Runs use the conftest FakeTokenizer (by object, or by the spec "tests/conftest.py:FakeTokenizer" where a
separate process or the CLI loads it) or a tiny random-init built-in Tokenizer; B=2 videos, G=4, L=2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import FakeTokenizer
from safetensors.torch import load_file

from vaportok_rl.cli.train import main as cli
from vaportok_rl.config import ConfigError, load_config
from vaportok_rl.policy import TaildropPolicy
from vaportok_rl.rollout import collect_rollout, encode_videos, video_generators
from vaportok_rl.tokenizer.head import HeadConfig, TaildropHead
from vaportok_rl.train import VideoStream, lr_factor, run_training
from vaportok_rl.train.step import check_only_head_learns
from vaportok_rl.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FAKE_SPEC = f"{Path(__file__).with_name('conftest.py')}:FakeTokenizer"
TINY = [
    f"tokenizer={FAKE_SPEC}",
    "rollout.videos_per_step=2",
    "rollout.clips_per_video=2",
    "grpo.group_size=4",
    "eval.num_videos=2",
    "policy.width=8",
    "policy.layers=1",
    "policy.heads=2",
    "optim.lr=1e-2",
    "data.source=synthetic",
]

TRAIN_KEYS = {
    "step",
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "tokens/mean",
    "tokens/std",
    "loss",
    "kl",
    "entropy",
    "clip_ratio/low_mean",
    "clip_ratio/high_mean",
    "clip_ratio/region_mean",
    "grad_norm",
    "lr",
    "step_time",
}
EVAL_KEYS = {
    "step",
    "eval/reward",
    "eval/reward_std",
    "eval/objective",
    "eval/tokens/mean",
    "eval/argmax_tokens/mean",
    "eval/argmax_psnr",
}


def tiny(output_dir: Path, *overrides: str) -> TrainConfig:
    """A tiny run; a ``rewards=...`` override replaces the reward set (no defaults merged in)."""
    return load_config(TrainConfig, None, [*TINY, f"log.output_dir={output_dir}", *overrides])


def records(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def reward_keys(labels, prefix=""):
    return {f"{prefix}rewards/{label}/{stat}" for label in labels for stat in ("mean", "std")}


@pytest.fixture(scope="module")
def efficiency_run(tmp_path_factory):
    """8 steps on the efficiency reward alone (module-scoped: two tests read it)."""
    out = tmp_path_factory.mktemp("efficiency") / "run"
    config = tiny(out, "steps=8", "rewards={efficiency: {}}", "log.eval_every=4")
    return out, run_training(config, tokenizer=FakeTokenizer(), progress=False)


def test_short_run_improves_the_held_out_reward(efficiency_run):
    out, summary = efficiency_run
    first, last = summary["initial_eval"], summary["final_eval"]
    assert (first["step"], last["step"]) == (0, 8)
    assert last["eval/reward"] > first["eval/reward"] + 0.05  # efficiency = fraction of tokens dropped
    assert last["eval/tokens/mean"] < first["eval/tokens/mean"]
    assert json.loads((out / "summary.json").read_text())["final_eval"] == last
    head = load_file(out / "head.safetensors")
    info = json.loads((out / "head_config.json").read_text())
    TaildropHead(HeadConfig(**info["head"])).load_state_dict(head)  # the exported head loads back
    assert info["tokenizer_fingerprint"] == FakeTokenizer.fingerprint


def test_metrics_jsonl_has_the_documented_keys(efficiency_run):
    out, _ = efficiency_run
    lines = records(out)
    train = [r for r in lines if "reward" in r]
    evals = [r for r in lines if "eval/reward" in r]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert [r["step"] for r in evals] == [0, 4, 8]
    for r in train:
        assert set(r) == TRAIN_KEYS | reward_keys(["efficiency"])
        assert all(isinstance(v, int | float) and v == v for v in r.values())
    for r in evals:
        assert set(r) == EVAL_KEYS | reward_keys(["efficiency"], "eval/")


def tiny_builtin_tokenizer():
    from vaportok_rl.tokenizer.model import Tokenizer, TokenizerConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Tokenizer(
            TokenizerConfig(
                frames=4,
                size=8,
                patch=(4, 8, 8),
                num_latents=8,
                width=16,
                encoder_layers=1,
                decoder_layers=1,
                heads=2,
                codebook_size=16,
                code_dim=4,
                skip_rank=0,
                prior_layers=1,
                prior_width=16,
                head_width=16,
                head_layers=1,
            )
        )


def test_only_the_head_learns_and_the_tokenizer_is_untouched(tmp_path):
    tokenizer = tiny_builtin_tokenizer()
    before = {k: v.clone() for k, v in tokenizer.state_dict().items()}  # encoder, decoder, prior and its own head
    summary = run_training(tiny(tmp_path / "run", "steps=2"), tokenizer=tokenizer, progress=False)  # all 5 rewards
    after = tokenizer.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "a tokenizer / prior tensor changed"
    assert all(p.grad is None and not p.requires_grad for p in tokenizer.parameters())
    tuned = load_file(tmp_path / "run" / "head.safetensors")
    start = {k[len("head.") :]: v for k, v in before.items() if k.startswith("head.")}
    assert tuned.keys() == start.keys()  # the policy started from the tokenizer's pretrained head ...
    assert any(not torch.equal(tuned[k], start[k]) for k in start)  # ... and the gradients reached it
    assert summary["final_eval"]["eval/argmax_psnr"] > 0


def test_the_gradient_check_catches_leaks(head):
    policy = TaildropPolicy(head)
    frozen = torch.nn.Linear(2, 2)  # requires_grad left on: a frozen module that is not frozen
    for p in policy.parameters():
        p.grad = torch.zeros_like(p)
    with pytest.raises(RuntimeError, match="frozen parameters"):
        check_only_head_learns(policy, policy.reference_copy(), [frozen])
    frozen.requires_grad_(False)
    check_only_head_learns(policy, policy.reference_copy(), [frozen])
    next(policy.parameters()).grad = None
    with pytest.raises(RuntimeError, match="without gradient"):
        check_only_head_learns(policy, policy.reference_copy(), [frozen])


RESUME = (
    "steps=4",
    "rewards={efficiency: {}, reconstruction: {}, diversity: {}}",
    "log.checkpoint_every=2",
    "log.keep_checkpoints=0",
    "log.eval_every=2",
    "optim.schedule=cosine",
    "optim.warmup_ratio=0.25",
)


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_training(tiny(a, *RESUME), tokenizer=FakeTokenizer(), progress=False)
    # The "killed" run: its step-2 checkpoint, and a log that ran on past it (lines a resume must drop).
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-000002", b / "checkpoints" / "step-000002")
    shutil.copy(a / "metrics.jsonl", b / "metrics.jsonl")
    summary = run_training(tiny(b, *RESUME), tokenizer=FakeTokenizer(), resume=True, progress=False)
    head_a, head_b = load_file(a / "head.safetensors"), load_file(b / "head.safetensors")
    assert all(torch.equal(head_a[k], head_b[k]) for k in head_a), "resumed head differs from the uninterrupted one"
    # same checkpoint contents (optimizer, scheduler, RNG states...), same log, eval history kept from before the kill
    ckpt_a, ckpt_b = (load_file(d / "checkpoints" / "step-000004" / "tensors.safetensors") for d in (a, b))
    assert all(torch.equal(ckpt_a[k], ckpt_b[k]) for k in ckpt_a)
    strip = [[{k: v for k, v in r.items() if k != "step_time"} for r in records(d)] for d in (a, b)]
    assert strip[0] == strip[1]
    assert [e["step"] for e in summary["eval_history"]] == [0, 2, 4]


def test_resume_guards(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="no checkpoint"):
        run_training(tiny(out, "steps=1"), tokenizer=FakeTokenizer(), resume=True, progress=False)
    run_training(
        tiny(out, "steps=1", "rewards={efficiency: {}}", "eval.num_videos=0"), tokenizer=FakeTokenizer(), progress=False
    )
    with pytest.raises(ConfigError, match="finished train run"):  # a fresh run must not mix with an old one's files
        run_training(tiny(out, "steps=1"), tokenizer=FakeTokenizer(), progress=False)
    with pytest.raises(ConfigError, match="grpo"):  # resuming with a changed objective
        run_training(
            tiny(out, "steps=2", "rewards={efficiency: {}}", "eval.num_videos=0", "grpo.beta=0"),
            tokenizer=FakeTokenizer(),
            resume=True,
            progress=False,
        )


def test_videos_and_samples_do_not_depend_on_the_batch_layout(tokenizer, policy):
    stream = VideoStream("synthetic", 2, tokenizer.clip_shape, seed=3, split="train", batch=4)
    whole = stream.videos(5, range(4))
    assert torch.equal(whole[2:], stream.videos(5, range(2, 4)))  # what process 1 of 2 draws
    assert not torch.equal(whole, stream.videos(6, range(4)))
    encoded = encode_videos(tokenizer, whole)

    def keep(indices):
        rows = slice(2 * indices.start, 2 * indices.stop)
        rollout = collect_rollout(
            tokenizer,
            policy,
            policy.reference_copy(),
            whole[indices.start : indices.stop],
            group_size=4,
            mode="sample",
            needs=set(),
            generator=video_generators(0, "sample", 5, indices, torch.device("cpu")),
            encoded=encoded.index(rows),
        )
        return rollout.keep

    assert torch.equal(keep(range(4))[2:], keep(range(2, 4)))


def test_lr_schedule():
    config = load_config(
        TrainConfig, None, ["steps=10", "optim.schedule=cosine", "optim.warmup_ratio=0.2", "optim.min_lr_ratio=0.1"]
    )  # 20 updates, 4 of warmup
    factor = lr_factor(config)
    values = [factor(u) for u in range(20)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(x >= y for x, y in zip(values[3:], values[4:], strict=False)) and 0.1 <= values[-1] < 0.15
    constant = lr_factor(load_config(TrainConfig, None, ["steps=10"]))
    assert {constant(u) for u in range(20)} == {1.0}


PLUGIN = '''
import torch
from vaportok_rl.rewards import Reward


class Shorter(Reward):
    """Minus the mean kept fraction."""

    name = "shorter"

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def __call__(self, rollout):
        return -self.scale * rollout.keep.float().mean(-1) / rollout.num_latents
'''


def test_plugin_in_a_tmp_folder_trains_from_a_recipe_through_the_cli(tmp_path, capsys):
    plugins = tmp_path / "my_plugins"
    plugins.mkdir()
    (plugins / "shorter.py").write_text(PLUGIN)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"plugin_paths: [{plugins}]\n"
        "rewards:\n"
        "  shorter: {weight: 1.0, kwargs: {scale: 2.0}}\n"  # by short name, found in plugin_paths
        f"  by_file: {{spec: '{plugins / 'shorter.py'}:Shorter', weight: 0.5}}\n"  # by file path
    )
    out = tmp_path / "run"
    code = cli([str(recipe), *TINY, "steps=2", "eval.num_videos=0", f"log.output_dir={out}", "--no-progress"])
    assert code == 0
    last = records(out)[-1]
    assert set(last) == TRAIN_KEYS | reward_keys(["shorter", "by_file"])
    assert last["rewards/shorter/mean"] == pytest.approx(2 * last["rewards/by_file/mean"])  # kwargs scale 2 vs 1
    assert (out / "head.safetensors").is_file()
    assert "wrote" in capsys.readouterr().out


def test_cli_errors_name_the_bad_key(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("grpo:\n  beta: 0.1\n  epsilon: 0.2\n")
    assert cli([str(recipe)]) == 2
    assert "grpo.epsilon" in capsys.readouterr().err
    recipe.write_text("steps: 1\n")
    assert cli([str(recipe), "grpo.bta=0"]) == 2
    assert "grpo.bta" in capsys.readouterr().err
    assert cli([str(recipe), f"tokenizer={tmp_path / 'nope.py'}:Tok"]) == 2
    assert "nope.py" in capsys.readouterr().err
    assert cli([str(recipe), *TINY, "rewards.nosuch={}", f"log.output_dir={tmp_path / 'x'}"]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert cli(["--help-config"]) == 0
    assert "grpo.group_size" in capsys.readouterr().out


def test_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    out = tmp_path / "run"
    run_training(
        tiny(out, "steps=1", "rewards={efficiency: {}}", "log.report_to=wandb"),
        tokenizer=FakeTokenizer(),
        progress=False,
    )
    assert list((out / "wandb").glob("offline-run-*")), "wandb must default to offline"
    assert "WANDB_MODE" not in os.environ


def torchrun_train(recipe: Path, overrides: list[str], cwd: Path) -> None:
    """``torchrun --nproc_per_node 2 -m vaportok_rl.cli train RECIPE OVERRIDES`` (skips the test without torchrun)."""
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH (it comes with torch); cannot start 2 processes")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "vaportok_rl.cli", "train", str(recipe)]
    result = subprocess.run(
        [*command, *overrides, "--no-progress"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_train_the_same_head_as_one(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"tokenizer: '{FAKE_SPEC}'\n"
        "steps: 3\n"
        "rewards: {efficiency: {}, reconstruction: {}, diversity: {}, generation: {}}\n"  # diversity: batch-level
        "rollout: {videos_per_step: 4, clips_per_video: 2}\n"
        "grpo: {group_size: 4, scale_rewards: batch}\n"  # batch-level advantages too
        "eval: {num_videos: 0}\n"
        "optim: {lr: 1.0e-2}\n"
        "policy: {width: 8, layers: 1, heads: 2}\n"
    )
    two, one = tmp_path / "two", tmp_path / "one"
    torchrun_train(recipe, [f"log.output_dir={two}"], tmp_path)
    assert cli([str(recipe), f"log.output_dir={one}", "--no-progress"]) == 0

    heads = [load_file(d / "head.safetensors") for d in (one, two)]
    # Adam turns rounding noise into full-size steps along directions that get *exactly zero* gradient: the
    # read-out bias, the final LayerNorm's bias (it only feeds the read-out) and the attention key biases all shift
    # every logit of a clip equally, which the softmax ignores. Compare those by their effect, the rest directly.
    width = json.loads((one / "head_config.json").read_text())["head"]["width"]
    for name in heads[0]:
        if name in ("out.bias", "norm.bias"):
            continue
        a, b = heads[0][name], heads[1][name]
        if name.endswith("qkv.bias"):
            a, b = torch.cat([a[:width], a[2 * width :]]), torch.cat([b[:width], b[2 * width :]])
        assert (a - b).abs().max() <= 1e-6, name
    config = json.loads((one / "head_config.json").read_text())["head"]
    policies = []
    for weights in heads:
        head = TaildropHead(HeadConfig(**config))
        head.load_state_dict(weights)
        policies.append(head)
    latents = torch.randn(32, config["num_latents"], config["latent_dim"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logp_one, logp_two = (h(latents).log_softmax(-1) for h in policies)
    assert (logp_one - logp_two).abs().max() <= 1e-6
    # the rewards and advantages saw the same global batch in both
    for r1, r2 in zip(records(one), records(two), strict=True):
        assert r1["reward"] == pytest.approx(r2["reward"], abs=1e-6)
        assert r1["tokens/mean"] == r2["tokens/mean"]
