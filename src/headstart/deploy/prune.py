"""`headstart prune RUN --sparsity 0.3`: structured channel pruning, a short recovery fine-tune,
and a new run directory that loads, predicts and exports like any other.

Structured (whole channels) rather than unstructured (single weights) because only removing
channels makes the dense convolutions a CPU runs smaller and faster; scattered zeros cost the
same time as the weights they replace. torch-pruning traces the network's dependency graph,
so channels coupled by a residual add or a depthwise convolution are removed together. Each
group of coupled channels is ranked by the L2 norm of its weights and the smallest
`sparsity` share of every layer's channels goes; the classifier's output layer keeps its
classes. The pruned network then trains briefly (every layer, the house loop) to recover
what the cut cost, and the before/after figures go into summary.json and the deploy table.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from headstart.config import FitConfig
from headstart.errors import HeadstartError
from headstart.files import write_json, write_yaml
from headstart.log import say
from headstart import manifest
from headstart.run import CONFIG, MODEL_INFO, SPLITS, SUMMARY, Run
from headstart.summary import FitSummary
from headstart.strategies.backbone_training import HeadThenAllLayers

from headstart.engines.measure import count_parameters, pytorch_row, read_deploy, record_deploy_row
from .pruned_format import changed_shapes, layer_shapes

DEFAULT_EPOCHS = 3  # "short": enough for the remaining channels to take over, well below a fit's
LATENCY_SECONDS = 3.0  # per model measured: enough repeats for a median on a busy machine
_FIGURES = ("params", "mflops", "file_mb", "latency_ms_b1", "latency_ms_b32", "throughput_per_s", "test_accuracy")


class Recovery(HeadThenAllLayers):
    """The recovery fine-tune, fine-tuning's recipe on the pruned network: the old head no
    longer fits the slimmer features (its logits can be off by orders of magnitude), so a
    logistic head is refitted on them first (seconds), then every layer trains from it at the
    rates of the recipe that would train this network (discriminative rates for a pretrained
    backbone, scratch's for a network trained from nothing), and must beat the refitted head.
    Not registered: it is no way to fit a model, only to mend one."""

    name = "prune"
    default_epochs = DEFAULT_EPOCHS
    default_augment = "light"
    default_patience = 2
    description = "recovery fine-tune after structured pruning"
    head_c_grid = (0.1,)

    def __init__(self, lr: float, spread: float):
        self.default_lr, self.lr_spread = lr, spread


def prune_run(run: str | Path, *, sparsity: float, budget_seconds: float | None = None, epochs: int | None = None,
              out: str | Path | None = None) -> dict:
    """Prune a finished image run's CNN and write the pruned model as a new run; returns its
    summary (with "pruned_from", "sparsity" and the before/after figures in "pruning")."""
    from headstart.modalities import modality_of
    from headstart.pipeline import Plan, finish, train
    from headstart.records import Recorder
    from headstart.zoo import resolve_backbone

    started = time.perf_counter()
    _check_sparsity(sparsity)
    source = Run.open(run).require_finished()
    run_dir = source.path
    out_dir = _out_dir(run_dir, sparsity, out)
    model, meta = source.model(), source.model_info
    _check_prunable(model, meta, run_dir)
    if meta.get("pruned"):
        say(f"{run_dir} was pruned already; pruning it again removes {sparsity:.0%} of what is left")

    decode_started = time.perf_counter()
    source_config = source.config
    reloaded = source.reload_data("prune reloads the run's data for its recovery fine-tune and evaluation")
    data, splits = reloaded.data, reloaded.splits
    parts = tuple(model.prepare(s) for s in (splits.train, splits.val, splits.test))
    decode_seconds = time.perf_counter() - decode_started

    before = _figures(model, parts[2], run_dir, source.summary.test_accuracy)
    pruned = prune_channels(model, sparsity, meta)
    say(f"pruned {sparsity:.0%} of the channels of {len(pruned['layers'])} layers: "
        f"{before['params']:,} -> {count_parameters(model):,} parameters")

    modality = modality_of(data)
    # the head is refitted on the pruned features by PyTorch itself (no engine to export first)
    config = replace(source_config, out=str(out_dir), budget_seconds=budget_seconds,
                     epochs=epochs or DEFAULT_EPOCHS, resume=False, extract_engine="torch")
    spec = resolve_backbone(meta["backbone"]["architecture"])
    plan = Plan(config, modality, _recovery_strategy(source_config, modality, spec), spec)
    record = {"from": str(run_dir), "sparsity": sparsity, "budget_seconds": budget_seconds, "epochs": config.epochs,
              "method": pruned["method"], "importance": pruned["importance"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(out_dir / CONFIG, {**config.to_dict(), "prune": record})
    write_json(out_dir / SPLITS, source.splits)
    manifest.record(out_dir, CONFIG, SPLITS)

    recorder = Recorder(out_dir, plan.strategy.name)
    # no feature cache: these features belong to one pruned model, used once
    outcome = train(plan, model, parts, recorder, checkpoint_dir=None, use_feature_cache=False)

    figures, notes = modality.data_notes(list(parts), model.describe()["preprocessing"])
    extra = {"modality": modality.name, "words": dict(modality.words), "data_notes": notes, **figures,
             **({"added_labels": reloaded.added_labels} if reloaded.added_labels else {}),
             "pruned_from": str(run_dir), "sparsity": sparsity}
    result = finish(plan, model, data, parts, recorder, outcome, out_dir, started, decode_seconds, extra)
    _add_pruned_record(out_dir, pruned)

    summary = result.summary
    after = _own_figures(out_dir) or _figures(model, parts[2], out_dir, summary.test_accuracy)
    summary.pruning = {**record, "layers_pruned": len(pruned["layers"]), "channels": pruned["channels"],
                       "before": before, "after": after}
    write_json(out_dir / SUMMARY, summary.to_dict())
    manifest.record(out_dir, SUMMARY)
    _record_deploy_rows(run_dir, out_dir, sparsity, before, after)
    return {**summary.to_dict(), "run_dir": str(out_dir)}


def pruning_lines(done: dict) -> list[str]:
    """What `headstart prune` prints: the before/after figures, the recovery and the new run
    (`done`: what prune_run returned, the pruned run's summary and its "run_dir")."""
    summary = FitSummary.from_dict(done)
    lines = [f"pruned {summary.sparsity:.0%} of the channels of {summary.pruned_from}"]
    for key, label in (("params", "parameters"), ("mflops", "MFLOPs"), ("latency_ms_b1", "latency b1 ms"),
                       ("latency_ms_b32", "latency b32 ms"), ("test_accuracy", "test accuracy")):
        shown = [_shown(summary.pruning[side].get(key)) for side in ("before", "after")]
        lines.append(f"  {label:15} {shown[0]:>12} -> {shown[1]:>12}")
    lines.append(f"  recovery: {summary.epochs_run:.2f} epoch(s), {summary.train_seconds:.1f} s "
                 f"({summary.stop_reason})")
    return lines + [f"  run: {done['run_dir']}"]


def _shown(value) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}" if value >= 1 else f"{value:.4f}"


def prune_channels(model, sparsity: float, meta: dict) -> dict:
    """Remove the `sparsity` share of each layer's output channels, in place; returns the
    record model.json needs to rebuild the result (see pruned_format.py). Checked before it
    returns: the original architecture with the recorded shapes has exactly the pruned
    model's tensors, so the run will load back."""
    import torch_pruning as tp

    size = meta["backbone"]["preprocessing"]["input_size"]
    example = torch.zeros(1, model.channels, size, size)
    group_names = _group_names(model)
    shapes_before = layer_shapes(model)
    model.eval()
    with torch.enable_grad():  # torch-pruning traces the dependency graph through autograd
        pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=sparsity, ignored_layers=[model.head.fc])
        pruner.step()
    # torch-pruning replaces parameters with new tensors: the layer groups (discriminative
    # rates) must point at the new ones, found by name
    params = dict(model.backbone.named_parameters())
    model.backbone.set_param_groups([[params[n] for n in names] for names in group_names])
    model.backbone.feature_dim = model.head.fc.in_features
    if hasattr(model.backbone.model, "num_features"):
        model.backbone.model.num_features = model.backbone.feature_dim
    model.to(memory_format=torch.channels_last)
    shapes_after = layer_shapes(model)
    record = {"sparsity": sparsity, "method": "torch-pruning's MetaPruner",
              "importance": "L2 norm of each coupled channel group", "feature_dim": model.backbone.feature_dim,
              "channels": _channel_counts(shapes_before, shapes_after),
              # against the original architecture, which loading rebuilds: a pruned run's own record first
              "layers": {**(meta.get("pruned") or {}).get("layers", {}), **changed_shapes(shapes_before, shapes_after)}}
    _check_rebuilds(model, meta, record)
    return record


def _recovery_strategy(config: FitConfig, modality, spec) -> Recovery:
    from headstart.strategies import get_strategy

    teacher = get_strategy("finetune" if get_strategy(config.strategy).pretrained else "scratch")
    lr = teacher.lr(config, modality)
    if not teacher.pretrained and config.lr is None and spec.scratch_lr:
        lr = spec.scratch_lr  # an architecture that knows its own rate, as scratch uses it
    spread = teacher.spread(1, modality) if hasattr(teacher, "spread") else 1.0
    return Recovery(lr, spread)


def _group_names(model) -> list[list[str]]:
    names = {id(p): n for n, p in model.backbone.named_parameters()}
    return [[names[id(p)] for p in group] for group in model.backbone.param_groups()]


def _channel_counts(before: dict, after: dict) -> dict:
    """Output channels of the convolutions, before and after: the share that went."""
    total = {k: sum(s["out_channels"] for s in shapes.values() if s["kind"] == "conv")
             for k, shapes in (("before", before), ("after", after))}
    return {**total, "removed_share": round(1 - total["after"] / max(1, total["before"]), 4)}


def _check_rebuilds(model, meta: dict, record: dict) -> None:
    from headstart.heads import ImageClassifier
    from headstart.modalities.image import apply_pruned_shapes
    from headstart.zoo import Preprocessing, resolve_backbone

    pre = Preprocessing.from_dict(meta["backbone"]["preprocessing"])
    backbone = resolve_backbone(meta["backbone"]["architecture"]).build(pretrained=False, image_size=pre.input_size)
    backbone.preprocessing = pre
    rebuilt = ImageClassifier(backbone, meta["num_classes"])
    apply_pruned_shapes(rebuilt, record)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if want != got:
        odd = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        raise HeadstartError(f"pruning changed tensors this architecture's pruned format cannot record "
                             f"({', '.join(odd[:5])}); nothing was written",
                             hint="prune convolutional networks (conv, batch-norm and linear layers)")


def _add_pruned_record(out_dir: Path, pruned: dict) -> None:
    write_json(out_dir / MODEL_INFO, {**Run(out_dir).model_info, "pruned": pruned})
    manifest.record(out_dir, MODEL_INFO)


def _figures(model, test_part, run_dir: Path, test_accuracy: float | None) -> dict:
    row = pytorch_row(model, test_part, test_accuracy, run_dir, max_seconds=LATENCY_SECONDS)
    return {k: row.get(k) for k in _FIGURES}


def _own_figures(run_dir: Path) -> dict | None:
    """The figures `finish` measured for the run's own model (its deploy table's first row)."""
    own = [r for r in read_deploy(run_dir)["rows"] if r.get("name") == "PyTorch fp32"]
    return {k: own[0].get(k) for k in _FIGURES} if own else None


def _record_deploy_rows(source_dir: Path, out_dir: Path, sparsity: float, before: dict, after: dict) -> None:
    """Each run's deploy table gains the other model: the source's the pruned one, the pruned
    run's (whose own row `finish` wrote) the unpruned source. Both reports are rebuilt."""
    from headstart.report import build_fit_report

    same = {"engine": "pytorch", "precision": "fp32"}
    record_deploy_row(source_dir, {"name": f"pruned {sparsity:.0%} (PyTorch fp32)", **same, **after,
                                   "file": str(out_dir / "model.safetensors")})
    record_deploy_row(out_dir, {"name": "unpruned source (PyTorch fp32)", **same, **before,
                                "file": str(source_dir / "model.safetensors")})
    for run in (out_dir, source_dir):
        build_fit_report(run)


def _check_sparsity(sparsity: float) -> None:
    if not isinstance(sparsity, (int, float)) or not 0 < sparsity < 1:
        raise HeadstartError(f"--sparsity must be a share of the channels between 0 and 1, got {sparsity!r}",
                             hint="e.g. --sparsity 0.3 removes 30% of each layer's channels")


def _check_prunable(model, meta: dict, run_dir: Path) -> None:
    from headstart.heads import ImageClassifier

    if not isinstance(model, ImageClassifier) or not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        raise HeadstartError(f"{run_dir} holds a {meta.get('modality')} model ({meta.get('format')}); prune "
                             f"removes channels from convolutional image networks",
                             hint="prune an image run fitted with a CNN backbone (e.g. tf_efficientnet_lite0, "
                                  "or --strategy scratch's resnet9)")


def _out_dir(run_dir: Path, sparsity: float, out: str | Path | None) -> Path:
    out_dir = Path(out) if out else run_dir.parent / f"{run_dir.name}-pruned{round(sparsity * 100):02d}"
    if out_dir.resolve() == run_dir.resolve():
        raise HeadstartError("the pruned run must go into a new folder, not over its source",
                             hint="leave --out unset (RUN-prunedNN) or name another folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise HeadstartError(f"{out_dir} already holds files", hint="pass another --out, or remove that folder")
    return out_dir
