"""The Python API: functions that mirror the CLI verbs, and a scikit-learn estimator."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .config import FitConfig, parse_duration, parse_synthesize
from .data.dataset import ImageData, TextData
from .errors import HeadstartError


def fit(data: str | None = None, *, config: str | Path | None = None, out: str | None = None,
        budget: str | float | None = None, **settings):
    """`headstart fit` from Python: returns a FitResult (run_dir, classifier, classes, summary).
    `config`: a YAML of fit settings (tune's best.yaml, a run's config.yaml) as the defaults."""
    from .pipeline import fit as _fit

    timed = {} if budget is None else {"budget_seconds": parse_duration(budget)}
    return _fit(fit_config(data, config=config, out=out, **timed, **settings))


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


class UnknownLabelError(HeadstartError, ValueError):
    """Labels the fitted model has never seen. A HeadstartError so the CLI reports it cleanly,
    and a ValueError because that is what scikit-learn code expects for bad label values."""


class HeadstartClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier over the headstart pipeline (clone, cross_val_score,
    GridSearchCV and Pipeline work with it).

    X is a uint8 image array (N, H, W[, C]) or a list of images, or a list of texts, with
    labels y; or a data spec (folder, CSV or built-in name) with y=None. The parameters are
    FitConfig's fields (see config.py), with `budget` as a duration ('90s', '5m', seconds).
    backbone=None picks the default for the data's modality. fit holds out val_fraction and
    test_fraction of X for early stopping and the run's report, as `headstart fit` does.

    Each fit starts from scratch and writes a run directory: `out`, or a fresh runs/fit-*
    folder when out is None. A fit into an `out` that already holds a run is an error, so
    leave out=None for cross-validation and grid search (every fit needs its own folder).

    Learned state: classes_ (the caller's own label values), model_, run_dir_, summary_,
    history_ (the run's metrics rows). There is no n_features_in_: inputs are images or
    texts, not feature columns.
    """

    # __init__ only stores its arguments (scikit-learn's contract: clone and set_params rely
    # on it); the defaults are FitConfig's own, which test_api checks.
    def __init__(self, backbone: str | None = None, strategy: str = "probe", *,
                 weights: str | None = None, pretrained: bool = True, image_size: int | None = None,
                 max_length: int | None = None, pooling: str | None = None, seed: int = 0,
                 train_per_class: int | None = None, train_size: int | None = None,
                 val_fraction: float = 0.15, test_fraction: float = 0.15, max_eval: int = 1000,
                 epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                 optimizer: str = "adamw", schedule: str = "onecycle", weight_decay: float = 0.01,
                 augment: str | None = None, layer_decay: float | None = None,
                 freeze_depth: int | None = None, patience: int | None = None,
                 budget: str | float | None = None, evals_per_epoch: int = 1,
                 mixed_precision: str = "auto", strict: bool = False, modality: str = "auto",
                 text_column: str | None = None, label_column: str | None = None,
                 explain_examples: int = 4, explain_method: str = "auto", track: str | None = None,
                 track_uri: str | None = None, track_experiment: str = "headstart",
                 balance: str = "none", synthesize: str | None = None, extract_engine: str = "auto",
                 tfidf_analyzer: str = "auto", out: str | None = None):
        self.backbone = backbone
        self.strategy = strategy
        self.weights = weights
        self.pretrained = pretrained
        self.image_size = image_size
        self.max_length = max_length
        self.pooling = pooling
        self.seed = seed
        self.train_per_class = train_per_class
        self.train_size = train_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.max_eval = max_eval
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.schedule = schedule
        self.weight_decay = weight_decay
        self.augment = augment
        self.layer_decay = layer_decay
        self.freeze_depth = freeze_depth
        self.patience = patience
        self.budget = budget
        self.evals_per_epoch = evals_per_epoch
        self.mixed_precision = mixed_precision
        self.strict = strict
        self.modality = modality
        self.extract_engine = extract_engine
        self.tfidf_analyzer = tfidf_analyzer
        self.text_column = text_column
        self.label_column = label_column
        self.explain_examples = explain_examples
        self.balance = balance
        self.synthesize = synthesize
        self.explain_method = explain_method
        self.track = track
        self.track_uri = track_uri
        self.track_experiment = track_experiment
        self.out = out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Inputs are images and texts, not feature tables: scikit-learn's generic checks feed
        # 2-D float arrays, which this estimator rightly rejects, so it opts out of them.
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True  # grey images (N, H, W); colour ones are 4-D
        tags.input_tags.string = True  # a list of texts
        return tags

    def _config(self, data: str) -> FitConfig:
        params = self.get_params(deep=False)
        budget = params.pop("budget")
        params["synthesize"] = parse_synthesize(params["synthesize"])  # 50, "50" or "auto"
        return FitConfig(data=data, budget_seconds=parse_duration(budget), **params)

    def fit(self, X, y=None) -> "HeadstartClassifier":
        from .pipeline import fit as _fit
        from .records import read_metrics

        spec = isinstance(X, (str, Path))
        if spec and y is not None:
            raise HeadstartError("a data spec carries its own labels, but y was given too",
                                 hint="pass y=None with a folder, CSV or dataset name")
        if not spec:
            classes = _check_labels(y, len(X))
            texts = _texts(X)
            labels = _encode(y, classes)
            data = _as_text_data(texts, labels, classes) if texts is not None else \
                ImageData(images=_images(X), labels=labels, classes=[str(c) for c in classes], name="array")
        # A refit starts from nothing: a failed one must not leave the previous model behind
        # looking fitted, and no learned attribute may survive from an earlier fit.
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)
        result = _fit(self._config(str(X) if spec else data.name), data=None if spec else data)
        self.classes_ = np.array(result.classes) if spec else classes  # the caller's label values
        self.model_ = result.classifier
        self.run_dir_ = Path(result.run_dir).absolute()  # runs/fit-* is relative to the cwd at fit time
        self.summary_ = result.summary
        self.history_ = read_metrics(result.run_dir)
        return self

    def predict_proba(self, X) -> np.ndarray:
        import torch

        check_is_fitted(self, "model_")  # NotFittedError before any input check, as sklearn expects
        return torch.softmax(_logits(self.model_, X).float(), 1).numpy()

    def predict(self, X) -> np.ndarray:
        best = self.predict_proba(X).argmax(1)  # first: it raises NotFittedError before classes_ is read
        return self.classes_[best]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy. A label the model was not fitted on raises UnknownLabelError: counting it
        as merely wrong would hide a mix-up of label sets (e.g. names against indices)."""
        check_is_fitted(self, "model_")
        _encode(y, self.classes_)
        return super().score(X, y, sample_weight=sample_weight)


def _logits(model, X):
    """Logits (N, K) of a fitted model for images or texts, through the classifier protocol
    (heads.py): the one place in this module that talks to the model."""
    texts = _texts(X)
    if texts is not None:  # unlabelled data forms: what predict reads
        data = TextData(texts=texts, labels=None, classes=[], name="texts")
    else:
        data = ImageData(images=_images(X), labels=None, classes=[], name="array")
    from .modalities import modality_of

    described = model.describe()
    if not modality_of(data).owns(described):
        raise HeadstartError(f"this model was fitted on {described.get('modality')} data but was given "
                             f"{data.modality} data",
                             hint="predict with the same kind of input the model was fitted on")
    return model.logits(model.prepare(data))  # resized or tokenised as in training


def _texts(X) -> list[str] | None:
    """X as a list of texts, or None when X is not texts (a list, tuple or 1-D array of str)."""
    if isinstance(X, (str, bytes)) or not (isinstance(X, (list, tuple)) or getattr(X, "ndim", None) == 1):
        return None
    items = list(X)
    return items if items and all(isinstance(x, str) for x in items) else None


def _images(X) -> np.ndarray:
    if isinstance(X, (str, Path)):
        raise HeadstartError("predict takes images or texts, not a path",
                             hint="for files use headstart.predict(clf.run_dir_, paths)")
    images = np.asarray(X)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) == 0:
        raise HeadstartError(f"expected uint8 images shaped (N, H, W[, C]) or a list of texts, "
                             f"got {images.dtype} {images.shape}",
                             hint="pass pixel arrays in 0..255 as uint8, texts as a list of str, "
                                  "or a folder/CSV path to fit")
    return images


def _check_labels(y, n: int) -> np.ndarray:
    """The sorted distinct labels of y, after checking y is one label per example."""
    if y is None:
        raise HeadstartError("images and texts need labels y", hint="call fit(X, y)")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise HeadstartError(f"expected one label per example ({n}), got labels shaped {y.shape}",
                             hint="pass y as a 1-D list or array")
    classes = np.unique(y)
    if len(classes) < 2:
        raise HeadstartError(f"a classifier needs at least 2 classes, y has {len(classes)}")
    return classes


def _encode(y, classes) -> np.ndarray:
    """Labels as indices into classes. A label not in classes is an error, never class 0."""
    index = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
    values = np.asarray(y).ravel().tolist()
    unknown = sorted({repr(v) for v in values if v not in index})
    if unknown:
        raise UnknownLabelError(f"{len(unknown)} label(s) the model was not fitted on: "
                                f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}",
                                hint=f"the fitted labels are {', '.join(map(repr, list(index)[:10]))}")
    return np.array([index[v] for v in values], dtype=np.int64)


def _as_text_data(texts: list[str], labels: np.ndarray, classes: np.ndarray) -> TextData:
    keep = [i for i, text in enumerate(texts) if text.strip()]  # empty texts: counted, not trained on
    skipped = [(f"X[{i}]", "empty text") for i in range(len(texts)) if not texts[i].strip()]
    return TextData(texts=[texts[i] for i in keep], labels=labels[keep], classes=[str(c) for c in classes],
                    name="texts", skipped=skipped)
