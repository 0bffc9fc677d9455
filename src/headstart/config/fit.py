"""The settings of a fit, and of the commands that run fits (compare, tune, rank): each
declared once, with its type, default, help and choices (named by their registry). The
resolved FitConfig is saved with every run as config.yaml.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ..errors import HeadstartError
from .settings import (NEW_RUN_HELP, TRACK_URI_HELP, budget_setting, data_setting, image_size_setting, max_eval_setting, nested, out_setting,
                       parse_names, setting)


def parse_synthesize(text) -> str | None:
    """'auto', a count per minority class ('50'), or off ('0', 'none', None)."""
    if text is None or str(text).strip().lower() in ("", "0", "none", "off"):
        return None
    text = str(text).strip().lower()
    if text == "auto" or (text.isdigit() and int(text) > 0):
        return text
    raise HeadstartError(f"cannot read --synthesize '{text}'",
                         hint="give a count of synthetic samples per minority class (e.g. 50), or auto")


def parse_label_fractions(text) -> tuple[float, ...] | None:
    """'0.01,0.05,0.1,0.25,1' (shares of the training labels) or '5,10,20' (labels per class):
    values in (0, 1] are shares, whole numbers above 1 are per-class counts."""
    if text is None or text == "":
        return None
    if isinstance(text, (tuple, list)):
        values = [float(v) for v in text]
    else:
        try:
            values = [float(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            raise HeadstartError(f"cannot read --label-fractions '{text}'",
                                 hint="e.g. 0.01,0.05,0.1,0.25,1 (shares) or 5,10,20 (labels per class)") from None
    shares = [v for v in values if 0 < v <= 1]
    counts = [v for v in values if v > 1 and v == int(v)]
    if not values or len(shares) + len(counts) != len(values) or (shares and counts):
        raise HeadstartError(f"--label-fractions takes shares in (0, 1] or whole per-class counts above 1, "
                             f"not both: got '{text}'", hint="e.g. 0.01,0.05,0.1,0.25,1 or 5,10,20")
    return tuple(sorted(set(values)))


def parse_class_list(text) -> tuple[str, ...] | None:
    """'0,1' or 'T-shirt/top,Trouser' -> a tuple of class names (None: every class)."""
    if text is None or text == "":
        return None
    names = tuple(n.strip() for n in (text if isinstance(text, (tuple, list)) else str(text).split(",")))
    if not all(names) or len(set(names)) != len(names):
        raise HeadstartError(f"cannot read --classes '{text}'", hint="give distinct class names, comma-separated")
    return names


# The settings that say how DATA is read (load_data's options).
LOAD_SETTINGS = ("strict", "modality", "text_column", "label_column", "image_column")


@dataclass
class FitConfig:
    data: str = data_setting(per_arm=True)
    backbone: str | None = setting(None, "zoo or timm model name, a layer of one (tf_efficientnet_lite0@block5), "
                                         "a model of your local zoo (`headstart zoo add`), or a text model (hub "
                                         "id, alias or folder); auto: the best-ranked candidate on this data "
                                         "(`headstart rank`); default: the data's modality's "
                                         "(tf_efficientnet_lite0 for images, all-MiniLM-L6-v2 for text)")
    strategy: str = setting("probe", "how to train; auto: chosen from this machine's measured throughput, the "
                                     "budget and short pilots of the probe and the scratch model",
                            choices="strategies:STRATEGIES", extra_choices=("auto",),
                            per_arm=True)
    # weights
    weights: str | None = setting(None, "load pretrained weights from this file (safetensors or a state_dict)")
    pretrained: bool = setting(True, "start from random weights", flag="--no-pretrained")
    image_size: int | str | None = image_size_setting(auto=True)
    # data
    seed: int = setting(0, "split and initialisation seed", per_arm=True)
    train_per_class: int | None = setting(None, "take N labelled training examples per class")
    train_size: int | None = setting(None, "take N labelled training examples in all (stratified)")
    val_fraction: float = setting(0.15, "share of the data held out for validation")
    test_fraction: float = setting(0.15, "share of the data held out for test (unless the data has a test part)")
    max_eval: int = max_eval_setting()
    strict: bool = setting(False, "fail on unreadable images or empty texts instead of skipping and counting them")
    modality: str = setting("auto", "what the data is (default: detected from it)", choices="modalities:modalities",
                          extra_choices=("auto",))
    text_column: str | None = setting(None, "CSV/JSONL/Parquet column holding the text (default: text, sentence, "
                                            "...); in tar shards, the text member's extension (default: txt)")
    label_column: str | None = setting(None, "CSV/JSONL/Parquet column holding the label (default: a ClassLabel "
                                             "column, label, class, ...); in tar shards, the json field")
    image_column: str | None = setting(None, "Parquet/Arrow column holding the images: bytes, a datasets Image "
                                             "struct or a file path (default: an Image feature, image, img, ...)")
    add_labels: str | None = setting(None, "newly labelled items added to the training data of this run: the CSV "
                                           "`headstart select` wrote with its label column filled in, or a Label "
                                           "Studio export (JSON, JSON_MIN or CSV)")
    exclude: str | None = setting(None, "items to leave out of the data before it is split: `headstart audit`'s "
                                        "audit.csv with its exclude column marked, a CSV naming items, or a list "
                                        "of items, one a line")
    # class imbalance and synthetic minority samples (label/)
    balance: str = setting("none", "act on class imbalance: a class-weighted loss (and head), a class-balanced "
                                   "sampler, or auto (decided from the training imbalance ratio; the run records "
                                   "what it did and why)", choices=("none", "weights", "sampler", "auto"))
    synthesize: str | None = setting(None, "synthetic minority samples: K per minority class, or auto (up to the "
                                           "largest class). Strategies on cached features interpolate between "
                                           "same-class neighbours in embedding space (SMOTE); strategies that "
                                           "train the backbone mix images (mixup/cutmix). Never in validation "
                                           "or test", parse=lambda text: parse_synthesize(text))
    # text
    tfidf_analyzer: str = setting("auto", "text, --strategy tfidf: word 1-2-grams, character 2-5-grams within "
                                          "word boundaries (char_wb), or both; auto: chosen on validation",
                                  choices=("auto", "word", "char", "both"))
    max_length: int | None = setting(None, "text: tokens per text; longer ones are truncated and counted "
                                           "(default: the model's own, 256 for MiniLM)")
    pooling: str | None = setting(None, "text: how token features become one vector (default: the model's own)",
                                  choices=("mean", "cls"))
    # training (None = the strategy's own default for the modality)
    epochs: int | None = setting(None, "training epochs (default: the strategy's)")
    batch_size: int | None = setting(None, "training batch (default: 16 on CPU, 64 on GPU)")
    lr: float | None = setting(None, "peak learning rate (default: the strategy's)")
    optimizer: str = setting("adamw", "optimizer", choices="train.optim:OPTIMIZERS")
    schedule: str = setting("onecycle", "learning-rate schedule", choices="train.optim:SCHEDULES")
    weight_decay: float = setting(0.01, "weight decay")
    augment: str | None = setting(None, "augmentation preset (default: the strategy's)", choices="train.augment:AUGMENTATIONS")
    layer_decay: float | None = setting(None, "layer-wise rate decay: each backbone layer group down from the top "
                                              "trains at this fraction of the rate above it (default: the "
                                              "strategy's own spread)")
    freeze_depth: int | None = setting(None, "fine-tuning strategies: keep this many backbone layer groups, from "
                                             "the stem up, frozen (default: 0, every layer trains)")
    patience: int | None = setting(None, "epochs without validation gain before stopping")
    budget_seconds: float | None = budget_setting("time budget, e.g. 90s, 5m, 1h: the run stops cleanly inside it",
                                                  per_arm=True)
    evals_per_epoch: int = setting(1, "validation passes per epoch", per_arm=True)
    mixed_precision: str = setting("auto", "autocast precision", choices=("auto", "no", "bf16", "fp16"))
    extract_engine: str = setting("auto", "what runs the frozen backbone when features are extracted (probe, "
                                          "select, simulate-al): PyTorch eager, torch.compile, or ONNX Runtime "
                                          "fp32/int8; auto: the fastest measured to keep the probe's accuracy",
                                  choices="engines.extract:ENGINES", extra_choices=("auto",))
    refit: str = setting("auto", "once validation has chosen the settings, refit the delivered model on train + "
                                 "validation (test stays held out); auto: where it is cheap (probe's head, "
                                 "tfidf), not where a backbone would train twice", choices=("auto", "yes", "no"))
    scratch_model: str | None = setting(None, "architecture for --strategy scratch ('same' = the backbone's)",
                                        per_arm=True)
    # keep learning (adapt/): domain adaptation and continual learning
    adapt: str | None = setting(None, "unlabelled data of the domain the model will serve (a folder, CSV/JSONL, "
                                      "or a built-in with its labels set aside: used only to evaluate): the fit "
                                      "aligns the labelled DATA to it and reports source and target accuracy")
    adapt_method: str = setting("coral", "--adapt: coral aligns the feature statistics (on cached features, with "
                                         "the probe's head); dann trains the backbone with a gradient-reversal "
                                         "domain classifier", choices="adapt.domain:adaptation_methods",
                                 flag="--method")
    from_run: str | None = setting(None, "continue this finished run on DATA (new classes, or more examples of "
                                         "old ones): the report shows each old class's accuracy before and after",
                                   flag="--from")
    continual: str = setting("auto", "--from: how the old classes are kept: head refits the logistic head on the "
                                     "old classes' features (exemplar memory) and the new data; rehearsal "
                                     "fine-tunes on the new data plus the exemplar memory; lwf adds distillation "
                                     "from the old model; naive fine-tunes on the new data alone (the forgetting "
                                     "baseline); auto: head for probe runs, lwf for fine-tuned ones",
                             choices="adapt.continual_methods:CONTINUAL_METHODS", extra_choices=("auto",))
    memory_per_class: int = setting(20, "--from: examples of each class kept in the run's exemplar memory, for "
                                        "the runs that continue it (chosen by herding in feature space)")
    classes: tuple[str, ...] | None = setting(None, "keep only these classes of DATA (comma-separated names)",
                                              parse=lambda text: parse_class_list(text))
    # the report's explanations
    explain_examples: int = setting(4, "the report explains this many of the most confident test mistakes, "
                                       "and one correct test example per class (0: no explanations)")
    explain_method: str = setting("auto", "how the report explains (auto: Grad-CAM for CNNs, Integrated "
                                          "Gradients otherwise; linear weights for TF-IDF)",
                                  choices="explain:method_names", extra_choices=("auto",))
    # experiment tracking (tracking.py)
    track: str | None = setting(None, "also log the finished run (params, validation curve, final metrics, "
                                      "report, model) to TensorBoard or MLflow", choices="tracking:TRACKERS")
    track_uri: str | None = setting(None, TRACK_URI_HELP)
    track_experiment: str = setting("headstart", "the MLflow experiment --track mlflow logs into")
    track_parent: str | None = setting(None, "MLflow: nest the run under this run id (compare sets it for its "
                                             "arms: their comparison's run)")
    # run
    out: str | None = setting(None, NEW_RUN_HELP, per_arm=True)
    resume: bool = setting(False, "continue an interrupted run in --out", per_arm=True)

    def to_dict(self) -> dict:
        return asdict(self)

    def refuse_keep_learning(self, command: str) -> None:
        """compare and tune time and search plain fits: --adapt and --from belong to fit alone."""
        for name, flag in (("adapt", "--adapt"), ("from_run", "--from")):
            if getattr(self, name, None):
                raise HeadstartError(f"`headstart {command}` does not take {flag}",
                                     hint=f"use `headstart fit DATA {flag} ...`; its report has the figures")

    def load_options(self) -> dict:
        """The keyword options load_data takes from this config."""
        return {name: getattr(self, name) for name in LOAD_SETTINGS}

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class CompareConfig:
    """A comparison: the arms and how they are timed; `fit` holds every setting the arms share."""

    data: str = data_setting()
    arms: tuple[str, ...] | None = setting(None, "comma-separated strategies; a scratch arm may name its "
                                                 "architecture (scratch:same, scratch:resnet9); default: the "
                                                 "data's modality's", parse=parse_names)
    scratch_model: str | None = setting(None, "the scratch arm's architecture: a zoo name, or 'same' for the "
                                              "backbone's own (default: resnet9 for images, embedding-bag for text)")
    seeds: int = setting(1, "repeat each arm K times; medians are reported")
    target: float | None = setting(None, "target validation accuracy (default: the best baseline arm's best)")
    budget_seconds: float | None = budget_setting("time cap per arm, e.g. 2m")
    baseline_budget_seconds: float | None = budget_setting(
        "time cap per baseline arm (scratch), e.g. 10m; default: until its validation accuracy plateaus, "
        "capped at a multiple of --budget: the target is the plateau, so the speed-up is against the "
        "baseline at its best", flag="--baseline-budget")
    evals_per_epoch: int = setting(4, "validation passes per epoch: resolves time-to-target to a fraction of one")
    label_fractions: tuple[float, ...] | None = setting(
        None, "label curves: run every arm at each label budget on the same split, e.g. 0.01,0.05,0.1,0.25,1 "
              "(shares of the training labels) or 5,10,20 (labels per class), and state how many labels the best "
              "transfer arm needs to match the baseline trained on all of them", parse=parse_label_fractions)
    out: str | None = out_setting("comparison directory (default: a new folder under runs/)")
    resume: bool = setting(False, "continue a comparison interrupted among its arms in --out (the same command "
                                  "again): finished arms are kept as they are, the arm in progress continues from "
                                  "its last checkpoint, or starts over where it had none")
    fit: FitConfig = nested(FitConfig, offer=lambda f: not f.metadata["per_arm"])  # every setting the arms share

    def __post_init__(self) -> None:
        if self.fit is None:
            self.fit = FitConfig(data=self.data)
        if self.fit.refit == "auto":
            # arms are compared on the same labels (label curves count them): no refit on
            # validation unless asked (--refit yes)
            self.fit = replace(self.fit, refit="no")

    @property
    def backbone(self) -> str | None:
        return self.fit.backbone


# Settings tune draws itself or sets for every trial: not offered as its options.
TUNED = ("data", "strategy", "backbone", "lr", "weight_decay", "layer_decay", "freeze_depth", "augment", "epochs",
         "budget_seconds", "seed", "out", "resume", "explain_examples")


@dataclass
class TuneConfig:
    """`headstart tune`: an Optuna study whose trials are ordinary runs (choose/tune.py)."""

    data: str = data_setting()
    trials: int = setting(20, "trials in the whole study, across every worker and machine; running the command "
                              "again continues the study up to this total")
    budget_seconds: float | None = budget_setting("the whole study's wall time, e.g. 30m: no trial starts that "
                                                  "could not finish inside it")
    trial_budget_seconds: float | None = budget_setting("each trial's time cap, e.g. 2m (default: --budget / "
                                                        "--trials x --workers, at least 20 s)", flag="--trial-budget")
    storage: str | None = setting(None, "the study's database: postgresql://USER@HOST:PORT/DB lets workers on several "
                                        "machines share one study (default: SQLite in RUN/study.db)")
    study: str | None = setting(None, "the study's name in --storage: the same --storage and --study on another "
                                      "machine joins it (default: tune-DATA)")
    workers: int = setting(1, "worker processes on this machine; more than one needs --storage postgresql://...")
    strategies: tuple[str, ...] | None = setting(None, "comma-separated strategies to search (default: the data's "
                                                       "arms that train a backbone: probe, lp-ft, finetune, scratch; "
                                                       "for text also lora)", parse=parse_names)
    candidates: str | None = setting(None, "comma-separated backbones to search, each BACKBONE[:SIZE] (default: every "
                                           "backbone whose pretrained weights load here, at its size and one lower)",
                                     parse=lambda names: ",".join(parse_names(names) or ()) or None)
    seed: int = setting(0, "the sampler's seed, and every trial's split and initialisation seed")
    out: str | None = out_setting()
    fit: FitConfig = nested(FitConfig, offer=lambda f: f.name not in TUNED)

    def __post_init__(self) -> None:
        if self.fit is None:
            self.fit = FitConfig(data=self.data)


# The fit settings that decide the split; `rank` takes exactly these so that a later fit with
# the same values draws the same training split (and reuses its cached features).
SPLIT_SETTINGS = ("seed", "train_per_class", "train_size", "val_fraction", "test_fraction", "max_eval")
# The FitConfig settings `headstart rank` offers.
RANK_SETTINGS = ("data", *SPLIT_SETTINGS, "extract_engine", "strict", "modality", "text_column", "label_column",
                 "image_column", "out")


@dataclass
class RankConfig:
    """`headstart rank`: transferability scores of candidate backbones on the data (choose/rank.py)."""

    data: str = data_setting()
    candidates: str | None = setting(None, "BACKBONE[:SIZE],... (default: the zoo's offline backbones at their own "
                                           "and a lower size, the default backbone's layers, your local zoo)")
    scores: tuple[str, ...] | None = setting(None, "comma-separated, from {choices} (default: all)",
                                             choices="choose.scores:SCORES", parse=parse_names)
    fit: FitConfig = nested(FitConfig, offer=lambda f: f.name in RANK_SETTINGS)

    def __post_init__(self) -> None:
        if self.fit is None:
            self.fit = FitConfig(data=self.data)

    def rank_settings(self) -> dict:
        """The fit settings rank takes, by name (data aside)."""
        return {n: getattr(self.fit, n) for n in RANK_SETTINGS if n != "data"}
