"""`headstart fit NEW_DATA --from RUN`: continue a finished run with new classes or more data.

The continued run keeps the old run's backbone and classes, learns the new data by one of the
methods in continual_methods.py, and measures forgetting: every old class's test accuracy
before (the old model) and after, on the old run's own test items (reloaded through the
lineage, lineage.py), plus the new classes' accuracy. It writes a run directory of the usual
contract (composed from pipeline's stages), plus RUN/memory/ (what the next continuation needs:
memory.py) and RUN/continual.json (the lineage). Any finished run can be continued: a plain fit
has no memory, so it is rebuilt from that run's own training split (timed, as part of training).
Refusals come before anything is written; a failure after that removes the new run directory.
"""
from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..config import FitConfig
from ..data import make_splits
from ..embed import embed, weights_fingerprint
from ..errors import HeadstartError
from ..files import write_json, write_yaml
from ..log import say
from ..manifest import record
from ..modalities import get_modality, load_data, modality_of
from ..pipeline import FitResult, finish, load, resolve_plan
from ..report import build_fit_report
from .. import run_lock
from ..records import Recorder, new_run_dir
from ..run import CONTINUED, FIT, PRUNED, SUMMARY, Run
from ..summary import FitSummary
from .collision import name_collisions
from .continual_methods import CONTINUAL_METHODS, Job
from .forgetting import PLOT_FILE, forgetting_figures, forgetting_plot, headline, per_class_accuracy
from .lineage import TaskLoader, read_lineage, task_record, write_lineage
from .memory import Memory, cap_features, choose_exemplars, herding, load_memory, relabelled, save_memory

FINE_TUNING = ("finetune", "lp-ft")  # the recipes a fine-tuned continuation reuses; others get lp-ft


@dataclass
class OldRun:
    """The run a continuation starts from, as Run read it."""

    run: Run
    config: FitConfig
    summary: FitSummary
    meta: dict

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def backbone_trained(self) -> bool:
        return self.summary.strategy != "probe"


def read_old_run(from_run: str) -> OldRun:
    """The run to continue, or a clear refusal: missing, unfinished, not a fit, TF-IDF."""
    run = Run.open(from_run).require_finished()
    if run.kind not in (FIT, CONTINUED, PRUNED):
        raise HeadstartError(f"--from {from_run} is a {run.kind} run, which cannot be continued",
                             hint="continue a run with a backbone and a linear head (a probe or a fine-tuned run), "
                                  "or fit again on all the classes")
    return OldRun(run, run.config, run.summary, run.model_info)  # model_info refuses a run without its model


def continued_config(config: FitConfig, old: OldRun) -> tuple[FitConfig, str]:
    """(the config this run trains with, the method): the old run's backbone and input size;
    the strategy follows from the method (head: the probe; the others: a fine-tuning recipe)."""
    if config.resume:
        raise HeadstartError("--from cannot be combined with --resume",
                             hint="start the continuation again with a new --out")
    old_backbone = old.config.backbone
    if config.backbone not in (None, old_backbone, old.meta["backbone"].get("name")):
        raise HeadstartError(f"--from {old.run_dir} was trained with the backbone {old_backbone}, not {config.backbone}",
                             hint=f"drop --backbone: a continued run keeps its run's backbone ({old_backbone}); "
                                  f"or fit anew on all the classes")
    method = config.continual
    if method == "auto":
        method = "lwf" if old.backbone_trained else "head"
    strategy = "probe" if method == "head" else (old.summary.strategy if old.summary.strategy in FINE_TUNING
                                                  else "lp-ft")
    inherited = {k: getattr(old.config, k) for k in ("backbone", "image_size", "max_length", "pooling",
                                                      "scratch_model", "pretrained")}
    return replace(config, **inherited, strategy=strategy, continual=method, weights=None), method


def fit_continued(config: FitConfig) -> FitResult:
    started = time.perf_counter()
    old = read_old_run(config.from_run)
    config, method = continued_config(config, old)
    modality = get_modality(old.meta["modality"])
    new_data = _load_new_data(config, modality, old.run_dir)
    run_dir = new_run_dir(config.out)
    run_lock.hold(run_dir, "fit --from")  # owned for the process's life: a second start is refused with our PID
    if any(p.name != run_lock.LOCK for p in run_dir.iterdir()):
        raise HeadstartError(f"{run_dir} already holds files", hint="choose a new --out for the continued run")
    config = replace(config, out=str(run_dir))
    try:
        return _continue(config, method, old, new_data, modality, run_dir, started)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-written
        raise


def _continue(config, method, old: OldRun, new_data, modality, run_dir: Path, started: float) -> FitResult:
    plan = resolve_plan(config, modality)
    classes = old.classes + [c for c in new_data.classes if c not in old.classes]
    added = classes[len(old.classes):]
    # split the new data over its own classes (its indices go into the lineage), then label the
    # parts over every class
    splits = make_splits(new_data, seed=config.seed, train_per_class=config.train_per_class,
                         train_size=config.train_size, val_fraction=config.val_fraction,
                         test_fraction=config.test_fraction, max_eval=config.max_eval,
                         min_classes=1)  # one new class is enough: the old ones are there
    data = relabelled(new_data, classes)
    for name in ("train", "val", "test"):
        setattr(splits, name, relabelled(getattr(splits, name), classes))
    tasks = read_lineage(old.run_dir, old.config, old.classes)
    loader = TaskLoader(load)
    old_vals = [loader.part([task], "val", classes) for task in tasks]
    old_test = loader.part(tasks, "test", classes)
    test = splits.test.concat(old_test)
    decode_seconds = time.perf_counter() - started
    old_model = old.run.model()
    if torch.cuda.is_available():
        old_model.cuda()
    say(f"continuing {old.run_dir} ({len(old.classes)} classes) with {data.name}: "
        f"{len(added)} new class(es), method {method}, backbone {config.backbone} (the old run's)")

    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", config.to_dict())
    write_json(run_dir / "splits.json", {"seed": config.seed, **splits.indices})
    record(run_dir, "config.yaml", "splits.json")
    recorder = Recorder(run_dir, plan.strategy.name)
    recorder.resume()  # the memory an old plain run lacks is part of this run's training
    memory = load_memory(old.run_dir, data.name) or rebuild_memory(old, old_model, config)
    recorder.pause()
    job = Job(plan=plan, classifier=grown_classifier(old_model, len(classes), old.run_dir), old_model=old_model,
              old_classes=old.classes, classes=classes, new_train=splits.train, val_parts=[splits.val, *old_vals],
              memory=memory, recorder=recorder, test_size=len(test))
    collisions = _collisions(job)
    outcome = CONTINUAL_METHODS[method](job)
    model = job.classifier

    recorder.resume()
    memory_started = recorder.train_seconds
    kept = save_memory(run_dir, next_memory(job, method, config))
    memory_seconds = recorder.train_seconds - memory_started
    recorder.pause()
    write_lineage(run_dir, tasks + [task_record(config, new_data.classes, splits.indices, run_dir)])
    parts = tuple(model.prepare(p) for p in (splits.train, job.val, test))
    continual = {"source_run": str(old.run_dir), "method": method, "tasks": len(tasks) + 1, "added_classes": added,
                 "more_data_for": [c for c in new_data.classes if c in old.classes],
                 "memory": {**kept, "per_class": config.memory_per_class},
                 "memory_seconds": round(memory_seconds, 3), "collisions": collisions, "plot": PLOT_FILE}
    for finding in collisions:
        say(f"warning: {finding['message']}")
    extra = {"modality": modality.name, "words": dict(modality.words), "continual": continual}
    result = finish(plan, model, data, parts, recorder, outcome, run_dir, started, decode_seconds, extra)
    # after: the test pass finish just made (per-class recall is per-class accuracy); before: the
    # old model on the same items, as the old run recorded it
    after = {c: v["recall"] for c, v in result.summary.per_class.items() if v["support"]}
    figures = forgetting_figures(_before(old, old_model, old_test), after, old.classes, added)
    continual.update(figures, headline=headline(figures, method, added))
    forgetting_plot(figures, run_dir / PLOT_FILE)
    write_json(run_dir / SUMMARY, result.summary.to_dict())
    record(run_dir, SUMMARY)
    build_fit_report(run_dir)
    return result


def _load_new_data(config: FitConfig, modality, old_dir: Path):
    """DATA, refused before it is decoded when it is another modality than the old run's."""
    def refuse_other(found) -> None:
        if found.name != modality.name:
            raise HeadstartError(f"{config.data} is {found.name} data but --from {old_dir} is a {modality.name} run",
                                 hint=f"continue it with {modality.name} data, or fit a new run on this data")

    def decode_size(found):
        refuse_other(found)
        return found.decode_size(config.image_size, resolve_plan(config, found).spec)

    data = load_data(config.data, size=decode_size, **config.load_options())
    refuse_other(modality_of(data))
    return data.only_classes(config.classes) if config.classes else data


def grown_classifier(old_model, num_classes: int, run_dir: Path | None = None):
    """A copy of the old classifier whose head has a row for every class: the old rows as they
    were, new rows zero with the old biases' mean (a neutral start the head fit then moves)."""
    model = copy.deepcopy(old_model)
    # load_model rebuilds the architecture from random weights, then loads the run's: the record
    # should say where these weights come from, the run being continued
    if run_dir is not None:
        model.backbone.weights = f"run:{run_dir}"
    old_fc = model.head.fc
    fc = torch.nn.Linear(old_fc.in_features, num_classes).to(old_fc.weight.device)
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.fill_(float(old_fc.bias.mean()))
        fc.weight[:old_fc.out_features] = old_fc.weight
        fc.bias[:old_fc.out_features] = old_fc.bias
    model.head.fc = fc
    return model


def rebuild_memory(old: OldRun, old_model, config: FitConfig) -> Memory:
    """The memory a plain fit run never wrote, from its own training split: herding exemplars,
    and every training feature (capped) under its backbone."""
    say(f"{old.run_dir} keeps no memory (a plain fit): rebuilding it from its training data")
    reloaded = old.run.reload_data("a continued run rebuilds the memory of a plain fit from its training data")
    train = relabelled(reloaded.splits.train, old.classes)
    x = embed(old_model, train, description="features (old run's training data)")
    exemplars = train.subset(choose_exemplars(x, train.labels, config.memory_per_class))
    fx, fy = cap_features(x, train.labels, config.seed)
    return Memory(relabelled(exemplars, old.classes), fx, fy, weights_fingerprint(old_model.backbone))


def next_memory(job: Job, method: str, config: FitConfig) -> Memory:
    """What this run keeps for the next: per class, herding over its candidates (the old
    exemplars, the new training items) in the feature space the head was fitted in (for the
    fine-tuning methods the one they started from: it saves a pass after training); a class with
    no more candidates than places keeps them all. Features only while the backbone stayed frozen."""
    old = relabelled(job.memory.exemplars, job.classes)
    candidates = old.concat(job.new_train)
    keep = []
    for k in range(len(job.classes)):
        rows = np.flatnonzero(candidates.labels == k)
        if len(rows) <= config.memory_per_class:
            keep.extend(rows.tolist())
            continue
        mine_old = rows[rows < len(old)]
        x_new = job.new_features[rows[rows >= len(old)] - len(old)]
        x = np.concatenate([job.exemplar_features()[mine_old], x_new]) if len(mine_old) else x_new
        keep.extend(rows[herding(x, config.memory_per_class)].tolist())
    exemplars = relabelled(candidates.subset(np.array(sorted(keep), dtype=np.int64)), job.classes)
    if method != "head":
        return Memory(exemplars)
    fx, fy = cap_features(*job.trained_features, config.seed)
    return Memory(exemplars, fx, fy, weights_fingerprint(job.classifier.backbone))


def _collisions(job: Job) -> list[dict]:
    """Warn about same-named classes of different content (collision.py); costs one pass over
    those classes' new items and the exemplars, only when a name is shared."""
    train, old_classes = job.new_train, job.old_classes
    shared = [c for c in train.classes if c in old_classes and (train.labels == train.classes.index(c)).any()]
    if not shared:
        return []
    index = np.flatnonzero(np.isin(train.labels, [train.classes.index(c) for c in shared]))
    items = train.subset(index)
    x = embed(job.old_model, items, cache=False, description="features (same-named classes)")
    by_class = {c: x[items.labels == train.classes.index(c)] for c in shared}
    return name_collisions(job.exemplar_features(), job.memory.exemplars.labels, old_classes, by_class)


def _before(old: OldRun, old_model, old_test) -> dict[str, float]:
    """Each old class's test accuracy under the old model, on the old run's test items: as that
    run recorded it (the same model on the same items), else computed here."""
    recorded = old.summary.per_class or {}
    if all(c in recorded and "recall" in recorded[c] for c in old.classes):
        return {c: recorded[c]["recall"] for c in old.classes if recorded[c].get("support")}
    predicted = old_model.logits(old_model.prepare(old_test), description="test (old model)").argmax(1).numpy()
    return per_class_accuracy(predicted, old_test.labels, old.classes)
