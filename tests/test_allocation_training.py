"""Issue 12's training paths end to end on tiny runs: GRPO with per-clip rewards and decision credit, the knob KL,
``policy.init`` from another run, ``vaportok-rl distill`` (table reuse, errors), and the shipped recipes parse."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import FakeTokenizer
from safetensors.torch import load_file
from test_trainer import TINY, records, tiny

from vaportok_rl.cli.distill import main as distill_cli
from vaportok_rl.config import ConfigError, load_yaml
from vaportok_rl.distill import load_distill_recipe, run_distill
from vaportok_rl.grpo import knob_kl
from vaportok_rl.runs import load_head
from vaportok_rl.train import run_training
from vaportok_rl.train_config import load_train_config

ROOT = Path(__file__).resolve().parents[1]
ALLOC = [
    "rewards={psnr: {weight: 1.0}, token_cost: {weight: 0.1}}",
    "grpo.credit=decision",
    "grpo.scale_rewards=batch",
    "grpo.reward_aggregation=sum_then_normalize",
    "data.source=mixed",
]


def test_knob_kl_is_zero_at_the_reference_and_positive_away():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(5, 8, generator=g)
    assert knob_kl(ref.clone(), ref, [-0.5, 0.0, 0.5]).abs() < 1e-6
    moved = ref + torch.linspace(0, 2, 8)  # a tilt of the logits: zero KL at tilt 0 only if ... it is a real change
    assert knob_kl(moved, ref, [-0.5, 0.5]) > 1e-3
    assert knob_kl(ref + 3.0, ref, [0.3]).abs() < 1e-6  # a per-clip constant changes no distribution


def test_decision_credit_run_with_knob_kl_logs_and_learns(tmp_path):
    out = tmp_path / "run"
    config = tiny(out, "steps=3", *ALLOC, "grpo.knob_tilts=[-0.2, 0.2]", "grpo.knob_beta=1.0", "log.eval_every=3")
    summary = run_training(config, tokenizer=FakeTokenizer(), progress=False)
    train = [r for r in records(out) if "reward" in r]
    assert len(train) == 3 and all("knob_kl" in r and r["knob_kl"] >= 0 for r in train)
    assert {"rewards/psnr/mean", "rewards/token_cost/mean"} <= set(train[0])
    assert summary["final_eval"]["eval/argmax_psnr"] > 0
    # policy.init: a second run starts from the first one's head, and its KL reference is that head
    second = tiny(tmp_path / "again", "steps=1", *ALLOC, f"policy.init={out}", "eval.num_videos=0")
    run_training(second, tokenizer=FakeTokenizer(), progress=False)
    first_head = load_head(out, FakeTokenizer()).state_dict()
    checkpoint = next((tmp_path / "again" / "checkpoints").iterdir())
    ref = {
        k[len("ref_head.") :]: v
        for k, v in load_file(checkpoint / "tensors.safetensors").items()
        if k.startswith("ref_head.")
    }
    assert ref.keys() == first_head.keys() and all(torch.equal(ref[k], first_head[k]) for k in ref)


def test_policy_init_errors_name_the_key(tmp_path):
    config = tiny(tmp_path / "run", "steps=1", f"policy.init={tmp_path / 'nothing'}")
    with pytest.raises(ConfigError, match="policy.init"):
        run_training(config, tokenizer=FakeTokenizer(), progress=False)


def test_distill_cli_names_a_bad_init_before_decoding(tmp_path, capsys):
    cache = tmp_path / "cache"
    common = [
        f"tokenizer={ROOT / 'tests' / 'conftest.py'}:FakeTokenizer",
        "init=pretrained",
        "data.videos=3",
        "data.clips_per_video=2",
        "distill.steps=5",
        "distill.batch=4",
        f"table_cache={cache}",
    ]
    # the fake tokenizer has no pretrained head: say so, naming the key, before any decoding
    assert distill_cli([*common, f"output_dir={tmp_path / 'a'}", "--no-progress"]) == 2
    assert "init" in capsys.readouterr().err and not cache.exists()


def test_distill_run_folder_loads_as_a_head(tmp_path, tiny_tokenizer_file):
    from vaportok_rl.tokenizer import load_tokenizer_spec

    tokenizer = load_tokenizer_spec(str(tiny_tokenizer_file))
    recipe = load_distill_recipe(
        None,
        [
            f"tokenizer={tiny_tokenizer_file}",
            "data.videos=2",
            "data.clips_per_video=2",
            "distill.steps=4",
            "distill.batch=4",
            f"output_dir={tmp_path / 'd'}",
            f"table_cache={tmp_path / 'cache'}",
            "distill.knob_prices=[0.01]",
        ],
    )
    summary = run_distill(recipe, tokenizer=tokenizer, progress=False)
    assert summary["table"]["decodes"] > 0 and list((tmp_path / "cache").glob("table-*.safetensors"))
    head = load_head(tmp_path / "d", tokenizer)
    assert head.config.num_latents == tokenizer.num_latents
    # distill is enumerated groups with psnr and token_cost: one learning path, its config says so
    config = load_train_config(tmp_path / "d" / "config.yaml")
    assert config.grpo.groups == "enumerated" and set(config.rewards) == {"psnr", "token_cost"}
    recipe.output_dir = str(tmp_path / "again")
    again = run_distill(recipe, tokenizer=tokenizer, progress=False)  # the tables are reused, nothing decoded
    assert again["table"]["decodes"] == 0
    assert again["last_train"]["loss"] == summary["last_train"]["loss"]


def test_shipped_recipes_parse():
    grpo = load_train_config(ROOT / "recipes" / "grpo_default.yaml")
    assert (
        grpo.grpo.credit == "decision"
        and grpo.policy.init == "distilled"
        and set(grpo.rewards) == {"psnr", "token_cost"}
    )
    distill = load_distill_recipe(ROOT / "recipes" / "distill_default.yaml")
    # the knob tilts of the GRPO recipe are the distilled head's prices: (p - price) / temperature
    below = [p for p in distill.distill.knob_prices if p < distill.distill.price]
    tilts = [(p - distill.distill.price) / distill.distill.temperature for p in below]
    assert grpo.grpo.knob_tilts == pytest.approx(tilts)
    ablation = load_yaml(ROOT / "recipes" / "ablation_allocation.yaml")
    for v in ablation["variants"]:
        if v.get("command") == "train":
            overrides = [o.replace("{seed}", "0").replace("{run:distill}", "runs/x") for o in v["overrides"]]
            load_train_config(ROOT / v["recipe"], overrides)
        elif v.get("command") == "distill":
            load_distill_recipe(ROOT / v["recipe"], [o.replace("{seed}", "0") for o in v["overrides"]])
    assert TINY  # the tiny-run settings are shared with test_trainer
