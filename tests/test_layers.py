"""The package's layers: each layer imports only the layers below it, and no module imports itself back.

Every import statement counts, at module level or inside a function (a function-local import cannot
hide a cycle or an upward dependency), ``TYPE_CHECKING`` blocks included. Run on another tree with
``python tests/test_layers.py path/to/src/mmcl``: it prints what it finds there.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mmcl"
# Bottom to top (README "How the code is laid out"); the command line and the package itself sit above them.
LAYERS = ("core", "config", "metrics", "data", "models", "engine", "methods", "analyses", "jobs")
TOP = ("cli", "__main__")


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it (``from a import b`` counts as ``a.b``
    when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # the longest prefix that is a module of the package
                target = target.rpartition(".")[0]
            if target:
                found.add(target)
                if isinstance(node, ast.ImportFrom):
                    break  # `from a import b`: the module b when it is one, else a
    return found


def rank(module: str, package: str) -> int | None:
    """A module's layer (higher imports lower); None when it belongs to no layer."""
    parts = module.split(".")
    if parts == [package]:
        return len(LAYERS) + 1  # the package's own __init__
    if parts[1] in TOP and len(parts) == 2:
        return len(LAYERS)
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(root: Path) -> list[str]:
    """Every module outside the layers, every import of a higher layer, and every import cycle."""
    modules = module_names(root)
    graph = {name: imports(path, modules) - {name} for name, path in modules.items()}
    found = []
    for module in sorted(graph):
        own = rank(module, root.name)
        if own is None:
            found.append(f"{module}: in no layer (layers, bottom to top: {', '.join(LAYERS)})")
            continue
        for target in sorted(graph[module]):
            theirs = rank(target, root.name)
            if theirs is not None and theirs > own:
                found.append(f"{module} imports {target}, a higher layer ({target.split('.')[1]})")
    found += [f"import cycle through {len(c)} modules: {', '.join(c)}" for c in cycles(graph)]
    return found


def test_each_layer_imports_only_the_layers_below_it_and_nothing_imports_itself_back():
    found = problems(PACKAGE)
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"core/a.py": "", "data/b.py": "from mmcl.core import a\n"}, []),
        (
            {"core/a.py": "def f():\n    from mmcl.data import b\n", "data/b.py": ""},
            ["mmcl.core.a imports mmcl.data.b"],
        ),
        (
            {"data/a.py": "from mmcl.data.b import x\n", "data/b.py": "def g():\n    import mmcl.data.a\n"},
            ["import cycle through 2 modules: mmcl.data.a, mmcl.data.b"],
        ),
        ({"training/c.py": ""}, ["mmcl.training: in no layer", "mmcl.training.c: in no layer"]),
    ],
)
def test_the_check_finds_upward_imports_cycles_and_modules_outside_the_layers(tmp_path, files, expected):
    root = tmp_path / "mmcl"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for package in {(root / name).parent for name in files}:
        (package / "__init__.py").touch()
    found = problems(root)
    assert len(found) == len(expected) and all(f.startswith(e) for f, e in zip(found, expected, strict=True)), found


if __name__ == "__main__":
    print("\n".join(problems(Path(sys.argv[1]).resolve())) or "no problems")
