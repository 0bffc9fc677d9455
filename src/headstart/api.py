"""The Python API: functions that mirror the CLI verbs, and a scikit-learn estimator."""
from __future__ import annotations

from pathlib import Path

from .config import FitConfig, PretrainConfig, parse_duration
from .errors import HeadstartError
from .estimator import HeadstartClassifier, UnknownLabelError  # noqa: F401  (the API's estimator)


def fit(data: str | None = None, *, config: str | Path | None = None, out: str | None = None,
        budget: str | float | None = None, **settings):
    """`headstart fit` from Python: returns a FitResult (run_dir, classifier, classes, summary).
    `config`: a YAML of fit settings (tune's best.yaml, a run's config.yaml) as the defaults."""
    timed = {} if budget is None else {"budget_seconds": parse_duration(budget)}
    return run_fit(fit_config(data, config=config, out=out, **timed, **settings))


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
    if chooses(config):  # --backbone auto / --strategy auto: chosen above the pipeline, on the fit's split
        return fit_auto(config)
    from .pipeline import fit as _fit
    return _fit(config)


def pretrain(pool: str, *, name: str, method: str = "simclr", budget: str | float | None = None, **settings) -> dict:
    """`headstart pretrain` from Python: self-supervised pre-training on unlabelled data (settings:
    PretrainConfig's fields), registered in the local zoo as `name`. Returns the run's summary,
    with its "run_dir" and the zoo "entry"."""
    from .adapt.pretrain import run_pretrain

    timed = {} if budget is None else {"budget_seconds": parse_duration(budget)}
    return run_pretrain(PretrainConfig(pool=pool, name=name, method=method, **timed, **settings))


def fit_config(data: str | None = None, *, config: str | Path | None = None, **settings) -> FitConfig:
    """A FitConfig: the fields a YAML file holds (`config`: tune's best.yaml, any run's config.yaml)
    as the defaults, `data` and `settings` winning. A file's out and resume are dropped (they name
    the run it came from); text values are read as the command line reads them ('5m')."""
    from dataclasses import fields

    import yaml

    declared = {f.name: f for f in fields(FitConfig)}
    values = {}
    if config is not None:
        path = Path(config)
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
        if not isinstance(loaded, dict):
            raise HeadstartError(f"{path} is not a YAML file of fit settings",
                                 hint="give tune's RUN/best.yaml or a run's config.yaml")
        unknown = sorted(set(loaded) - set(declared))
        if unknown:
            raise HeadstartError(f"{path} holds setting(s) fit does not know: {', '.join(unknown)}",
                                 hint="remove them; `headstart fit --help` lists the settings")
        values = {k: v for k, v in loaded.items() if k not in ("out", "resume")}
    for name, value in settings.items():
        parse = declared[name].metadata.get("parse") if name in declared else None
        values[name] = parse(value) if parse is not None and isinstance(value, str) else value
    if data is not None:
        values["data"] = data
    if not values.get("data"):
        raise HeadstartError("fit needs DATA", hint="give DATA, or --config FILE naming it (best.yaml does)")
    return FitConfig(**values)


def tune(data: str, *, trials: int = 20, budget: str | float | None = None, storage: str | None = None,
         workers: int = 1, out: str | None = None, study: str | None = None, trial_budget: str | float | None = None,
         strategies=None, candidates=None, seed: int = 0, **settings) -> dict:
    """`headstart tune` from Python: an Optuna study over strategy, backbone and hyper-parameters
    (settings: the fit settings every trial shares, e.g. train_per_class). Writes RUN/tune.json,
    RUN/best.yaml and RUN/report.html; returns tune.json's content with the report's path."""
    from .choose.tune import TuneConfig, run_tune

    names = strategies.split(",") if isinstance(strategies, str) else strategies
    return run_tune(TuneConfig(
        data=data, trials=trials, budget_seconds=parse_duration(budget), storage=storage, workers=workers, out=out,
        study=study, trial_budget_seconds=parse_duration(trial_budget), seed=seed,
        strategies=tuple(n.strip() for n in names if n.strip()) if names else None,
        candidates=",".join(candidates) if isinstance(candidates, (list, tuple)) else candidates,
        fit=fit_config(data, **settings)))


def predict(run_dir: str | Path, inputs: list[str]):
    """`headstart predict` from Python: a list of Prediction(path, label, probability, error).
    Inputs are image paths for an image run, the texts themselves for a text run."""
    from .prediction import predict_inputs

    return predict_inputs(run_dir, list(inputs))


def select(run_dir: str | Path, pool: str, *, k: int = 50, method: str = "margin", out: str | Path | None = None,
           seed: int = 0) -> dict:
    """`headstart select` from Python: rank an unlabelled pool with a finished run and write
    the k items to label next as a CSV (default RUN/select-METHOD.csv). Returns what was done,
    with the rows."""
    from .label.select import select as _select
    from .model_io import load_model
    from .modalities import load_pool
    from .pipeline import training_part

    run_dir = Path(run_dir)
    model, meta = load_model(run_dir)
    try:
        labelled = training_part(run_dir)
    except (HeadstartError, OSError) as e:
        raise HeadstartError(f"select reads the run's training data, to skip what is labelled already and "
                             f"cover what is not; it could not be loaded: {e}",
                             hint="run select where the run's data is (its config.yaml names it)") from e
    items = load_pool(pool, modality=meta["modality"], size=labelled.decoded_size)
    out = Path(out) if out else run_dir / f"select-{method}.csv"
    return _select(model, labelled, items, k=k, method=method, out=out, seed=seed)


def simulate_al(data: str, *, start: int = 20, k: int = 20, rounds: int = 10, seeds: int = 3,
                methods: list[str] | None = None, pool_size: int | None = 2000, max_eval: int = 1000,
                out: str | None = None, backbone: str | None = None, image_size: int | None = None,
                **load_settings) -> dict:
    """`headstart simulate-al` from Python: the active-learning loop on `data` with its labels
    hidden, every method beside random; writes RUN/simulate_al.json and RUN/report.html."""
    from .label.study import run_study
    from .modalities import modality_of
    from .pipeline import build, load, resolve_plan

    config = FitConfig(data=data, strategy="probe", backbone=backbone, image_size=image_size, **load_settings)
    labelled = load(config)
    plan = resolve_plan(config, modality_of(labelled))
    settings = {"data": data, "backbone": plan.config.backbone, "image_size": image_size, "start": start, "k": k,
                "rounds": rounds, "seeds": seeds, "pool_size": pool_size, "max_eval": max_eval}
    return run_study(labelled, lambda: build(plan, labelled), methods=methods, start=start, k=k, rounds=rounds,
                     seeds=seeds, pool_size=pool_size, max_eval=max_eval, out=out, settings=settings)


def prune(run_dir: str | Path, *, sparsity: float = 0.3, budget: str | float | None = None, epochs: int | None = None,
          out: str | Path | None = None) -> dict:
    """`headstart prune` from Python: remove `sparsity` of each layer's channels from a fitted CNN
    image run, fine-tune briefly (within `budget`, e.g. '2m'), and write the pruned model as a new
    run (`out`, default RUN-prunedNN beside RUN). Returns its summary, with the before/after
    figures under "pruning" and the new folder under "run_dir"."""
    from .deploy.prune import prune_run

    return prune_run(run_dir, sparsity=sparsity, budget_seconds=parse_duration(budget), epochs=epochs, out=out)


def export(run_dir: str | Path, *, format: str = "onnx", quantize: str | None = None, out: str | Path | None = None,
           tolerance: float = 1.0, force: bool = False) -> dict:
    """`headstart export` from Python: write a finished run as a model file to deploy (default
    RUN/model.onnx; RUN/model.int8.onnx or RUN/model.fp16.onnx with `quantize`), checked
    against the run's own model on its test split before it is written. A quantized model
    that loses more than `tolerance` accuracy points is refused unless `force`. Returns what
    was written and measured (also in `<file>.json` beside the model)."""
    from .deploy.registry import get_exporter

    return get_exporter(format).export(run_dir, quantize=quantize, out=out, tolerance=tolerance, force=force)


def rank(data: str, *, candidates=None, scores=None, **settings) -> dict:
    """`headstart rank` from Python: every candidate backbone (BACKBONE[:SIZE], comma-separated
    or a list; default: the modality's) embeds the training split `fit` would draw with the same
    settings, and every transferability score runs on the features. Writes RUN/rank.json and
    RUN/report.html; returns the ranking, best first, with its "recommendation"."""
    from .choose.rank import run_rank

    scores = [s.strip() for s in scores.split(",") if s.strip()] if isinstance(scores, str) else scores
    return run_rank(data, candidates=candidates, scores=scores or None, **settings)


def zoo_add(run_dir: str | Path, name: str, force: bool = False) -> dict:
    """`headstart zoo add` from Python: register a finished run's backbone (without its head)
    in the local zoo ($HEADSTART_HOME/zoo/NAME, default ~/.headstart), so that `name` is a
    backbone like any other (`fit(..., backbone=name)`). Refuses unfinished, foreign, standalone
    and pruned runs, and names already taken, unless `force` replaces a local entry. Returns
    the entry's spec.json, with its "folder"."""
    from .zoo.local import add_entry

    return add_entry(run_dir, name, force=force)


def zoo_remove(name: str) -> dict:
    """`headstart zoo remove` from Python: delete the local zoo entry `name`; returns its spec.
    Runs trained on it keep working: they rebuild from the source architecture."""
    from .zoo.local import remove_entry

    return remove_entry(name)
