"""Every registry is a `headstart.registry.Registry`, and each has one common test that every
registered entry passes (timm's "one test over every registered model").

The table below names each registry; a test reads the package's source to check that no
module-level Registry is missing from it, so a new registry gets these tests by being listed.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.errors import HeadstartError
from headstart.registry import Registry

# what the registry is, "module:attribute"
REGISTRIES = {
    "strategies": "headstart.strategies.base:STRATEGIES",
    "backbones": "headstart.zoo.registry:_REGISTRY",
    "weights sources": "headstart.zoo.weights:_SOURCES",
    "local zoo rebuilders": "headstart.zoo.local:BACKBONE_REBUILDERS",
    "explain methods": "headstart.explain.registry:METHODS",
    "model formats": "headstart.model_io:_FORMATS",
    "augmentations": "headstart.train.augment:AUGMENTATIONS",
    "optimizers": "headstart.train.optim:OPTIMIZERS",
    "schedules": "headstart.train.optim:SCHEDULES",
    "datasets": "headstart.data.registry:_REGISTRY",
    "scores": "headstart.choose.scores:SCORES",
    "queries": "headstart.label.queries:QUERIES",
    "exporters": "headstart.deploy.registry:EXPORTERS",
    "engines": "headstart.engines.extract:ENGINES",
    "serving engines": "headstart.deploy.serve_engines:ENGINES",
    "onnx graphs": "headstart.deploy.onnx_export:GRAPHS",
    "onnx kinds": "headstart.deploy.onnx_predict:KINDS",
    "modalities": "headstart.modalities.base:_MODALITIES",
    "adaptations": "headstart.adapt.domain_methods:ADAPTATIONS",
    "continual methods": "headstart.adapt.continual_methods:CONTINUAL_METHODS",
    "ssl methods": "headstart.adapt.ssl:_METHODS",
    "trackers": "headstart.tracking:TRACKERS",
    "commands": "headstart.cli_options:COMMANDS",
}
# the modules whose import registers the entries of a registry declared elsewhere
FILLED_BY = ("headstart.config.commands", "headstart.strategies", "headstart.zoo", "headstart.modalities", "headstart.explain",
             "headstart.data", "headstart.deploy.onnx_export", "headstart.adapt.pretrain", "headstart.adapt.domain",
             "headstart.adapt.continual")


def registry(name: str) -> Registry:
    for module in FILLED_BY:
        importlib.import_module(module)
    if name == "adaptations":  # coral and dann register on first use (adapt/domain.py)
        importlib.import_module("headstart.adapt.coral")
        importlib.import_module("headstart.adapt.dann")
    module, attribute = REGISTRIES[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def test_every_module_level_registry_is_listed_here():
    declared = set()
    root = Path(headstart.__file__).parent
    for path in root.rglob("*.py"):
        module = ".".join(("headstart", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        for node in ast.parse(path.read_text()).body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "Registry":
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                declared.add(f"{module}:{target.id}")
    assert declared == set(REGISTRIES.values())


# --------------------------------------------------------------------------- every registry

@pytest.mark.parametrize("name", REGISTRIES)
def test_every_registry_is_a_filled_registry(name):
    table = registry(name)
    assert isinstance(table, Registry) and table.what
    assert len(table) > 0, f"nothing registered in {name}"
    assert table.choices()[-len(table):] == list(table)  # extra choices ("auto") first, then every entry


@pytest.mark.parametrize("name", REGISTRIES)
def test_a_misspelt_entry_gets_one_message_with_a_did_you_mean(name):
    table = registry(name)
    for entry in table:
        with pytest.raises(HeadstartError, match=f"unknown {table.what} '{entry}x'") as raised:
            table.get(f"{entry}x")
        assert f"did you mean {entry}?" in raised.value.hint
    with pytest.raises(HeadstartError) as raised:
        table.get("zzzzzzzz")
    assert "did you mean" not in raised.value.hint  # nothing close: no guess, the choices only


@pytest.mark.parametrize("name", REGISTRIES)
def test_a_name_is_registered_once(name):
    table = registry(name)
    entry = next(iter(table))
    with pytest.raises(ValueError, match="already registered"):
        table.add(entry, table[entry])


def test_an_extra_choice_that_reaches_the_lookup_is_not_suggested_to_itself():
    table = Registry("strategy", extra_choices=("auto",))
    table.add("probe", object())
    with pytest.raises(HeadstartError) as raised:
        table.get("auto")
    assert "did you mean" not in raised.value.hint and "auto, probe" in raised.value.hint
    assert table.get("nothing", None) is None


# --------------------------------------------------------------------------- every entry, per registry

def test_every_strategy_describes_itself_and_has_defaults_for_every_modality():
    from headstart.modalities import modalities

    for name, strategy in registry("strategies").items():
        assert strategy.name == name and strategy.description
        for modality in modalities():
            assert strategy.default("lr", modality) >= 0 and strategy.default("epochs", modality) >= 0
            assert strategy.default("augment", modality) in registry("augmentations")
            assert strategy.default("schedule", modality) in registry("schedules")


def test_every_modality_declares_its_tables():
    engines, rebuilders = registry("engines"), registry("local zoo rebuilders")
    for name, modality in registry("modalities").items():
        assert modality.name == name
        assert engines.get(modality.extraction_engine).takes(name)  # what --extract-engine auto runs
        assert rebuilders.get(name) is modality  # how the local zoo rebuilds its backbones
        assert all("@" in layer for layer in modality.default_layers)


def test_every_score_has_its_paper_and_runs_on_a_tiny_matrix():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 6)
    features = rng.normal(size=(18, 4)) + labels[:, None]
    logits = rng.normal(size=(18, 5))
    for name, score in registry("scores").items():
        assert score.name == name and score.summary and score.paper
        # a relative score (NCTI) returns its terms; the size prior reads the model's parameter count
        value = score.fn(features, labels, logits if score.needs_source else None, model_info={"parameters": 10})
        assert np.all(np.isfinite(value))


@pytest.mark.parametrize("name", ["queries", "exporters", "engines"])
def test_every_entry_has_a_summary_for_the_help(name):
    for entry_name, entry in registry(name).items():
        assert entry.name == entry_name and entry.summary


def test_every_explain_method_has_a_summary_and_each_modality_a_preference_order():
    from headstart.explain.registry import methods_for

    for name, by_modality in registry("explain methods").items():
        for modality, method in by_modality.items():
            assert method.name == name and method.modality == modality and method.summary
    for modality in registry("modalities"):
        order = [m.order for m in methods_for(modality)]
        assert order == sorted(order)


def test_every_tracker_names_itself_and_its_library():
    for name, tracker in registry("trackers").items():
        assert tracker.name == name and tracker.module


def test_every_optimizer_and_schedule_builds():
    from headstart.train.optim import build_optimizer, build_schedule

    for name in registry("optimizers"):
        weight = torch.nn.Parameter(torch.ones(2))
        optimizer = build_optimizer(name, [{"params": [weight], "lr": 0.1}], 0.0)
        for schedule in registry("schedules"):
            scheduler = build_schedule(schedule, optimizer, 10)
            assert 0 < scheduler.get_last_lr()[0] <= 0.1 + 1e-12


def test_every_augmentation_keeps_the_input_size():
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    for name, make in registry("augmentations").items():
        transform = make(32)
        out = image if transform is None else transform(image)
        assert name == "none" or out.shape == (3, 32, 32)


def test_every_dataset_describes_itself_and_its_options():
    for name, builtin in registry("datasets").items():
        assert builtin.name == name and builtin.description and callable(builtin.available)
        assert all(isinstance(words, str) and words for words in builtin.options.values())


def test_every_onnx_graph_is_for_a_model_format_and_every_kind_says_what_it_shows():
    formats = registry("model formats")
    assert set(registry("onnx graphs")) <= set(formats)
    assert all(fmt.input for fmt in formats.values())
    assert {kind.shown for kind in registry("onnx kinds").values()} <= {"path", "text"}


def test_every_ssl_method_is_for_a_registered_modality():
    for name, method in registry("ssl methods").items():
        assert method.name == name and method.modality in registry("modalities")
        assert method.epochs > 0 and method.batch_size > 0 and method.lr > 0 and method.summary


def test_every_weights_source_can_be_asked():
    for name, source in registry("weights sources").items():
        assert source.name == name and callable(source.load)


@pytest.mark.parametrize("name", ["adaptations", "continual methods"])
def test_every_method_is_a_function(name):
    assert all(callable(method) for method in registry(name).values())


def test_onnx_predict_imports_no_torch():
    """`predict --engine onnxruntime` runs where PyTorch is not installed: its kind table must not
    pull torch in (the modalities' modules do)."""
    import subprocess
    import sys

    code = "import sys, headstart.deploy.onnx_predict; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
