"""The package's shape: layers that import one way, no cycle between modules or between
packages, no modality name compared outside the modalities, no module too large to hold in one's
head. The layers are README's (its Architecture section), not a table kept here: widening one is
a change to the design, made where readers see it."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "headstart"
MAX_LINES = 400


def readme_layers() -> list[list[str]]:
    """The fenced block under README's `## Architecture`: one layer a line, lowest first, names
    separated by commas (a top-level package or module, or a dotted module placed apart);
    `#` starts a comment."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1].split("\n", 1)[1]
    layers = [[n.strip() for n in line.split("#")[0].split(",") if n.strip()] for line in block.splitlines()]
    return [layer for layer in layers if layer]


LAYERS = readme_layers()


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every headstart module `path` imports, at module level or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from headstart.zoo import tfidf` imports a submodule, not a name
            found |= {f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES}
    return {_known(m) for m in found if m.startswith("headstart.") or m == "headstart"} - {name, None}


def _known(module: str) -> str | None:
    """The module itself, or the nearest package holding it (`headstart.config.FitConfig`)."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def _graph() -> dict[str, set[str]]:
    return {name: _imports(path) - {"headstart"} for name, path in MODULES.items()}


def _placed(module: str) -> str | None:
    """The most specific README name that `module` falls under (`deploy.onnx_predict`, else
    `deploy`); the package's own __init__ is `__init__`."""
    parts = module.split(".")[1:] or ["__init__"]
    names = {n for layer in LAYERS for n in layer}
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in names:
            return ".".join(parts[:i])
    return None


def _layer(module: str) -> int:
    name = _placed(module)
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def _package(module: str) -> str:
    """A top-level subpackage or top-level module: the unit the package graph is drawn over."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_is_in_a_layer_and_every_layer_name_exists():
    assert len(LAYERS) >= 10, LAYERS  # the README block was found and read
    unplaced = sorted(m for m in MODULES if _placed(m) is None)
    assert not unplaced, f"modules in no layer of README's Architecture section: {unplaced}"
    stale = [n for layer in LAYERS for n in layer
             if n != "__init__" and not any(m == f"headstart.{n}" or m.startswith(f"headstart.{n}.") for m in MODULES)]
    assert not stale, f"README's layers name what does not exist: {stale}"
    names = [n for layer in LAYERS for n in layer]
    assert len(names) == len(set(names)), "a name in two layers"


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # a package importing its own submodules (to register them) is how registration works
    real = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert not real, f"import cycles: {real}"


def test_no_package_level_import_cycle():
    """Packages import one way too: a cycle between two packages, hidden from the module graph by
    imports inside functions, means a piece sits in the wrong package."""
    edges: dict[str, dict[str, str]] = {}
    for module, deps in _graph().items():
        for dep in deps:
            a, b = _package(module), _package(dep)
            if a != b:
                edges.setdefault(a, {}).setdefault(b, f"{module} -> {dep}")
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                cycles.append([edges[x][y] for x, y in zip(cycle, cycle[1:])])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"package-level import cycles (each through these imports): {cycles}"


def test_layers_import_one_way():
    wrong = sorted((m, dep) for m, deps in _graph().items() if _placed(m) for dep in deps
                   if _placed(dep) and _layer(dep) > _layer(m))
    assert not wrong, f"a lower layer imports a higher one (README's Architecture section): {wrong}"


def test_no_modality_name_is_compared_outside_the_modalities():
    pattern = re.compile(r'== "text"|== "image"|modality ==')
    hits = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py") if "modalities" not in p.parts
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_modules_stay_small():
    large = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not large, f"modules over {MAX_LINES} lines: {large}"


def test_every_fit_setting_is_on_the_command_line_with_help(capsys):
    from dataclasses import fields

    from headstart.cli import main
    from headstart.config import CompareConfig, FitConfig

    for command, classes in (("fit", [FitConfig]), ("compare", [CompareConfig, FitConfig])):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for cls in classes:
            for f in fields(cls):
                meta = f.metadata
                if "help" not in meta or (command == "compare" and cls is FitConfig and meta["per_arm"]):
                    continue
                flag = meta["flag"] or ("--" + f.name.replace("_", "-") if f.name != "data" else "data")
                assert flag in text, (command, flag)
                assert " ".join(meta["help"].split())[:40] in text, (command, f.name)
