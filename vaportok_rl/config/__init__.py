"""YAML recipes + dotted CLI overrides -> nested, validated dataclasses.

Module owners define one dataclass per concern, with every field documented by an attribute docstring::

    @dataclass
    class GRPOConfig:
        beta: float = 0.1
        \"\"\"KL penalty weight.\"\"\"

and build it with :func:`load_config` (``recipe.yaml`` merged with ``a.b.c=VALUE`` overrides) or :func:`from_dict`.

Supported field types: ``int``, ``float`` (ints accepted and converted; bools rejected for both), ``bool``, ``str``,
``Literal[...]``, ``X | None`` / ``Optional[X]`` (and other unions, tried in order), ``list[X]``, ``tuple[X, ...]`` and
fixed ``tuple[X, Y]``, ``dict[str, X]``, ``typing.Any``, nested dataclasses (also lists/tuples/dicts/optionals of
them) and ``pathlib.Path`` (from a string). Values are checked strictly (``"3"`` is not an int); nothing is eval()'d.

Numbers: every ``float`` value (also inside lists, tuples, dicts and optionals) must be finite; ``.nan`` / ``.inf``
are rejected by :func:`from_dict` for every config dataclass, naming the key, unless the field opts out with
``field(default=..., metadata={"finite": False})``. Ranges belong to the owning dataclass's ``__post_init__``, written
with :func:`check_number` (``check_number("optim.lr", self.lr, low=0, low_open=True)``), which raises a ValueError
naming the key, the value and the expected range; from_dict runs ``__post_init__`` first, so a NaN in a field with a
range reports that range.

YAML (files and override values) is read with a ``yaml.SafeLoader`` subclass that differs from ``yaml.safe_load`` in
two ways: ``1e-4`` / ``3E5`` (exponent without a dot, a string in YAML 1.1) load as floats, and a mapping with a
duplicated key is an error instead of silently keeping the last value. A recipe file must be UTF-8 text holding a
mapping: an empty one (or only comments, or ``null``) is an error, not "all defaults".

The parts, each importable from here: :mod:`~vaportok_rl.config.errors` (ConfigError),
:mod:`~vaportok_rl.config.yaml_files` (the loader, load_yaml, save_yaml), :mod:`~vaportok_rl.config.overrides`
(parse_overrides, merge, load_config), :mod:`~vaportok_rl.config.convert` (from_dict, to_dict),
:mod:`~vaportok_rl.config.checks` (check_number, check_positive_int, check_non_negative_int) and
:mod:`~vaportok_rl.config.docs` (field_docs, describe, check_documented).
"""

from __future__ import annotations

from vaportok_rl.config.checks import check_non_negative_int, check_number, check_positive_int
from vaportok_rl.config.convert import from_dict, to_dict
from vaportok_rl.config.docs import check_documented, describe, field_docs
from vaportok_rl.config.errors import ConfigError
from vaportok_rl.config.overrides import load_config, merge, parse_overrides
from vaportok_rl.config.yaml_files import load_yaml, save_yaml

__all__ = [
    "ConfigError",
    "check_documented",
    "check_non_negative_int",
    "check_number",
    "check_positive_int",
    "describe",
    "field_docs",
    "from_dict",
    "load_config",
    "load_yaml",
    "merge",
    "parse_overrides",
    "save_yaml",
    "to_dict",
]
