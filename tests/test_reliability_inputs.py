"""More bad inputs, each ending in one clear line (the file, key or plugin, the value, what was expected) and exit
status 2, never a traceback nor a silent "worked": empty and non-UTF-8 recipes, NaN/inf and out-of-range numbers,
missing plugin folders, reward plugins that exit or edit the rollout, broken tokenizer factory files, and recipe
comments that name functions which no longer exist. Every test runs in its own tmp working directory (conftest)."""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import CLIP_SHAPE, D, K
from test_reliability import TINY, assert_one_clear_line, run

from vaportok_rl.config import ConfigError, from_dict, load_config, load_yaml
from vaportok_rl.distill import DistillRecipe, load_distill_recipe
from vaportok_rl.rewards import RewardError, call_reward, load_reward
from vaportok_rl.rollout import Rollout
from vaportok_rl.tokenizer.protocol import Encoded
from vaportok_rl.train_config import TrainConfig, load_train_config

ROOT = Path(__file__).resolve().parents[1]


def train(capsys, recipe, tmp_path, *extra):
    return run(capsys, "train", recipe, *TINY, f"log.output_dir={tmp_path / 'run'}", *extra)


@pytest.fixture
def no_training(monkeypatch):
    """The bad input must be caught before any work: training or distilling here fails the test (quickly)."""
    import vaportok_rl.cli.distill as cli_distill
    import vaportok_rl.cli.train as cli_train

    def fail(*args, **kwargs):
        pytest.fail("the bad input reached training")

    monkeypatch.setattr(cli_train, "run_training", fail)
    monkeypatch.setattr(cli_distill, "run_distill", fail)


@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text("steps: 1\n")
    return path


# =============================================================================================== recipe files


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "null\n", "~\n"])
@pytest.mark.parametrize("command", ["train", "distill", "rewards list"])
def test_empty_recipe_is_an_error_not_the_defaults(capsys, tmp_path, text, command, no_training):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    argv = ["rewards", "list", "--recipe", path] if command == "rewards list" else [command, path, "--no-progress"]
    code, _, err = run(capsys, *argv)
    assert_one_clear_line(code, err, str(path), "empty recipe; expected a mapping of settings (see --help-config)")


def test_empty_recipe_is_caught_by_the_one_shared_loader(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="empty recipe"):
        load_yaml(empty)
    from vaportok_rl.sweep import load_sweep

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"base: {empty.name}\nruns: [{{name: a}}]\n")
    with pytest.raises(ConfigError, match=re.escape(f"{empty}: empty recipe")):
        load_sweep(sweep)  # a sweep over an empty base recipe would train the defaults
    (tmp_path / "explicit.yaml").write_text("{}\n")  # an explicit empty mapping is a deliberate "all defaults"
    assert load_yaml(tmp_path / "explicit.yaml") == {}


NOT_UTF8 = {
    "binary": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)),
    "latin-1": "steps: 3  # réglé à 3\n".encode("latin-1"),
    "utf-16": "steps: 3\n".encode("utf-16"),
    "nul": b"steps: 3\n\x00\x00\x00\x00",  # decodes as UTF-8, but is binary
}


@pytest.mark.parametrize("kind", list(NOT_UTF8))
@pytest.mark.parametrize("command", ["train", "rewards list"])
def test_recipe_that_is_not_utf8_text_is_one_line(capsys, tmp_path, kind, command, no_training):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(NOT_UTF8[kind])
    argv = ["rewards", "list", "--recipe", path] if command == "rewards list" else [command, path, *TINY]
    code, _, err = run(capsys, *argv)
    assert_one_clear_line(code, err, str(path), "not UTF-8 text YAML")


def test_invalid_yaml_is_one_line_with_its_line_number(capsys, tmp_path, no_training):
    path = tmp_path / "recipe.yaml"
    path.write_text("steps: 1\ngrpo: {beta: [1, 2\n")
    code, _, err = run(capsys, "train", path, *TINY)
    assert_one_clear_line(code, err, str(path), "invalid YAML", "line 3")
    assert err.count("\n") == 1


# =============================================================================================== numbers


@dataclass
class Knobs:
    """A config owner that declares no range at all: NaN/inf are still rejected, by default."""

    x: float = 1.0
    """A float."""
    xs: list[float] = field(default_factory=list)
    """Floats."""
    pair: tuple[float, float] = (0.0, 1.0)
    """Two floats."""
    maybe: float | None = None
    """An optional float."""
    named: dict[str, float] = field(default_factory=dict)
    """Floats by name."""
    anything: dict[str, typing.Any] = field(default_factory=dict)
    """Free-form plugin kwargs: not checked here (the plugin validates its own)."""
    ceiling: float = field(default=1.0, metadata={"finite": False})
    """A field that opts out: inf means "no ceiling"."""


@pytest.mark.parametrize(
    "data, key",
    [
        ({"x": float("nan")}, "x"),
        ({"x": float("inf")}, "x"),
        ({"xs": [1.0, float("-inf")]}, "xs[1]"),
        ({"pair": [float("nan"), 1.0]}, "pair[0]"),
        ({"maybe": float("inf")}, "maybe"),
        ({"named": {"a": 1.0, "b": float("nan")}}, "named.b"),
    ],
)
def test_every_float_field_rejects_nan_and_inf_by_default(data, key):
    with pytest.raises(ConfigError, match=rf"'{re.escape(key)}': expected a finite number.*got (nan|-?inf)"):
        from_dict(Knobs, data)


def test_fields_that_opt_out_and_untyped_kwargs_keep_non_finite_values():
    knobs = from_dict(Knobs, {"ceiling": float("inf"), "anything": {"clip": float("inf")}})
    assert knobs.ceiling == float("inf") and knobs.anything == {"clip": float("inf")}


def _float_keys(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, an override value holding one NaN) for every float-valued field of a config dataclass."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp = f"{prefix}{f.name}", hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if dataclasses.is_dataclass(tp):
            out += _float_keys(tp, f"{key}.")
        elif tp is float or (args == [float] and typing.get_origin(tp) is not list):
            out.append((key, ".nan"))
        elif typing.get_origin(tp) is list and args == [float]:
            out.append((f"{key}", "[.nan]"))
        elif typing.get_origin(tp) is tuple and float in args:
            out.append((key, "[" + ", ".join([".nan"] + ["0.5"] * (len(args) - 1)) + "]"))
    return out


def _loaders():
    from vaportok_rl.tokenizer.pretrain_config import PretrainConfig

    return {
        "train": (TrainConfig, lambda o: load_train_config(None, o)),
        "distill": (DistillRecipe, lambda o: load_distill_recipe(None, o)),
        "pretrain": (PretrainConfig, lambda o: load_config(PretrainConfig, None, o)),
    }


@pytest.mark.parametrize("which", ["train", "distill", "pretrain"])
def test_nan_in_any_float_setting_of_any_command_names_the_key(which):
    cls, load = _loaders()[which]
    keys = _float_keys(cls)
    if which == "train":
        keys.append(("rewards.efficiency.weight", ".nan"))
    assert len(keys) >= 5, keys
    for key, value in keys:
        with pytest.raises(ConfigError, match=re.escape(key) + r"(\[0\])?'?: expected a.*got nan") as caught:
            load([f"{key}={value}"])
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "override, needles",
    [
        ("optim.lr=.nan", ["optim.lr", "nan", "> 0"]),
        ("optim.lr=-1", ["optim.lr", "-1.0", "> 0"]),
        ("optim.lr=.inf", ["optim.lr", "inf", "> 0"]),
        ("grpo.beta=.inf", ["grpo.beta", "inf", ">= 0"]),
        ("grpo.target_temperature=0", ["grpo.target_temperature", "0.0", "> 0"]),
        ("grpo.knob_prices=[0.1, -0.5]", ["grpo.knob_prices[1]", "-0.5", ">= 0"]),
        ("grpo.knob_tilts=[.inf]", ["grpo.knob_tilts[0]", "inf", "finite"]),
        ("policy.temperature=.nan", ["policy.temperature", "nan", "> 0"]),
        ("rewards.efficiency.weight=.inf", ["rewards.efficiency.weight", "inf", "finite"]),
    ],
)
def test_train_rejects_bad_numbers_naming_key_value_and_range(capsys, recipe, tmp_path, override, needles, no_training):
    code, _, err = train(capsys, recipe, tmp_path, override)
    assert_one_clear_line(code, err, *needles)


@pytest.mark.parametrize(
    "override, needles",
    [
        ("distill.lr=.inf", ["distill.lr", "inf", "> 0"]),
        ("distill.lr=.nan", ["distill.lr", "nan", "> 0"]),
        ("distill.lr=-0.001", ["distill.lr", "-0.001", "> 0"]),
        ("distill.price=.inf", ["distill.price", "inf", ">= 0"]),
        ("distill.temperature=0", ["distill.temperature", "0.0", "> 0"]),
        ("distill.knob_prices=[0.1, .inf]", ["distill.knob_prices[1]", "inf", ">= 0"]),
    ],
)
def test_distill_rejects_bad_numbers_before_writing_a_head(capsys, tmp_path, override, needles, no_training):
    code, _, err = run(capsys, "distill", override, "--no-progress")
    assert_one_clear_line(code, err, *needles)


# =============================================================================================== plugins

SHORTER = """
import torch
from vaportok_rl.rewards import Reward


class Efficiency(Reward):
    name = "efficiency"

    def __call__(self, rollout):
        return -rollout.keep.float().mean(-1)
"""


def test_missing_plugin_folder_is_an_error_not_the_builtin(capsys, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps: 1\nplugin_paths: [my_plugins]\nrewards: {efficiency: {}}\n")  # a typo: my_plugin
    (tmp_path / "my_plugin").mkdir()
    (tmp_path / "my_plugin" / "efficiency.py").write_text(SHORTER)
    code, _, err = train(capsys, recipe, tmp_path)
    assert_one_clear_line(code, err, "plugin_paths[0]", "'my_plugins'", "does not exist", str(tmp_path))
    assert not (tmp_path / "run" / "summary.json").exists()
    code, out, err = run(capsys, "rewards", "list", "--recipe", recipe)
    assert code == 1 and "Traceback" not in err
    assert re.search(r"#1: plugin_paths\[0\]: plugin folder 'my_plugins' does not exist", out), out
    with pytest.raises(ConfigError, match="plugin_paths.*my_plugins.*does not exist"):
        load_reward("efficiency", search_paths=[Path("my_plugins")])


QUITTER = """
import sys
import torch
from vaportok_rl.rewards import Reward


class Quitter(Reward):
    name = "quitter"

    def __call__(self, rollout):
        sys.exit(0)
"""

IN_PLACE = """
import torch
from vaportok_rl.rewards import Reward


class InPlace(Reward):
    name = "in_place"

    def __call__(self, rollout):
        rollout.keep += 1  # edits the trainer's keep counts: the update and the logs would see them
        return torch.zeros(rollout.B, rollout.G)
"""

INIT_RAISES = """
import torch
from vaportok_rl.rewards import Reward


class Fragile(Reward):
    name = "fragile"

    def __init__(self):
        raise RuntimeError("cannot open the model file")

    def __call__(self, rollout):
        return torch.zeros(rollout.B, rollout.G)
"""


def _plugin_recipe(tmp_path, filename: str, source: str) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / filename).write_text(source)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"steps: 1\nplugin_paths: [{folder}]\nrewards: {{{Path(filename).stem}: {{}}}}\n")
    return recipe


def test_reward_plugin_calling_sys_exit_is_one_line_not_a_silent_exit_0(capsys, tmp_path):
    recipe = _plugin_recipe(tmp_path, "quitter.py", QUITTER)
    code, _, err = train(capsys, recipe, tmp_path)
    assert_one_clear_line(code, err, "'quitter'", "quitter.py", "SystemExit")


def test_reward_plugin_editing_the_rollout_in_place_is_one_line(capsys, tmp_path):
    recipe = _plugin_recipe(tmp_path, "in_place.py", IN_PLACE)
    code, _, err = train(capsys, recipe, tmp_path)
    assert_one_clear_line(
        code, err, "'in_place'", "in_place.py", "modified rollout.keep in place", "rollout.keep.clone()"
    )


def test_reward_whose_init_raises_is_one_line_naming_plugin_and_file(capsys, tmp_path):
    recipe = _plugin_recipe(tmp_path, "fragile.py", INIT_RAISES)
    code, out, err = run(capsys, "rewards", "list", "--recipe", recipe)
    assert code == 1 and "Traceback" not in err
    lines = [line for line in out.splitlines() if "RuntimeError" in line]
    assert len(lines) == 1, out
    assert "'fragile'" in lines[0] and "fragile.py" in lines[0] and "cannot open the model file" in lines[0]
    assert "line 10" in lines[0]  # where in the plugin's file
    code, _, err = train(capsys, recipe, tmp_path)
    assert_one_clear_line(code, err, "'fragile'", "fragile.py", "RuntimeError", "cannot open the model file")


def tiny_rollout() -> Rollout:
    B, G, L = 2, 3, 2
    generator = torch.Generator().manual_seed(0)
    return Rollout(
        videos=torch.rand(B, L, *CLIP_SHAPE, generator=generator),
        encoded=Encoded(latents=torch.randn(B * L, K, D, generator=generator), codes=torch.zeros(B * L, K).long()),
        keep=torch.randint(1, K + 1, (B, G, L), generator=generator),
        reconstructions=None,
        prior_correct=None,
        sc=torch.rand(B, L),
        tc=torch.rand(B, L),
        old_logp=torch.zeros(B, G, L),
        ref_logp=torch.zeros(B, G, L),
        num_latents=K,
    )


class Probe:
    name = "probe"

    def __init__(self, action):
        self.action, self.seen = action, None

    def __call__(self, rollout):
        self.seen = rollout
        self.action(rollout)
        return torch.zeros(rollout.B, rollout.G)


def test_call_reward_shares_tensors_but_not_attributes():
    rollout = tiny_rollout()
    keep, latents = rollout.keep, rollout.encoded.latents
    probe = Probe(lambda r: (setattr(r, "keep", r.keep + 1), setattr(r.encoded, "latents", r.encoded.latents * 0)))
    call_reward("probe", probe, rollout)
    assert rollout.keep is keep and rollout.encoded.latents is latents  # reassignment stayed in the plugin's copy
    assert probe.seen is not rollout and probe.seen.videos is rollout.videos  # no tensor was copied


@pytest.mark.parametrize(
    "field_name, edit",
    [
        ("keep", lambda r: r.keep.clamp_(max=1)),
        ("videos", lambda r: r.videos.float().mul_(255)),  # .float() of a float tensor is the same tensor
        ("encoded.latents", lambda r: r.encoded.latents[0].zero_()),  # a view's edit is the base's edit
        ("sc", lambda r: r.sc.add_(1)),
    ],
)
def test_call_reward_catches_in_place_edits_of_any_rollout_tensor(field_name, edit):
    with torch.no_grad(), pytest.raises(RewardError, match=rf"modified rollout\.{re.escape(field_name)} in place"):
        call_reward("probe", Probe(edit), tiny_rollout())


@pytest.mark.parametrize("exit_", [SystemExit(3), GeneratorExit()])
def test_call_reward_turns_any_base_exception_but_ctrl_c_into_a_reward_error(exit_):
    def leave(rollout):
        raise exit_

    with pytest.raises(RewardError, match=f"'probe'.*{type(exit_).__name__}"):
        call_reward("probe", Probe(leave), tiny_rollout())

    def interrupt(rollout):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_reward("probe", Probe(interrupt), tiny_rollout())


# =============================================================================================== tokenizer factories

FACTORY_SYNTAX_ERROR = """
def make():
    return (
"""

FACTORY_RAISES = """
def helper():
    raise RuntimeError("weights file /nope.pt not found")


def make():
    return helper()
"""


@pytest.mark.parametrize(
    "source, needles",
    [
        (FACTORY_SYNTAX_ERROR, ["SyntaxError", "line 3"]),
        (FACTORY_RAISES, ["make()", "RuntimeError", "weights file /nope.pt not found", "line 3"]),
    ],
)
def test_broken_tokenizer_factory_file_is_one_line_naming_it(capsys, recipe, tmp_path, source, needles):
    factory = tmp_path / "my_tokenizer.py"
    factory.write_text(source)
    code, _, err = train(capsys, recipe, tmp_path, f"tokenizer={factory}:make")
    assert_one_clear_line(code, err, "my_tokenizer.py", *needles)


# =============================================================================================== recipe comments


def _comment_references() -> list[tuple[str, str]]:
    """(recipe, dotted name) for every ``vaportok_rl.x.y`` and ``from vaportok_rl.x import a, b`` in a comment."""
    found = []
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        for line in path.read_text().splitlines():
            comment = line.partition("#")[2]
            for module, names in re.findall(r"from\s+(vaportok_rl(?:\.\w+)*)\s+import\s+([\w ,]+)", comment):
                found += [(path.name, f"{module}.{n.strip()}") for n in names.split(",") if n.strip()]
            found += [(path.name, m) for m in re.findall(r"\bvaportok_rl(?:\.\w+)+", comment)]
    return found


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        return all((obj := getattr(obj, p, None)) is not None for p in parts[i:])
    return False


def test_recipe_comments_name_functions_that_exist():
    references = _comment_references()
    assert any("load_sweep" in name for _, name in references)  # the extraction finds the sweep one-liner
    stale = [(recipe, name) for recipe, name in references if not _resolves(name)]
    assert not stale, stale
