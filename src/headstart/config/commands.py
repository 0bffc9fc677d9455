"""The settings of every command that does not run a fit itself: predict, explain, select,
simulate-al, export, prune, serve, audit, pretrain, track, report, demo, zoo and datasets. Each config is
registered with its command in cli.py (`@command("export", ExportConfig)`), and api.py's
functions take its settings as keywords.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .fit import LOAD_SETTINGS, FitConfig
from .settings import (INPUTS_HELP, TEXT_FILE_HELP, TRACK_URI_HELP, budget_setting, data_setting, image_size_setting,
                       max_eval_setting, nested, out_setting, parse_names, run_setting, setting)


def _reads_data_as_fit():
    """The settings of how DATA is read (--strict, --modality, --text-column, --label-column), as fit declares them."""
    return nested(FitConfig, offer=lambda f: f.name in LOAD_SETTINGS)


class _ReadsDataAsFit:
    """For a command over DATA that reads it as `fit` does: its `fit` holds those settings."""

    def __post_init__(self) -> None:
        if self.fit is None:
            self.fit = FitConfig(data=self.data)


@dataclass
class PredictConfig:
    run: str = run_setting("a run directory written by `headstart fit`; with --engine onnxruntime, a run exported "
                           "with `headstart export` or its .onnx file")
    inputs: tuple[str, ...] = setting((), INPUTS_HELP, positional=True)
    file: str | None = setting(None, TEXT_FILE_HELP)
    csv: str | None = setting(None, "also write the predictions to this CSV file")
    engine: str = setting("torch", "torch: the run's own model; onnxruntime: its exported ONNX model, without "
                                   "PyTorch (default: torch)", choices=("torch", "onnxruntime"))


@dataclass
class ExplainConfig:
    run: str = run_setting()
    inputs: tuple[str, ...] = setting((), INPUTS_HELP, positional=True)
    file: str | None = setting(None, TEXT_FILE_HELP)
    method: str = setting("auto", "gradcam, ig or occlusion (images); ig, occlusion or linear (texts); auto: "
                                  "Grad-CAM for CNNs, Integrated Gradients otherwise")
    true: tuple[str, ...] | None = setting(None, "the true class (one for all inputs, or one per input): its "
                                                 "evidence is shown beside the prediction's", metavar="CLASS")
    out: str | None = out_setting("folder for the overlays and report.html (default: RUN/explain-TIMESTAMP)")


@dataclass
class SelectConfig:
    run: str = run_setting()
    pool: str = setting(help="unlabelled data: a folder of images, a .txt file (one text per line), a CSV/JSONL "
                             "without labels, or a built-in dataset (its labels set aside)")
    k: int = setting(50, "how many items to pick (default: 50)")
    method: str = setting("margin", "{summaries} (default: margin)", choices="label.queries:QUERIES")
    out: str | None = out_setting("the file to write (default: RUN/select-METHOD.csv, or RUN/select-METHOD.json "
                                  "with --format label-studio)")
    seed: int = setting(0, "seed of the randomised methods")
    format: str = setting("csv", "csv: a CSV to fill in and pass to `fit --add-labels`; label-studio: Label "
                                 "Studio tasks (the model's guess as a prediction) and the labelling config beside "
                                 "them (.xml) (default: csv)", choices=("csv", "label-studio"))


@dataclass
class SimulateALConfig(_ReadsDataAsFit):
    data: str = data_setting()
    start: int = setting(20, "labels every method starts from (default: 20)")
    k: int = setting(20, "labels bought per round (default: 20)")
    rounds: int = setting(10, "rounds (default: 10)")
    seeds: int = setting(3, "start sets and query seeds; medians and the spread are reported (default: 3)")
    methods: tuple[str, ...] | None = setting(None, "comma-separated, from {choices} (default: all; random is "
                                                    "always run as the baseline)",
                                              choices="label.queries:QUERIES", parse=parse_names)
    pool_size: int = setting(2000, "the unlabelled pool: this many training items, stratified (0: all; "
                                   "default: 2000)")
    max_eval: int = max_eval_setting("cap on the test split (default: 1000)")
    # the feature model: `fit`'s backbone words promise `auto`, which a study does not rank for
    backbone: str | None = setting(None, "the feature model (default: the data's modality's)")
    image_size: int | None = image_size_setting()
    out: str | None = out_setting()
    fit: FitConfig = _reads_data_as_fit()


@dataclass
class ExportConfig:
    run: str = run_setting()
    format: str = setting("onnx", "{summaries} (default: onnx)", choices="deploy.registry:load_exporters",
                          checked_when_used=True)
    quantize: str | None = setting(None, "int8 (static, calibrated on training examples) or fp16; checked on the "
                                         "test split (default: none, fp32)")
    out: str | None = out_setting("the model file (default: RUN/model.onnx, RUN/model.int8.onnx, "
                                  "RUN/model.fp16.onnx)")
    tolerance: float = setting(1.0, "refuse a quantized model that loses more test accuracy than this, in points "
                                    "(default: 1.0)", metavar="POINTS")
    force: bool = setting(False, "write the model even when a check fails")


@dataclass
class PruneConfig:
    run: str = run_setting("an image run written by `headstart fit` (a CNN: EfficientNet-Lite, resnet9, ...)")
    sparsity: float = setting(0.3, "share of each layer's channels to remove (default 0.3)")
    budget_seconds: float | None = budget_setting("time cap on the recovery fine-tune, e.g. 2m")
    epochs: int | None = setting(None, "recovery fine-tune epochs (default: 3)")
    out: str | None = out_setting("the new run's folder (default: RUN-prunedNN beside RUN)")


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
                                    "modelling, continued)", choices="adapt.pretrain:ssl_methods")
    backbone: str | None = setting(None, "the network to pre-train: resnet9 (from random weights), "
                                         "tf_efficientnet_lite0 (continued from ImageNet: domain-adaptive), any "
                                         "image backbone of the zoo, or a text encoder (default: resnet9 for "
                                         "images, all-MiniLM-L6-v2 for text)")
    pretrained: bool = setting(True, "start from random weights even where the backbone has pretrained ones",
                               flag="--no-pretrained")
    image_size: int | None = image_size_setting("images: input size in pixels (default: the backbone's, 64 for "
                                                "resnet9)")
    budget_seconds: float | None = budget_setting("time cap, e.g. 10m: pre-training stops cleanly inside it")
    epochs: int | None = setting(None, "passes over the pool (default: as many as --budget allows, else the "
                                       "method's own)")
    batch_size: int | None = setting(None, "examples per step (default: the method's own)")
    lr: float | None = setting(None, "peak learning rate (default: the method's own)")
    max_items: int | None = setting(None, "use at most this many items of the pool (a random, seeded subset)")
    seed: int = setting(0, "seed of the augmentations, masks and initialisation")
    force: bool = setting(False, "replace a local backbone of that name")
    out: str | None = out_setting()
    resume: bool = setting(False, "continue an interrupted pre-training in --out")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrackConfig:
    run: str = run_setting("a fit or compare run directory")
    to: str = setting(help="the tracker", flag="--to", choices="tracking:TRACKERS")
    uri: str | None = setting(None, TRACK_URI_HELP)
    experiment: str = setting("headstart", "the MLflow experiment (default: headstart)")


@dataclass
class ReportConfig:
    run: str = run_setting("a fit, compare or pretrain run directory")


@dataclass
class DemoConfig:
    out: str | None = out_setting()
    budget_seconds: float = budget_setting("the transfer arm's time cap (scratch trains to its plateau, at most "
                                           "180 s; default: 100s)", default=100.0)
    train_per_class: int | None = setting(None, "a smaller labelled subset, for a quicker look")
    image_size: int | None = setting(None, "input size for the transfer arm (default 224)")


@dataclass
class ZooListConfig:
    """`headstart zoo`: nothing to set."""


@dataclass
class ZooAddConfig:
    run: str = run_setting()
    name: str = setting(help="the backbone's name, for --backbone NAME", flag="--name")
    force: bool = setting(False, "replace a local backbone of that name")


@dataclass
class ZooRemoveConfig:
    name: str = setting(help="its name")


@dataclass
class ServeConfig:
    run: str = run_setting("a run exported with `headstart export` (its model.onnx is served), or an .onnx file; "
                           "with --engine torch, a run directory")
    host: str = setting("127.0.0.1", "the address to listen on; 0.0.0.0 opens the server beyond this machine, "
                                     "so set an API key (default: 127.0.0.1)")
    port: int = setting(8000, "the port to listen on; 0 picks a free one (default: 8000)")
    engine: str = setting("onnxruntime", "{summaries} (default: onnxruntime)", choices="deploy.serve_engines:ENGINES")
    api_key: str | None = setting(None, "require this key on /predict, /explain and /metadata, as the X-API-Key "
                                        "header or Authorization: Bearer (default: $HEADSTART_API_KEY, else none)")
    max_batch: int = setting(32, "the most inputs one model call runs: concurrent requests are micro-batched up to "
                                 "it (default: 32)")
    batch_window_ms: float = setting(5.0, "how long a batch waits for requests still being read, in ms; 0 never "
                                          "waits (default: 5)", metavar="MS")
    max_request_mb: float = setting(16.0, "the largest request body, in MB; larger is refused with 413 "
                                          "(default: 16)", metavar="MB")
    max_items: int = setting(64, "the most images or texts in one /predict request (default: 64)")
    max_pixels: int = setting(40_000_000, "the largest image, in pixels (width x height, read from its header "
                                          "before decoding; default: 40000000)")
    max_text_chars: int = setting(20_000, "the longest text, in characters (default: 20000)")
    threads: int | None = setting(None, "ONNX Runtime's threads (default: one per core)")
    access_log: bool = setting(False, "log every request")


@dataclass
class AuditConfig(_ReadsDataAsFit):
    data: str = setting(help="a dataset (as `fit` reads it: folder, CSV/JSONL, built-in), or a finished run's "
                             "folder (its own model, split and added labels)")
    backbone: str | None = setting(None, "the feature model for DATA (default: the data's modality's; a RUN uses "
                                         "its own)")
    image_size: int | None = image_size_setting()
    folds: int = setting(5, "cross-validation folds for the held-out probabilities (default: 5)")
    k_neighbours: int = setting(10, "nearest items compared for duplicates and outliers (default: 10)")
    duplicate_similarity: float = setting(0.98, "cosine similarity at which two items are near-duplicates "
                                                "(default: 0.98)")
    seed: int = setting(0, "split and fold seed")
    train_per_class: int | None = setting(None, "audit this many training items per class, as fit draws them")
    train_size: int | None = setting(None, "audit this many training items in all, as fit draws them")
    max_eval: int = max_eval_setting("cap on the validation and test splits (default: 1000)")
    out: str | None = out_setting()
    fit: FitConfig = _reads_data_as_fit()


@dataclass
class DatasetsConfig:
    """`headstart datasets`: nothing to set."""
