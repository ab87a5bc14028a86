"""Pretraining: a tiny run writes an atomic checkpoint that resumes to the same state as an uninterrupted run."""

import json

import pytest
import torch
from conftest import ROOT

from vaportok_rl.config import ConfigError, check_documented, load_config
from vaportok_rl.tokenizer.pretrain import Pretrainer, run_pretrain
from vaportok_rl.tokenizer.pretrain_config import PretrainConfig

TINY = [
    "model.frames=8",
    "model.size=16",
    "model.num_latents=8",
    "model.width=32",
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "model.heads=2",
    "model.codebook_size=16",
    "model.code_dim=4",
    "model.skip_rank=4",
    "model.prior_layers=1",
    "model.prior_width=32",
    "model.head_width=16",
    "data.synthetic_clips=48",
    "data.texture_clips=16",
    "optim.batch_size=4",
    "optim.steps=6",
    "optim.quant_warmup_steps=2",
    "optim.quant_ramp_steps=2",
    "optim.lr_warmup_steps=1",
    "optim.dead_code_every=2",
    "optim.threads=1",
    "optim.prior_steps=2",
    "log.eval_every=3",
    "log.eval_clips=4",
    "log.checkpoint_every=3",
]


def tiny_config(tmp_path, name, *extra):
    return load_config(
        PretrainConfig, ROOT / "recipes" / "pretrain_tiny.yaml", [*TINY, f"log.output_dir={tmp_path / name}", *extra]
    )


def test_recipe_loads_and_every_field_is_documented():
    config = load_config(PretrainConfig, ROOT / "recipes" / "pretrain_tiny.yaml")
    assert config.model.patch == (4, 8, 8)
    assert config.model.head_temperature == 1.8
    check_documented(PretrainConfig)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.num_latens"):
        load_config(PretrainConfig, None, ["model.num_latens=64"])
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(PretrainConfig, None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="model.size"):
        load_config(PretrainConfig, None, ["model.size=30"])
    with pytest.raises(ConfigError, match="init_whiten"):
        load_config(PretrainConfig, None, ["optim.init_whiten=2"])
    with pytest.raises(ConfigError, match="clips_per_video"):
        load_config(PretrainConfig, None, ["data.clips_per_video=0"])


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    straight = run_pretrain(tiny_config(tmp_path, "a"), progress=False)

    # kill the same run right after its step-3 checkpoint, then resume it in a fresh trainer
    train_step = Pretrainer.train_step

    def dies_after_step_3(self):
        if self.step == 3:
            raise KeyboardInterrupt("killed")
        return train_step(self)

    monkeypatch.setattr(Pretrainer, "train_step", dies_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_pretrain(tiny_config(tmp_path, "b"), progress=False)
    monkeypatch.undo()
    resumed = run_pretrain(tiny_config(tmp_path, "b"), resume=True, progress=False)

    assert resumed.step == straight.step == 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["prior_stage_steps"] == 2  # then the prior-only stage
    assert "psnr" in rows[2] and "psnr" in rows[5]
    assert not list((tmp_path / "a").glob(".checkpoint.tmp-*"))


def test_pretrainer_learns_something(tmp_path):
    config = tiny_config(tmp_path, "c", "optim.steps=30", "optim.quant_warmup_steps=100", "optim.lr=3e-3")
    trainer = Pretrainer(config)
    first = trainer.train_step()["rec"]
    for _ in range(29):
        last = trainer.train_step()["rec"]
    assert last < first


def test_the_pretrain_command_alone_is_deterministic_run_to_run(tmp_path, capsys):
    """`vaportok-rl pretrain RECIPE` (every stage: PCA fit, main loop, prior-only stage, head prior) twice from
    scratch gives the same tokenizer file: the shipped weights are what the recipe rebuilds."""
    from vaportok_rl.cli.pretrain import main
    from vaportok_rl.tokenizer.default import load_tokenizer_file

    prints = []
    for name in ("first", "second"):
        assert main([str(ROOT / "recipes" / "pretrain_tiny.yaml"), *TINY, f"log.output_dir={tmp_path / name}",
                     "--no-progress"]) == 0  # fmt: skip
        prints.append(load_tokenizer_file(tmp_path / name / "tokenizer.safetensors").fingerprint)
    assert prints[0] == prints[1]
    assert f"fingerprint {prints[0][:16]}" in capsys.readouterr().out
    recipe = ROOT / "recipes" / "pretrain_tiny.yaml"
    other = load_config(PretrainConfig, recipe, [*TINY, "seed=1", f"log.output_dir={tmp_path / 'seed1'}"])
    assert run_pretrain(other, progress=False).model.fingerprint != prints[0]  # and the seed matters


def test_whitening_exponent_shrinks_late_codes_and_keeps_the_linear_path_exact(tmp_path):
    """optim.init_whiten < 1 scales the detail tokens' coefficients down with their variance; the decoder's
    skip map scales them back, so continuous codes still reconstruct what the whitened start does."""
    from vaportok_rl.tokenizer.skip_init import fit_linear_path, fit_patch_basis

    config = tiny_config(tmp_path, "w")
    clips = torch.rand(40, 3, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    codes, recs = {}, {}
    for whiten in (1.0, 0.5):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            trainer = Pretrainer(config, pool=clips, evalset=clips[:4])
        model = trainer.model
        fit_patch_basis(model, clips)
        fit_linear_path(model, clips, [1] * 2 + [3] * 6, 0.5, whiten=whiten, first=2)
        with torch.no_grad():
            u = model.encode_continuous(clips)  # [N, K, c]
            recs[whiten] = model.decode_train(model.post_quant(u), torch.full((40,), 8))
        codes[whiten] = u[..., :3].norm(dim=-1).mean(0)  # [K] coefficient size per token
    assert torch.allclose(recs[1.0], recs[0.5], atol=1e-4)
    assert torch.allclose(codes[0.5][:2], codes[1.0][:2], rtol=1e-4)  # the coarse tokens stay whitened
    assert (codes[0.5][2:] < codes[1.0][2:]).all()  # the detail tokens shrink


@pytest.mark.parametrize("prior_weight", [0.1, 0.0])
def test_prior_shapes_encoder_sends_the_prior_gradient_into_the_encoder(tmp_path, prior_weight):
    """optim.prior_shapes_encoder (LARP): the prior's cross-entropy changes the encoder's update; without a prior
    loss the switch changes nothing."""
    encoders = {}
    for shapes in (False, True):
        config = tiny_config(tmp_path, f"p{shapes}", "optim.quant_warmup_steps=0", f"optim.prior_weight={prior_weight}",
                             f"optim.prior_shapes_encoder={str(shapes).lower()}")  # fmt: skip
        trainer = Pretrainer(config)
        trainer.train_step()
        encoders[shapes] = trainer.model.pre_quant.weight.detach().clone()  # the encoder's (zero-started) output map
    assert torch.equal(encoders[False], encoders[True]) == (prior_weight == 0.0)
