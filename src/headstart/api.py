"""The Python API: one function per command, and a scikit-learn estimator.

Each function's keywords are its command's declared settings (config/), with their defaults
and types, read by the same parse as the command line (`budget="2m"` or `budget=120`); the
command line is a thin layer over these functions (cli.py). `fn.with_config(config)` calls
one with a config already built.
"""
from __future__ import annotations

import functools
from pathlib import Path

from .config import (AuditConfig, CompareConfig, ExplainConfig, ExportConfig, FitConfig, PredictConfig,
                     PretrainConfig, PruneConfig, RankConfig, SelectConfig, ServeConfig, SimulateALConfig, TrackConfig,
                     TuneConfig, ZooAddConfig, ZooRemoveConfig, build, signature)
from . import run_lock
from .config.settings import field_names
from .errors import HeadstartError

_ESTIMATOR = ("HeadstartClassifier", "UnknownLabelError")  # scikit-learn's, loaded on first use (estimator.py)


def __getattr__(name: str):
    if name in _ESTIMATOR:
        from . import estimator
        return getattr(estimator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _declared(cls, *, command: str, defaults_file: bool = False):
    """Decorator: `fn(config)` becomes `fn(**settings)`, its signature `cls`'s declared settings
    (`config=FILE`: a YAML of them as the defaults, where `defaults_file`)."""

    def wrap(fn):
        sig, names = signature(cls, defaults_file=defaults_file), field_names(cls)
        fn = _releasing_its_runs(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            given = sig.bind(*args, **kwargs).arguments
            file = given.pop("config", None)
            if file is not None:  # None is "not given": the file's value stands
                given = {k: v for k, v in given.items() if v is not None}
            return fn(build(cls, {names[k]: v for k, v in given.items()}, command=command, defaults_file=file))

        call.__signature__ = sig
        call.with_config = fn
        return call

    return wrap


def _releasing_its_runs(fn):
    """fn, letting go of the runs it took when it returns or raises (run_lock.command_scope)."""

    @functools.wraps(fn)
    def scoped(*args, **kwargs):
        with run_lock.command_scope():
            return fn(*args, **kwargs)

    return scoped


@_declared(FitConfig, command="fit", defaults_file=True)
def fit(config: FitConfig):
    """`headstart fit` from Python: returns a FitResult (run_dir, classifier, classes, summary).
    `config`: a YAML of fit settings (tune's best.yaml, a run's config.yaml) as the defaults."""
    return run_fit(config)


@_releasing_its_runs
def run_fit(config: FitConfig):
    """A fit, or one of its keep-learning forms: --from RUN continues a finished run on new data
    (adapt/continual.py); --adapt POOL aligns it to an unlabelled target domain (adapt/domain.py).
    Each returns a FitResult and writes a run directory of the same contract."""
    if config.from_run and config.adapt:
        raise HeadstartError("--from and --adapt cannot be combined in one fit",
                             hint="continue the run first (--from), then adapt the new run (--adapt), or the reverse")
    if config.from_run:
        from .adapt.continual import fit_continued
        return fit_continued(config)
    if config.adapt:
        from .adapt.domain import fit_adapted
        return fit_adapted(config)
    from .choose.auto_fit import chooses, fit_auto
    from .choose.image_size import load_with_chosen_size
    config, data = load_with_chosen_size(config)  # --image-size auto: measured on the training split first
    if chooses(config):  # --backbone auto / --strategy auto: chosen above the pipeline, on the fit's split
        return fit_auto(config, data=data)
    from .pipeline import fit as _fit
    return _fit(config, data=data)


@_declared(PretrainConfig, command="pretrain")
def pretrain(config: PretrainConfig) -> dict:
    """`headstart pretrain` from Python: self-supervised pre-training on unlabelled data,
    registered in the local zoo as `name`. Returns the run's summary, with its "run_dir" and
    the zoo "entry"."""
    from .adapt.pretrain import run_pretrain

    return run_pretrain(config)


@_declared(CompareConfig, command="compare")
def compare(config: CompareConfig) -> dict:
    """`headstart compare` from Python: transfer arms against a from-scratch arm on one split;
    writes RUN/comparison.json and RUN/report.html and returns the comparison."""
    from .compare import run_compare

    return run_compare(config)


@_declared(TuneConfig, command="tune")
def tune(config: TuneConfig) -> dict:
    """`headstart tune` from Python: an Optuna study over strategy, backbone and hyper-parameters
    (the other keywords: the fit settings every trial shares, e.g. train_per_class). Writes
    RUN/tune.json, RUN/best.yaml and RUN/report.html; returns tune.json's content with the
    report's path."""
    from .choose.tune import run_tune

    return run_tune(config)


@_declared(PredictConfig, command="predict")
def predict(config: PredictConfig):
    """`headstart predict` from Python: a list of Prediction(path, label, probability, error).
    Inputs are image paths for an image run, the texts themselves for a text run; `csv` also
    writes them to that file. engine="onnxruntime" runs the exported model without PyTorch."""
    if config.engine == "onnxruntime":  # an exported model, without importing PyTorch
        from .deploy.onnx_predict import predict_inputs
    else:
        from .prediction import predict_inputs

    results = predict_inputs(config.run, list(config.inputs), text_file=config.file)
    if config.csv:
        _write_predictions(results, Path(config.csv))
    return results


def _write_predictions(results, path: Path) -> None:
    import csv
    import io

    from .files import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([results[0].kind if results else "path", "label", "probability", "error"])
    for r in results:
        writer.writerow([r.path, r.label or "", "" if r.probability is None else f"{r.probability:.6f}", r.error or ""])
    atomic_write_text(path, buffer.getvalue())


@_declared(ExplainConfig, command="explain")
def explain(config: ExplainConfig) -> tuple[Path, dict]:
    """`headstart explain` from Python: why a finished run labels the inputs as it does; writes
    the overlays and report.html under `out` and returns (that folder, what was explained)."""
    from .explain import explain_inputs

    return explain_inputs(config.run, list(config.inputs), text_file=config.file, method=config.method,
                          out=config.out, true=list(config.true) if config.true else None)


@_declared(SelectConfig, command="select")
def select(config: SelectConfig) -> dict:
    """`headstart select` from Python: rank an unlabelled pool with a finished run and write
    the k items to label next (default RUN/select-METHOD.csv; with format="label-studio", Label
    Studio tasks with the model's guess as a prediction, and the labelling config beside them).
    Returns what was done, with the rows."""
    from . import pipeline  # noqa: F401  (registers how Run.reload_data reloads a run's data)
    from .label.select import select_from_run
    from .run import Run

    return select_from_run(Run.open(config.run).require_finished(), config.pool, k=config.k, method=config.method,
                           out=config.out, seed=config.seed, format=config.format)


@_declared(AuditConfig, command="audit")
def audit(config: AuditConfig) -> dict:
    """`headstart audit` from Python: likely label errors (cleanlab on out-of-fold probabilities
    of the probe over cached features), near-duplicates and train/test leaks, and outliers, in
    a dataset or a finished run's data. Writes RUN/audit.csv (its exclude column feeds
    `fit --exclude`), audit.json and report.html; returns audit.json's content with the paths."""
    from . import pipeline  # noqa: F401  (registers how Run.reload_data reloads a run's data)
    from .label.audit import audit as _audit

    return _audit(config.data, backbone=config.backbone, image_size=config.image_size, folds=config.folds,
                  k_neighbours=config.k_neighbours, duplicate_similarity=config.duplicate_similarity, out=config.out,
                  seed=config.seed, train_per_class=config.train_per_class, train_size=config.train_size,
                  max_eval=config.max_eval, **config.fit.load_options())


@_declared(ServeConfig, command="serve")
def serve(config: ServeConfig) -> int:
    """`headstart serve` from Python: the model behind HTTP (POST /predict, /explain, GET /health,
    /metadata, the page at /), until SIGTERM or Ctrl-C. The default engine, ONNX Runtime over the
    exported model, never imports PyTorch. Returns 0 after a graceful shutdown."""
    from .deploy.serve import serve as _serve
    from .deploy.serve_inputs import ServeLimits

    limits = ServeLimits(max_request_mb=config.max_request_mb, max_items=config.max_items,
                         max_pixels=config.max_pixels, max_text_chars=config.max_text_chars)
    return _serve(config.run, host=config.host, port=config.port, engine=config.engine, api_key=config.api_key,
                  limits=limits, max_batch=config.max_batch, batch_window_ms=config.batch_window_ms,
                  threads=config.threads, access_log=config.access_log)


@_declared(SimulateALConfig, command="simulate-al")
def simulate_al(config: SimulateALConfig) -> dict:
    """`headstart simulate-al` from Python: the active-learning loop on `data` with its labels
    hidden, every method beside random; writes RUN/simulate_al.json and RUN/report.html."""
    from .label.study import run_study
    from .modalities import modality_of
    from .pipeline import build as build_model, load, resolve_plan

    fit_config = FitConfig(data=config.data, strategy="probe", backbone=config.backbone, image_size=config.image_size,
                           **config.fit.load_options())
    labelled = load(fit_config)
    plan = resolve_plan(fit_config, modality_of(labelled))
    pool_size = config.pool_size or None  # 0: the whole training part
    settings = {"data": config.data, "backbone": plan.config.backbone, "image_size": config.image_size,
                "start": config.start, "k": config.k, "rounds": config.rounds, "seeds": config.seeds,
                "pool_size": pool_size, "max_eval": config.max_eval}
    return run_study(labelled, lambda: build_model(plan, labelled), methods=list(config.methods or ()) or None,
                     start=config.start, k=config.k, rounds=config.rounds, seeds=config.seeds, pool_size=pool_size,
                     max_eval=config.max_eval, out=config.out, settings=settings)


@_declared(PruneConfig, command="prune")
def prune(config: PruneConfig) -> dict:
    """`headstart prune` from Python: remove `sparsity` of each layer's channels from a fitted CNN
    image run, fine-tune briefly (within `budget`, e.g. '2m'), and write the pruned model as a new
    run (`out`, default RUN-prunedNN beside RUN). Returns its summary, with the before/after
    figures under "pruning" and the new folder under "run_dir"."""
    from .deploy.prune import prune_run

    return prune_run(config.run, sparsity=config.sparsity, budget_seconds=config.budget_seconds,
                     epochs=config.epochs, out=config.out)


@_declared(ExportConfig, command="export")
def export(config: ExportConfig) -> dict:
    """`headstart export` from Python: write a finished run as a model file to deploy (default
    RUN/model.onnx; RUN/model.int8.onnx or RUN/model.fp16.onnx with `quantize`), checked
    against the run's own model on its test split before it is written. A quantized model
    that loses more than `tolerance` accuracy points is refused unless `force`. Returns what
    was written and measured (also in `<file>.json` beside the model)."""
    from .deploy.registry import get_exporter

    return get_exporter(config.format).export(config.run, quantize=config.quantize, out=config.out,
                                              tolerance=config.tolerance, force=config.force)


@_declared(RankConfig, command="rank")
def rank(config: RankConfig) -> dict:
    """`headstart rank` from Python: every candidate backbone (BACKBONE[:SIZE], comma-separated
    or a list; default: the modality's) embeds the training split `fit` would draw with the same
    settings, and every transferability score runs on the features. Writes RUN/rank.json and
    RUN/report.html; returns the ranking, best first, with its "recommendation"."""
    from .choose.rank import run_rank

    return run_rank(config.data, candidates=config.candidates, scores=list(config.scores or ()) or None,
                    **config.rank_settings())


@_declared(TrackConfig, command="track")
def track(config: TrackConfig) -> list[dict]:
    """`headstart track` from Python: log a finished fit or compare run to TensorBoard or MLflow."""
    from .tracking import track_existing

    return track_existing(config.run, config.to, uri=config.uri, experiment=config.experiment)


@_declared(ZooAddConfig, command="zoo add")
def zoo_add(config: ZooAddConfig) -> dict:
    """`headstart zoo add` from Python: register a finished run's backbone (without its head)
    in the local zoo ($HEADSTART_HOME/zoo/NAME, default ~/.headstart), so that `name` is a
    backbone like any other (`fit(..., backbone=name)`). Refuses unfinished, foreign, standalone
    and pruned runs, and names already taken, unless `force` replaces a local entry. Returns
    the entry's spec.json, with its "folder"."""
    from . import modalities  # noqa: F401  (each modality registers how its backbones are rebuilt)
    from .zoo.local import add_entry

    return add_entry(config.run, config.name, force=config.force)


@_declared(ZooRemoveConfig, command="zoo remove")
def zoo_remove(config: ZooRemoveConfig) -> dict:
    """`headstart zoo remove` from Python: delete the local zoo entry `name`; returns its spec.
    Runs trained on it keep working: they rebuild from the source architecture."""
    from .zoo.local import remove_entry

    return remove_entry(config.name)
