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


# =============================================================================================== sizes

MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80
LONG_MODULES: dict[str, str] = {}  # "vaportok_rl/x.py": why it may be longer
LONG_FUNCTIONS = {
    "vaportok_rl/grpo.py:grpo_loss": "the model to copy: its docstring states the maths and every argument's shape "
    "(the body is about 50 lines)",
}


def sources() -> dict[str, Path]:
    """Package and built-in reward sources, by path relative to the repository."""
    paths = [*PACKAGE.rglob("*.py"), *(ROOT / "rewards").rglob("*.py")]
    return {str(p.relative_to(ROOT)): p for p in sorted(paths) if "assets" not in p.parts}


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_modules_and_functions_are_small_enough_to_read_in_one_sitting():
    long_modules, long_functions = {}, {}
    for rel, path in sources().items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            long_modules[rel] = lines
        for node in functions(path):
            size = node.end_lineno - node.lineno + 1
            if size > MAX_FUNCTION_LINES:
                long_functions[f"{rel}:{node.name}"] = size
    assert {k: v for k, v in long_modules.items() if k not in LONG_MODULES} == {}
    assert {k: v for k, v in long_functions.items() if k not in LONG_FUNCTIONS} == {}
    # the allow-lists stay true: an entry that is no longer long goes
    assert set(LONG_MODULES) <= set(long_modules) and set(LONG_FUNCTIONS) <= set(long_functions)


# =============================================================================================== one home each


def calls(path: Path, dotted: str) -> list[int]:
    """Lines of ``path`` that call ``dotted`` (e.g. "os.replace", "torch.log10", "np.log10")."""
    owner, name = dotted.rsplit(".", 1)
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in owner.split("|")
    ]


def test_one_psnr_formula():
    """metrics.psnr_from_mse (tensors and arrays) is the only place a PSNR is computed from an MSE."""
    found = {rel for rel, p in sources().items() if calls(p, "torch|np|math|numpy.log10")}
    assert found == {"vaportok_rl/metrics.py"}


ATOMIC_HOME = "vaportok_rl/checkpoint.py"  # atomic_folder, atomic_write_file
STAGED_EXPORT = "vaportok_rl/export.py"  # an export's staged files renamed into a folder that may hold the user's


def test_one_atomic_write():
    found = {rel: calls(p, "os.replace") + calls(p, "os.rename") for rel, p in sources().items()}
    assert {rel for rel, lines in found.items() if lines} <= {ATOMIC_HOME, STAGED_EXPORT}
    assert found[ATOMIC_HOME]


def test_one_metrics_reader():
    """Only run_files.py parses metrics.jsonl: a function elsewhere that names METRICS_FILE parses no JSON."""
    readers = []
    for rel, path in sources().items():
        if rel == "vaportok_rl/run_files.py":
            continue
        for node in functions(path):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            if "METRICS_FILE" in names and calls_in(node, "loads"):
                readers.append(f"{rel}:{node.name}")
        assert '"metrics.jsonl"' not in path.read_text(), rel
    assert readers == []


def calls_in(node: ast.AST, name: str) -> bool:
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == name for n in ast.walk(node)
    )


# =============================================================================================== imports


def test_imports_are_at_the_top_unless_an_optional_dependency_says_why():
    """An import inside a function is of an optional or heavy third-party module, with a comment on its line
    saying which; never of the package's own modules (there is no cycle to break)."""
    bad = []
    for rel, path in sources().items():
        lines = path.read_text().splitlines()
        for func in functions(path):
            for node in ast.walk(func):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                own = (module or "").startswith("vaportok_rl") or isinstance(node, ast.ImportFrom) and node.level
                if own or "#" not in lines[node.lineno - 1]:
                    bad.append(f"{rel}:{node.lineno} {module}")
    assert bad == []


# =============================================================================================== copy-paste


def code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines that carry code: no blank, comment, import, signature, docstring or
    bare-bracket lines, white space folded."""
    tree = ast.parse(path.read_text())
    docstrings = set()  # and signatures: functions of one family share their parameter lists by design
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            docstrings.update(range(node.lineno, node.body[0].lineno))
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            docstrings.update(range(first.lineno, first.end_lineno + 1))
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = " ".join(line.split())
        if (
            not text
            or text.startswith(("#", "import ", "from "))
            or number in docstrings
            or re.fullmatch(r"[\)\]\}]+[,:]?( ->.*)?", text)
        ):
            continue
        out.append((number, text))
    return out


def test_no_duplicated_blocks_of_code():
    """A copy-paste detector: no run of 6 code lines appears twice in the package or the built-in rewards."""
    window, seen, dups = 6, {}, []
    for rel, path in sources().items():
        lines = code_lines(path)
        for i in range(len(lines) - window + 1):
            block = tuple(text for _, text in lines[i : i + window])
            where = f"{rel}:{lines[i][0]}"
            if block in seen and not seen[block].startswith(f"{rel}:"):
                dups.append(f"{seen[block]} ~ {where}")
            seen.setdefault(block, where)
    assert dups == []


# =============================================================================================== import direction

FOUNDATIONS = {"errors", "run_files", "checkpoint", "run_folder", "resources", "config"}
"""Below everything: the error base, file names, atomic files, output folders, machine checks, recipes."""
TRAIN_AND_JUDGE = {"train", "judge"}
"""Training a head and judging one never import each other (a head is judged the same however it was made)."""
FRONT_ENDS = {"cli", "sweep", "distill", "export", "model_card"}
"""The only modules above train/ and judge/: what may import them."""


def test_import_direction():
    known = modules()

    def part(name: str) -> str:
        return name.split(".")[1] if "." in name else name

    edges = {(part(a), part(b)) for a, path in known.items() for b in imports(path, known) if part(a) != part(b)}
    assert {(a, b) for a, b in edges if a in FOUNDATIONS and b not in FOUNDATIONS} == set()
    assert {(a, b) for a, b in edges if a in TRAIN_AND_JUDGE and b in TRAIN_AND_JUDGE} == set()
    assert {(a, b) for a, b in edges if b in TRAIN_AND_JUDGE and a not in FRONT_ENDS} == set()
    assert {a for a, b in edges if b == "cli"} == set()


def test_shape_comments_use_the_axis_legend():
    """Every capital letter in a ``# [..]`` shape comment is one of docs/design.md's axis letters."""
    legend = set(re.findall(r"^\| `([A-Z])`", (ROOT / "docs" / "design.md").read_text(), re.M))
    legend |= {"C", "T", "H", "W", "P", "E"}  # rows that name several letters at once
    bad = []
    for rel, path in sources().items():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            comment = line.split("#", 1)[1] if "#" in line else ""
            for shape in re.findall(r"\[([^\[\]]*)\]", comment):
                odd = set(re.findall(r"\b([A-Z][a-z]?)\b", shape)) - legend
                if odd and "..." not in shape:
                    bad.append(f"{rel}:{number} [{shape}]")
    assert bad == []
