from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
import yaml

from vaportok_rl.config import (
    ConfigError,
    check_documented,
    describe,
    field_docs,
    from_dict,
    load_config,
    load_yaml,
    merge,
    parse_overrides,
    save_yaml,
    to_dict,
)


@dataclass
class Head:
    """A nested concern."""

    num_latents: int = 128
    """K: number of latent tokens."""
    temperature: float = 1.8
    """Softmax
    temperature."""

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


@dataclass
class Reward:
    name: str
    """Registered reward name (required)."""
    weight: float = 1.0
    """Weight in the sum."""


@dataclass
class Model:
    head: Head = field(default_factory=Head)
    """The taildrop head."""
    path: Path | None = None
    """Checkpoint folder."""


@dataclass
class Root:
    seed: int = 0
    """Random seed."""
    lr: float = 1e-4
    """Learning rate."""
    compile: bool = False
    """torch.compile the head."""
    run_name: str = "run"
    """Run name."""
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """Optimizer."""
    max_steps: Optional[int] = None  # noqa: UP045 - Optional[...] must work too
    """Stop after this many steps."""
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    """Sizes."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas."""
    ks: tuple[int, ...] = ()
    """Any number of ks."""
    weights: dict[str, float] = field(default_factory=dict)
    """Per-name weights."""
    extra: Any = None
    """Free-form."""
    out_dir: Path = Path("runs")
    """Output folder."""
    model: Model = field(default_factory=Model)
    """Model settings."""
    rewards: list[Reward] = field(default_factory=list)
    """Reward terms."""


@dataclass
class Undocumented:
    a: int = 1
    """Documented."""
    b: int = 2
    head: Head = field(default_factory=Head)


def test_round_trip_nested_and_list_of_dataclasses():
    data = {
        "seed": 3,
        "lr": 2,
        "betas": [0.8, 0.9],
        "ks": [1, 2, 3],
        "weights": {"mse": 0.5},
        "extra": {"anything": [1, "x"]},
        "out_dir": "runs/a",
        "model": {"head": {"num_latents": 64}, "path": "ckpt"},
        "rewards": [{"name": "lpips"}, {"name": "bits", "weight": -0.1}],
    }
    cfg = from_dict(Root, data)
    assert cfg.lr == 2.0 and isinstance(cfg.lr, float)
    assert cfg.betas == (0.8, 0.9) and cfg.ks == (1, 2, 3)
    assert cfg.out_dir == Path("runs/a") and cfg.model.path == Path("ckpt")
    assert cfg.model.head == Head(num_latents=64)
    assert cfg.rewards == [Reward("lpips"), Reward("bits", -0.1)]
    d = to_dict(cfg)
    assert d["out_dir"] == "runs/a" and d["betas"] == [0.8, 0.9] and d["model"]["head"]["temperature"] == 1.8
    assert yaml.safe_load(yaml.safe_dump(d)) == d
    assert from_dict(Root, d) == cfg
    assert from_dict(Root, {}) == Root()


@pytest.mark.parametrize(
    "key, good, bad, expected",
    [
        ("seed", 5, True, "int"),
        ("seed", 5, 1.5, "int"),
        ("lr", 1e-3, "1e-3", "float"),
        ("lr", 1e-3, False, "float"),
        ("compile", True, 1, "bool"),
        ("run_name", "x", 3, "str"),
        ("optimizer", "sgd", "adam", "'adamw', 'sgd'"),
        ("max_steps", None, "10", "int | None"),
        ("sizes", [3], [1, "2"], "int"),
        ("sizes", [3], 3, "list[int]"),
        ("betas", (0.1, 0.2), [0.1], "tuple[float, float]"),
        ("ks", [4], ["a"], "int"),
        ("weights", {"a": 1}, {"a": "x"}, "float"),
        ("weights", {"a": 1}, [1], "dict[str, float]"),
        ("extra", object, None, None),
        ("out_dir", "p", 3, "Path"),
        ("model", {}, 3, "Model"),
        ("rewards", [], [{"weight": 1.0}], "rewards[0].name"),
    ],
)
def test_field_types_accept_and_reject(key, good, bad, expected):
    from_dict(Root, {key: good})
    if expected is None:
        return
    with pytest.raises(ConfigError) as e:
        from_dict(Root, {key: bad})
    assert f"'{key}" in str(e.value)
    assert expected in str(e.value)


def test_wrong_type_message_has_dotted_key_value_and_type():
    with pytest.raises(ConfigError) as e:
        from_dict(Root, {"model": {"head": {"num_latents": "64"}}})
    msg = str(e.value)
    assert "'model.head.num_latents'" in msg and "'64'" in msg and "expected int" in msg
    with pytest.raises(ConfigError, match=r"rewards\[1\]\.weight"):
        from_dict(Root, {"rewards": [{"name": "a"}, {"name": "b", "weight": "heavy"}]})


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"rewards\[0\]\.name"):
        from_dict(Root, {"rewards": [{}]})


def test_unknown_keys_suggest_near_match():
    with pytest.raises(ConfigError) as e:
        from_dict(Root, {"sed": 1})
    assert "'sed'" in str(e.value) and "did you mean 'seed'?" in str(e.value) and "model" in str(e.value)
    with pytest.raises(ConfigError) as e:
        from_dict(Root, {"model": {"head": {"num_latens": 3}}})
    msg = str(e.value)
    assert "'model.head.num_latens'" in msg and "did you mean 'model.head.num_latents'?" in msg
    assert "temperature" in msg  # the valid keys are listed
    with pytest.raises(ConfigError, match=r"did you mean 'model\.head\.temperature'\?"):
        from_dict(Root, {"temperature": 1.0})  # right name, wrong level


def test_post_init_errors_get_the_prefix():
    with pytest.raises(ConfigError, match=r"^model\.head: temperature must be > 0"):
        from_dict(Root, {"model": {"head": {"temperature": 0}}})
    with pytest.raises(ConfigError, match=r"^temperature must be > 0"):
        from_dict(Head, {"temperature": -1})
    with pytest.raises(ConfigError, match=r"^model\.head: temperature"):
        from_dict(Head, {"temperature": -1}, prefix="model.head")


def test_parse_overrides_and_merge():
    ov = parse_overrides(
        [
            "seed=3",
            "lr=1e-4",
            "compile=true",
            "sizes=[1, 2]",
            "weights={a: 1}",
            "max_steps=null",
            "run_name=hello world",
            "model.head.num_latents=64",
            "tag=@v1",
            "x=a=b",
        ]
    )
    assert ov["seed"] == 3 and ov["lr"] == 1e-4 and ov["compile"] is True
    assert ov["sizes"] == [1, 2] and ov["weights"] == {"a": 1} and ov["max_steps"] is None
    assert ov["run_name"] == "hello world" and ov["model"] == {"head": {"num_latents": 64}}
    assert ov["tag"] == "@v1" and ov["x"] == "a=b"
    for bad in ["seed", "=3", "a..b=1", "a.=1", " =1"]:
        with pytest.raises(ConfigError, match="malformed override"):
            parse_overrides([bad])
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    merged = merge(base, {"a": {"b": 2}, "d": {"e": 1}})
    assert merged == {"a": {"b": 2, "c": [1]}, "d": {"e": 1}}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1}


def test_load_config_yaml_plus_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 3e-4\nmodel:\n  head:\n    num_latents: 32\n    temperature: 2.0\nrewards:\n  - name: a\n")
    cfg = load_config(Root, recipe, ["model.head.num_latents=16", "seed=7"], base={"run_name": "b"})
    assert cfg.lr == 3e-4 and cfg.seed == 7 and cfg.run_name == "b"
    assert cfg.model.head == Head(num_latents=16, temperature=2.0) and cfg.rewards == [Reward("a")]
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.head\.num_latens'; did you mean"):
        load_config(Root, recipe, ["model.head.num_latens=16"])
    with pytest.raises(ConfigError, match="expected int"):
        load_config(Root, None, ["seed=abc"])
    assert load_config(Root) == Root()


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "dup.yaml").write_text("a: 1\na: 2\n")
    with pytest.raises(ConfigError, match="duplicate key"):
        load_yaml(tmp_path / "dup.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty recipe"):  # an empty recipe is a mistake, not "all defaults"
        load_yaml(tmp_path / "empty.yaml")


def test_save_yaml_atomic_round_trip(tmp_path):
    cfg = from_dict(Root, {"out_dir": "o", "betas": [0.5, 0.6], "rewards": [{"name": "a"}], "lr": 1e-10})
    out = tmp_path / "sub" / "config.yaml"
    save_yaml(cfg, out)
    save_yaml(cfg, out)  # overwrite
    assert os.listdir(out.parent) == ["config.yaml"]
    assert load_config(Root, out) == cfg


def test_field_docs_describe_check_documented():
    docs = field_docs(Head)
    assert docs == {"num_latents": "K: number of latent tokens.", "temperature": "Softmax\ntemperature."}
    text = describe(Root)
    assert "seed: int = 0\n    Random seed." in text
    assert "model.head.num_latents: int = 128" in text and "rewards[].name: str (required)" in text
    assert "optimizer: Literal['adamw', 'sgd'] = 'adamw'" in text and "out_dir: Path = 'runs'" in text
    check_documented(Root)
    assert field_docs(Undocumented) == {"a": "Documented."}
    with pytest.raises(ConfigError) as e:
        check_documented(Undocumented)
    assert "b" in str(e.value) and "head" in str(e.value) and "a," not in str(e.value)
    assert "(undocumented)" in describe(Undocumented)
