"""Typed settings, each declared once: type, default, help and choices live here, and the
command line of `fit` and `compare` is derived from these declarations (see cli_options.py).
The resolved config is saved with every run as config.yaml.

Choices that come from a registry (strategies, optimizers, ...) are named, not imported:
this module sits at the bottom of the package, and cli_options resolves them.
"""
from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, field, fields

from .errors import HeadstartError


def setting(default=MISSING, help: str = "", *, choices: str | tuple | None = None, flag: str | None = None,
            parse=None, per_arm: bool = False):
    """A declared setting. choices: a tuple, or the name of a registry cli_options knows
    ("strategies", "optimizers", ...). flag: the option's name when it is not --field-name.
    parse: turns the command-line text into the value. per_arm: `compare` sets it itself for
    each arm, so its command line does not offer it."""
    meta = {"help": help, "choices": choices, "flag": flag, "parse": parse, "per_arm": per_arm}
    return field(default=default, metadata=meta)


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | float | int | None) -> float | None:
    """'90s', '5m', '1.5h' or plain seconds -> seconds."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
        if not m:
            raise HeadstartError(f"cannot read the duration '{text}'", hint="write e.g. 90s, 5m or 1.5h")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds <= 0:
        raise HeadstartError(f"the budget must be positive, got '{text}'")
    return seconds


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


@dataclass
class FitConfig:
    data: str = setting(help="a folder of class sub-folders (images or .txt files), a CSV (path,label or "
                             "text,label), a JSONL of texts, or a built-in dataset, with its options as "
                             "NAME:OPTION (e.g. elpv:grades; see `headstart datasets`)", per_arm=True)
    backbone: str | None = setting(None, "zoo or timm model name, a layer of one (tf_efficientnet_lite0@block5), "
                                         "a model of your local zoo (`headstart zoo add`), or a text model (hub "
                                         "id, alias or folder); auto: the best-ranked candidate on this data "
                                         "(`headstart rank`); default: the data's modality's "
                                         "(tf_efficientnet_lite0 for images, all-MiniLM-L6-v2 for text)")
    strategy: str = setting("probe", "how to train; auto: chosen from this machine's measured throughput, the "
                                     "budget and short pilots of the probe and the scratch model",
                            choices="strategies", per_arm=True)
    # weights
    weights: str | None = setting(None, "load pretrained weights from this file (safetensors or a state_dict)")
    pretrained: bool = setting(True, "start from random weights", flag="--no-pretrained")
    image_size: int | None = setting(None, "images: input size in pixels (default: the backbone's)")
    # data
    seed: int = setting(0, "split and initialisation seed", per_arm=True)
    train_per_class: int | None = setting(None, "take N labelled training examples per class")
    train_size: int | None = setting(None, "take N labelled training examples in all (stratified)")
    val_fraction: float = setting(0.15, "share of the data held out for validation")
    test_fraction: float = setting(0.15, "share of the data held out for test (unless the data has a test part)")
    max_eval: int = setting(1000, "cap on the validation and test sizes, to keep evaluation cheap")
    strict: bool = setting(False, "fail on unreadable images or empty texts instead of skipping and counting them")
    modality: str = setting("auto", "what the data is (default: detected from it)", choices="modalities")
    text_column: str | None = setting(None, "CSV/JSONL column holding the text (default: text, sentence, ...)")
    label_column: str | None = setting(None, "CSV/JSONL column holding the label (default: label, class, ...)")
    add_labels: str | None = setting(None, "a CSV of newly labelled items (path or text, label), e.g. the rows "
                                           "`headstart select` wrote with a label filled in: added to the "
                                           "training data of this run")
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
    optimizer: str = setting("adamw", "optimizer", choices="optimizers")
    schedule: str = setting("onecycle", "learning-rate schedule", choices="schedules")
    weight_decay: float = setting(0.01, "weight decay")
    augment: str | None = setting(None, "augmentation preset (default: the strategy's)", choices="augmentations")
    layer_decay: float | None = setting(None, "layer-wise rate decay: each backbone layer group down from the top "
                                              "trains at this fraction of the rate above it (default: the "
                                              "strategy's own spread)")
    freeze_depth: int | None = setting(None, "fine-tuning strategies: keep this many backbone layer groups, from "
                                             "the stem up, frozen (default: 0, every layer trains)")
    patience: int | None = setting(None, "epochs without validation gain before stopping")
    budget_seconds: float | None = setting(None, "time budget, e.g. 90s, 5m, 1h: the run stops cleanly inside it",
                                           flag="--budget", parse=parse_duration, per_arm=True)
    evals_per_epoch: int = setting(1, "validation passes per epoch", per_arm=True)
    mixed_precision: str = setting("auto", "autocast precision", choices=("auto", "no", "bf16", "fp16"))
    extract_engine: str = setting("auto", "what runs the frozen backbone when features are extracted (probe, "
                                          "select, simulate-al): PyTorch eager, torch.compile, or ONNX Runtime "
                                          "fp32/int8; auto: the fastest measured to keep the probe's accuracy",
                                  choices=("auto", "torch", "compile", "onnxruntime", "onnxruntime-int8"))
    scratch_model: str | None = setting(None, "architecture for --strategy scratch ('same' = the backbone's)",
                                        per_arm=True)
    # keep learning (adapt/): domain adaptation and continual learning
    adapt: str | None = setting(None, "unlabelled data of the domain the model will serve (a folder, CSV/JSONL, "
                                      "or a built-in with its labels set aside: used only to evaluate): the fit "
                                      "aligns the labelled DATA to it and reports source and target accuracy")
    adapt_method: str = setting("coral", "--adapt: coral aligns the feature statistics (on cached features, with "
                                         "the probe's head); dann trains the backbone with a gradient-reversal "
                                         "domain classifier", choices=("coral", "dann"), flag="--method")
    from_run: str | None = setting(None, "continue this finished run on DATA (new classes, or more examples of "
                                         "old ones): the report shows each old class's accuracy before and after",
                                   flag="--from")
    continual: str = setting("auto", "--from: how the old classes are kept: head refits the logistic head on the "
                                     "old classes' features (exemplar memory) and the new data; rehearsal "
                                     "fine-tunes on the new data plus the exemplar memory; lwf adds distillation "
                                     "from the old model; naive fine-tunes on the new data alone (the forgetting "
                                     "baseline); auto: head for probe runs, lwf for fine-tuned ones",
                             choices=("auto", "head", "rehearsal", "lwf", "naive"))
    memory_per_class: int = setting(20, "--from: examples of each class kept in the run's exemplar memory, for "
                                        "the runs that continue it (chosen by herding in feature space)")
    classes: tuple[str, ...] | None = setting(None, "keep only these classes of DATA (comma-separated names)",
                                              parse=lambda text: parse_class_list(text))
    # the report's explanations
    explain_examples: int = setting(4, "the report explains this many of the most confident test mistakes, "
                                       "and one correct test example per class (0: no explanations)")
    explain_method: str = setting("auto", "how the report explains (auto: Grad-CAM for CNNs, Integrated "
                                          "Gradients otherwise; linear weights for TF-IDF)",
                                  choices="explain_methods")
    # experiment tracking (tracking.py; the choices are its registered trackers)
    track: str | None = setting(None, "also log the finished run (params, validation curve, final metrics, "
                                      "report, model) to TensorBoard or MLflow", choices=("tensorboard", "mlflow"))
    track_uri: str | None = setting(None, "where --track logs: a TensorBoard log folder (default: RUN/tensorboard), "
                                          "or an MLflow folder, tracking URI or server URL (default: "
                                          "RUN/../mlruns, an SQLite store)")
    track_experiment: str = setting("headstart", "the MLflow experiment --track mlflow logs into")
    track_parent: str | None = setting(None, "MLflow: nest the run under this run id (compare sets it for its "
                                             "arms: their comparison's run)")
    # run
    out: str | None = setting(None, "run directory (default: a new folder under runs/)", per_arm=True)
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
        return {"strict": self.strict, "modality": self.modality,
                "text_column": self.text_column, "label_column": self.label_column}

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class CompareConfig:
    """A comparison: the arms and how they are timed; `fit` holds every setting the arms share."""

    data: str = setting(help=FitConfig.__dataclass_fields__["data"].metadata["help"])
    arms: tuple[str, ...] | None = setting(None, "comma-separated strategies; a scratch arm may name its "
                                                 "architecture (scratch:same, scratch:resnet9); default: the "
                                                 "data's modality's", parse=lambda text: tuple(
                                                     a.strip() for a in text.split(",") if a.strip()))
    scratch_model: str | None = setting(None, "the scratch arm's architecture: a zoo name, or 'same' for the "
                                              "backbone's own (default: resnet9 for images, embedding-bag for text)")
    seeds: int = setting(1, "repeat each arm K times; medians are reported")
    target: float | None = setting(None, "target validation accuracy (default: the best baseline arm's best)")
    budget_seconds: float | None = setting(None, "time cap per arm, e.g. 2m", flag="--budget", parse=parse_duration)
    baseline_budget_seconds: float | None = setting(
        None, "time cap per baseline arm (scratch), e.g. 10m; default: until its validation accuracy plateaus, "
              "capped at a multiple of --budget: the target is the plateau, so the speed-up is against the "
              "baseline at its best", flag="--baseline-budget", parse=parse_duration)
    evals_per_epoch: int = setting(4, "validation passes per epoch: resolves time-to-target to a fraction of one")
    label_fractions: tuple[float, ...] | None = setting(
        None, "label curves: run every arm at each label budget on the same split, e.g. 0.01,0.05,0.1,0.25,1 "
              "(shares of the training labels) or 5,10,20 (labels per class), and state how many labels the best "
              "transfer arm needs to match the baseline trained on all of them", parse=parse_label_fractions)
    out: str | None = setting(None, "comparison directory (default: a new folder under runs/)")
    fit: FitConfig = field(default=None, metadata={"nested": True})

    def __post_init__(self) -> None:
        if self.fit is None:
            self.fit = FitConfig(data=self.data)

    @property
    def backbone(self) -> str | None:
        return self.fit.backbone


@dataclass
class PretrainConfig:
    """`headstart pretrain`: self-supervised pre-training on unlabelled data, registered in the
    local zoo (adapt/pretrain.py)."""

    pool: str = setting(help="unlabelled data: a folder of images (any depth) or a CSV of paths; texts as a .txt "
                             "(one per line) or CSV/JSONL; or a built-in dataset, its labels set aside")
    name: str = setting(None, "register the pre-trained backbone in the local zoo under this name "
                              "(then --backbone NAME in fit, compare, rank)")
    method: str = setting("simclr", "images: simclr, byol (contrastive / self-distillation on two augmented "
                                    "views), mae (masked-patch reconstruction); text: mlm (masked-language "
                                    "modelling, continued)", choices=("simclr", "byol", "mae", "mlm"))
    backbone: str | None = setting(None, "the network to pre-train: resnet9 (from random weights), "
                                         "tf_efficientnet_lite0 (continued from ImageNet: domain-adaptive), any "
                                         "image backbone of the zoo, or a text encoder (default: resnet9 for "
                                         "images, all-MiniLM-L6-v2 for text)")
    pretrained: bool = setting(True, "start from random weights even where the backbone has pretrained ones",
                               flag="--no-pretrained")
    image_size: int | None = setting(None, "images: input size in pixels (default: the backbone's, 64 for resnet9)")
    budget_seconds: float | None = setting(None, "time cap, e.g. 10m: pre-training stops cleanly inside it",
                                           flag="--budget", parse=parse_duration)
    epochs: int | None = setting(None, "passes over the pool (default: as many as --budget allows, else the "
                                       "method's own)")
    batch_size: int | None = setting(None, "examples per step (default: the method's own)")
    lr: float | None = setting(None, "peak learning rate (default: the method's own)")
    max_items: int | None = setting(None, "use at most this many items of the pool (a random, seeded subset)")
    seed: int = setting(0, "seed of the augmentations, masks and initialisation")
    force: bool = setting(False, "replace a local backbone of that name")
    out: str | None = setting(None, "run directory (default: a new folder under runs/)")
    resume: bool = setting(False, "continue an interrupted pre-training in --out")

    def to_dict(self) -> dict:
        return asdict(self)
