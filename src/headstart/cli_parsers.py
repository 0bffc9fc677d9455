"""The sub-command parsers of `headstart` beyond fit/predict/compare, by area: labels (select,
simulate-al), deploy (prune), choose (zoo, rank), adapt (pretrain). cli.py assembles them; each command's
function is in cli.py."""
from __future__ import annotations

from .cli_options import add_options
from .config import FitConfig, PretrainConfig


def add_label_parsers(sub) -> None:
    from .label.queries import QUERIES
    p = sub.add_parser("select", help="rank an unlabelled pool with a finished run: the items to label next")
    p.add_argument("run", help="a run directory written by `headstart fit`")
    p.add_argument("pool", help="unlabelled data: a folder of images, a .txt file (one text per line), a CSV/JSONL "
                   "without labels, or a built-in dataset (its labels set aside)")
    p.add_argument("--k", type=int, default=50, help="how many items to pick (default: 50)")
    p.add_argument("--method", default="margin", choices=list(QUERIES),
                   help="; ".join(f"{q.name}: {q.summary}" for q in QUERIES.values()) + " (default: margin)")
    p.add_argument("--out", help="the CSV to write (default: RUN/select-METHOD.csv)")
    p.add_argument("--seed", type=int, default=0, help="seed of the randomised methods")
    p = sub.add_parser("simulate-al", help="active learning on a labelled dataset with its labels hidden: "
                       "every selection method beside random, as learning curves")
    p.add_argument("data", help=FitConfig.__dataclass_fields__["data"].metadata["help"])
    p.add_argument("--start", type=int, default=20, help="labels every method starts from (default: 20)")
    p.add_argument("--k", type=int, default=20, help="labels bought per round (default: 20)")
    p.add_argument("--rounds", type=int, default=10, help="rounds (default: 10)")
    p.add_argument("--seeds", type=int, default=3, help="start sets and query seeds; medians and the spread are "
                   "reported (default: 3)")
    p.add_argument("--methods", help=f"comma-separated, from {', '.join(QUERIES)} (default: all; random is "
                   "always run as the baseline)")
    p.add_argument("--pool-size", type=int, default=2000, help="the unlabelled pool: this many training items, "
                   "stratified (0: all; default: 2000)")
    p.add_argument("--max-eval", type=int, default=1000, help="cap on the test split (default: 1000)")
    p.add_argument("--backbone", help="the feature model (default: the data's modality's)")
    p.add_argument("--image-size", type=int, help="images: input size in pixels (default: the backbone's)")
    p.add_argument("--out", help="run directory (default: a new folder under runs/)")


def add_deploy_parsers(sub) -> None:
    p = sub.add_parser("export", help="write a finished run as a model file to deploy, checked against the run")
    _add_export_options(p)
    p = sub.add_parser("prune", help="remove a share of a CNN run's channels, fine-tune briefly, write a new run")
    p.add_argument("run", help="an image run written by `headstart fit` (a CNN: EfficientNet-Lite, resnet9, ...)")
    p.add_argument("--sparsity", type=float, default=0.3, help="share of each layer's channels to remove (default 0.3)")
    p.add_argument("--budget", help="time cap on the recovery fine-tune, e.g. 2m")
    p.add_argument("--epochs", type=int, help="recovery fine-tune epochs (default: 3)")
    p.add_argument("--out", help="the new run's folder (default: RUN-prunedNN beside RUN)")


def add_choose_parsers(sub) -> None:
    from .choose.tune import TUNED, TuneConfig
    p = sub.add_parser("tune", help="search strategy, backbone and hyper-parameters with Optuna; each trial a run")
    add_options(p, TuneConfig)
    add_options(p, FitConfig, skip=TUNED)
    zoo = sub.add_parser("zoo", help="list backbones and which load offline; add or remove your own runs' "
                         "backbones (the local zoo)").add_subparsers(dest="zoo_action", required=False)
    p = zoo.add_parser("add", help="register a finished run's backbone (no head) in $HEADSTART_HOME/zoo")
    p.add_argument("run", help="a run directory written by `headstart fit`")
    p.add_argument("--name", required=True, help="the backbone's name, for --backbone NAME")
    p.add_argument("--force", action="store_true", help="replace a local backbone of that name")
    zoo.add_parser("remove", help="delete a local backbone").add_argument("name", help="its name")
    from .choose.rank import RANK_SETTINGS
    from .choose.scores import SCORES
    p = sub.add_parser("rank", help="rank pretrained backbones (and layers) on your data by transferability scores")
    add_options(p, FitConfig, skip=tuple(n for n in FitConfig.__dataclass_fields__ if n not in RANK_SETTINGS))
    p.add_argument("--candidates", help="BACKBONE[:SIZE],... (default: the zoo's offline backbones at their own "
                   "and a lower size, the default backbone's layers, your local zoo)")
    p.add_argument("--scores", help=f"comma-separated, from {', '.join(SCORES)} (default: all)")


def add_adapt_parsers(sub) -> None:
    p = sub.add_parser("pretrain", help="self-supervised pre-training on your own unlabelled images or texts; "
                       "the backbone joins the local zoo")
    add_options(p, PretrainConfig)


def _add_export_options(p) -> None:
    from .deploy.registry import load_exporters

    p.add_argument("run", help="a run directory written by `headstart fit`")
    p.add_argument("--format", default="onnx", help="; ".join(f"{e.name}: {e.summary}" for e in
                                                            load_exporters().values()) + " (default: onnx)")
    p.add_argument("--quantize", help="int8 (static, calibrated on training examples) or fp16; checked on the "
                   "test split (default: none, fp32)")
    p.add_argument("--out", help="the model file (default: RUN/model.onnx, RUN/model.int8.onnx, RUN/model.fp16.onnx)")
    p.add_argument("--tolerance", type=float, default=1.0, metavar="POINTS",
                   help="refuse a quantized model that loses more test accuracy than this, in points (default: 1.0)")
    p.add_argument("--force", action="store_true", help="write the model even when a check fails")
