"""The scikit-learn estimator over the headstart pipeline (re-exported by headstart.api)."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .config import FitConfig, build
from .config.settings import field_names
from .data.dataset import ImageData, TextData
from .errors import HeadstartError


class UnknownLabelError(HeadstartError, ValueError):
    """Labels the fitted model has never seen. A HeadstartError so the CLI reports it cleanly,
    and a ValueError because that is what scikit-learn code expects for bad label values."""


class HeadstartClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier over the headstart pipeline (clone, cross_val_score,
    GridSearchCV and Pipeline work with it).

    X is a uint8 image array (N, H, W[, C]) or a list of images, or a list of texts, with
    labels y; or a data spec (folder, CSV or built-in name) with y=None. The parameters are
    FitConfig's fields (see config.py), with `budget` as a duration ('90s', '5m', seconds),
    and `verbose` (progress and messages; silent by default, as scikit-learn estimators are).
    backbone=None picks the default for the data's modality.

    fit(X, y) learns from all of X: the caller holds out its own test data (cross_val_score,
    a train_test_split), so no internal test split is made. val_fraction of X is held out only
    while a choice needs it (the probe's C, TF-IDF's n-grams, early stopping); with --refit
    (auto: the probe and tfidf) the delivered model is then refit on all of X. The run's own
    "test" figures are measured on that validation part (summary_["test_part"] says so). A data
    spec is split as `headstart fit` splits it, its test part held out.

    Each fit starts from scratch. It writes a run directory only when asked: `out` (a fit into
    an `out` that already holds a run is an error, so leave out=None for cross-validation and
    grid search); with out=None run_dir_ is None and nothing is left on disk.

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
                 text_column: str | None = None, label_column: str | None = None, image_column: str | None = None,
                 explain_examples: int = 4, explain_method: str = "auto", track: str | None = None,
                 track_uri: str | None = None, track_experiment: str = "headstart",
                 balance: str = "none", synthesize: str | None = None, extract_engine: str = "auto",
                 tfidf_analyzer: str = "auto", refit: str = "auto", out: str | None = None,
                 verbose: bool = False):
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
        self.refit = refit
        self.text_column = text_column
        self.label_column = label_column
        self.image_column = image_column
        self.explain_examples = explain_examples
        self.balance = balance
        self.synthesize = synthesize
        self.explain_method = explain_method
        self.track = track
        self.track_uri = track_uri
        self.track_experiment = track_experiment
        self.out = out
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Inputs are images and texts, not feature tables: scikit-learn's generic checks feed
        # 2-D float arrays, which this estimator rightly rejects, so it opts out of them.
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True  # grey images (N, H, W); colour ones are 4-D
        tags.input_tags.string = True  # a list of texts
        return tags

    def _config(self, data: str) -> FitConfig:
        """The parameters read as `fit`'s declared settings read them (budget '5m', synthesize 50)."""
        names = field_names(FitConfig)
        given = {names[k]: v for k, v in self.get_params(deep=False).items() if k not in ESTIMATOR_ONLY}
        return build(FitConfig, {"data": data, **given}, command="fit")

    def fit(self, X, y=None) -> "HeadstartClassifier":
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
        config = self._config(str(X) if spec else data.name)
        with _quiet(not self.verbose), _run_folder(config) as (config, kept):
            result, history = _fit_all(config, None if spec else data)
        self.classes_ = np.array(result.classes) if spec else classes  # the caller's label values
        self.model_ = result.classifier
        self.run_dir_ = Path(result.run_dir).absolute() if kept else None
        self.summary_ = result.summary
        self.history_ = history
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


# parameters of the estimator alone, not of FitConfig
ESTIMATOR_ONLY = ("verbose",)
NO_TEST_PART = ("none: the caller holds out its own test data; the run's test figures are measured on the "
                "validation part, which a refit model also learnt from")


def _fit_all(config: FitConfig, data):
    """Fit on all of `data` (arrays): headstart's split with its test part given to training, so
    only validation is held out (and refit on, where --refit does). A data spec (data None) is
    split as `headstart fit` splits it. Returns (FitResult, the run's metrics rows)."""
    from . import run_lock
    from .choose.auto_fit import fit_auto  # pipeline.fit, once what is `auto` is chosen
    from .records import read_metrics

    splits = None if data is None else _without_test(config, data)
    with run_lock.command_scope():  # the run is let go once fitted: other processes may read it
        result = fit_auto(config, data=data, splits=splits)
    if splits is not None:
        result.summary.add({"test_part": NO_TEST_PART})
    return result, read_metrics(result.run_dir)


def _without_test(config: FitConfig, data):
    """The seed's split with no test part: what headstart would hold out for test joins the
    training part (unless train_per_class or train_size cap it), and the validation part stands
    in for test, as the pipeline's closing evaluation needs one."""
    from .data import Splits
    from .pipeline import split

    drawn = split(config, data)
    train = drawn.indices["train"]
    if config.train_per_class is None and config.train_size is None:
        train = sorted(train + drawn.indices["test"])
    indices = {"train": train, "val": drawn.indices["val"], "test": drawn.indices["val"]}
    return Splits(**{part: data.subset(np.array(idx, dtype=np.int64)) for part, idx in indices.items()},
                  indices=indices, seed=drawn.seed)


@contextmanager
def _quiet(silent: bool):
    """No progress bars nor messages while a silent fit runs (log.py's one quiet rule)."""
    previous = os.environ.get("HEADSTART_QUIET")
    if silent:
        os.environ["HEADSTART_QUIET"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HEADSTART_QUIET", None)
        else:
            os.environ["HEADSTART_QUIET"] = previous


@contextmanager
def _run_folder(config: FitConfig):
    """(config, kept): the run writes into `out` when one is given (kept), else into a temporary
    folder removed afterwards, with no explanations to render (nobody will read its report)."""
    if config.out:
        yield config, True
        return
    folder = tempfile.mkdtemp(prefix="headstart-estimator-")
    try:
        yield replace(config, out=str(Path(folder) / "run"), explain_examples=0), False
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
