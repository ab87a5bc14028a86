"""The package's structure rules (docs/design.md), read from the source: the tokenizer layer imports nothing above
it, there is no import cycle (imports inside functions count), argparse lives in cli/ only, and nothing in the
repository points at files outside it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "vaportok_rl"
ABOVE_TOKENIZER = ("export", "judge", "policy", "train", "sweep", "rollout", "rewards", "runs", "heldout", "cli")


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """vaportok_rl modules imported anywhere in the file (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vaportok_rl"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("vaportok_rl"))
    return {m for m in found if m in known and m != "vaportok_rl"}


def test_tokenizer_imports_nothing_above_it():
    known = modules()
    bad = {
        name: sorted(m for m in imports(path, known) if m.split(".")[1] in ABOVE_TOKENIZER)
        for name, path in known.items()
        if name.startswith("vaportok_rl.tokenizer")
    }
    assert not {k: v for k, v in bad.items() if v}


def test_no_import_cycle():
    known = modules()
    graph = {name: imports(path, known) for name, path in known.items()}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(dep) :], dep]))
            if dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_argparse_lives_in_the_cli_package_only():
    users = [
        str(path.relative_to(ROOT))
        for name, path in modules().items()
        if not name.startswith("vaportok_rl.cli") and re.search(r"^\s*import argparse", path.read_text(), re.M)
    ]
    assert users == []


def test_nothing_points_outside_the_repository():
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *PACKAGE.rglob("*.py"), *(ROOT / "notebooks").glob("*")]
    texts += [*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "examples").glob("*.py")]
    bad = [
        str(path.relative_to(ROOT))
        for path in texts
        if path.is_file() and re.search(r"\.\./shared|shared/(tools|notes)|DESIGN\.md", path.read_text())
    ]
    assert bad == []
    assert (ROOT / "docs" / "design.md").is_file() and (ROOT / "benchmarks" / "pca_floor.py").is_file()
