"""The package's shape: layers that import one way, no cycles, no modality name compared
outside the modalities, no module too large to hold in one's head."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "headstart"

# Lower layers never import higher ones (modules in one layer may import each other).
LAYERS = [
    {"errors", "files", "log", "config", "registry", "model_io", "metrics", "records", "tracking", "inputs"},
    {"data", "report", "imbalance"},
    {"zoo"},
    {"heads"},
    {"train"},
    {"modalities"},
    # the ONNX graph tools and the extraction engines run the embed stage; the rest of deploy/
    # (export, prune, the deploy table) works on finished runs, beside the pipeline
    {"embed", "deploy.onnx_graph", "deploy.engines"},
    # choose/: the transferability scores and the ranking work on embeddings (below the
    # pipeline, which ranks for --backbone auto); auto and tune run whole fits, beside it
    {"explain", "diagnosis", "label", "choose.scores", "choose.covariance", "choose.candidates",
     "choose.rank"},
    {"strategies"},
    {"pipeline", "post_fit", "compare", "baseline", "label_curves", "prediction", "demo", "deploy", "choose",
     "adapt"},
    {"api", "estimator", "cli_options"},
    {"cli", "cli_parsers", "cli_print", "__init__", "__main__"},
]
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every headstart module `path` imports, at module level or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("headstart")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("headstart"):
                found.add(module)
                # `from headstart.zoo import tfidf` imports a submodule, not a name
                found |= {f"{module}.{a.name}" for a in node.names if (SRC.parent / f"{module}.{a.name}".replace(".", "/")).with_suffix(".py").exists()}
    return {m for m in found if m != name}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}


def _layer(module: str) -> int:
    """A module's layer: its own entry when LAYERS names it (deploy.engines), else its package's."""
    parts = module.split(".")[1:]
    for key in (".".join(parts[:2]) if len(parts) > 1 else None, parts[0] if parts else "__init__"):
        found = next((i for i, layer in enumerate(LAYERS) if key in layer), None)
        if found is not None:
            return found
    raise KeyError(module)


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


def test_layers_import_one_way():
    wrong = [(m, dep) for m, deps in _graph().items() for dep in deps if _layer(dep) > _layer(m)]
    assert not wrong, f"a lower layer imports a higher one: {wrong}"


def test_no_modality_name_is_compared_outside_the_modalities():
    pattern = re.compile(r'== "text"|== "image"|modality ==')
    hits = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py") if "modalities" not in p.parts
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


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
