"""The `headstart` command: each sub-command is a thin function over the Python API."""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path

from .errors import HeadstartError

COMMANDS: dict[str, callable] = {}


def command(fn):
    COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    from .strategies import STRATEGIES
    from .train.augment import AUGMENTATIONS
    from .train.optim import OPTIMIZERS, SCHEDULES

    p.add_argument("data", help="a folder of class sub-folders (images or .txt files), a CSV (path,label "
                                "or text,label), a JSONL of texts, or a built-in dataset name "
                                "(see `headstart datasets`)")
    p.add_argument("--backbone", help="zoo or timm model name, or a text model (hub id, alias or folder); "
                                      "default: tf_efficientnet_lite0 for images, all-MiniLM-L6-v2 for text")
    p.add_argument("--strategy", default="probe", choices=list(STRATEGIES))
    p.add_argument("--weights", help="load pretrained weights from this file (safetensors or a state_dict)")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="start from random weights")
    p.add_argument("--image-size", type=int, help="input size in pixels (default: the backbone's)")
    p.add_argument("--train-per-class", type=int, help="take N labelled training images per class")
    p.add_argument("--train-size", type=int, help="take N labelled training images in all (stratified)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-eval", type=int, default=1000, help="cap on the validation and test sizes")
    p.add_argument("--epochs", type=int, help="training epochs (default: the strategy's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the strategy's)")
    p.add_argument("--batch-size", type=int, help="training batch (default: 16 on CPU, 64 on GPU)")
    p.add_argument("--optimizer", default="adamw", choices=list(OPTIMIZERS))
    p.add_argument("--schedule", default="onecycle", choices=list(SCHEDULES))
    p.add_argument("--augment", choices=list(AUGMENTATIONS), help="default: the strategy's")
    p.add_argument("--patience", type=int, help="epochs without validation gain before stopping")
    p.add_argument("--budget", help="time budget, e.g. 90s, 5m, 1h: the run stops cleanly inside it")
    p.add_argument("--evals-per-epoch", type=int, default=1)
    p.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    p.add_argument("--scratch-model", help="architecture for --strategy scratch ('same' = the backbone's)")
    p.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    p.add_argument("--elpv-grades", action="store_true", help="elpv: four defect grades instead of two classes")
    _add_text_options(p)
    p.add_argument("--out", help="run directory (default: a new folder under runs/)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")


def _add_text_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--modality", default="auto", choices=["auto", "image", "text"],
                   help="what the data is (default: detected from it)")
    p.add_argument("--text-column", help="CSV/JSONL column holding the text (default: text, sentence, ...)")
    p.add_argument("--label-column", help="CSV/JSONL column holding the label (default: label, class, ...)")
    p.add_argument("--max-length", type=int, help="text: tokens per text; longer ones are truncated and "
                                                  "counted (default: the model's own, 256 for MiniLM)")
    p.add_argument("--pooling", choices=["mean", "cls"], help="text: how token features become one vector "
                                                               "(default: the model's own)")


TEXT_SETTINGS = ("modality", "text_column", "label_column", "max_length", "pooling")


def _fit_config(args: argparse.Namespace):
    from .config import FitConfig, parse_duration

    return FitConfig(
        data=args.data, backbone=args.backbone, strategy=args.strategy, weights=args.weights,
        pretrained=args.pretrained, image_size=args.image_size, seed=args.seed,
        train_per_class=args.train_per_class, train_size=args.train_size, max_eval=args.max_eval,
        strict=args.strict, elpv_grades=args.elpv_grades, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, optimizer=args.optimizer, schedule=args.schedule, augment=args.augment,
        patience=args.patience, budget_seconds=parse_duration(args.budget),
        evals_per_epoch=args.evals_per_epoch, mixed_precision=args.mixed_precision,
        scratch_model=args.scratch_model, out=args.out, resume=args.resume,
        **{k: getattr(args, k) for k in TEXT_SETTINGS},
    )


def _print_fit_summary(result) -> None:
    s = result.summary
    if int(os.environ.get("RANK", "0")) != 0:
        return
    print(f"{s['strategy']} on {s['data']} with {s['backbone']} ({s['weights']})")
    print(f"  test accuracy {s['test_accuracy']:.4f}   macro-F1 {s['macro_f1']:.4f}   "
          f"best val {s['best_val_accuracy']:.4f}")
    print(f"  train {s['train_seconds']:.1f} s   wall {s['wall_seconds']:.1f} s   "
          f"peak RSS {s['peak_rss_mb']:.0f} MB")
    ratio = s["train_imbalance"]["imbalance_ratio"]
    if ratio >= 3:
        print(f"  note: the training classes are imbalanced ({ratio:.1f}:1); see macro-F1 and per-class figures")
    print(f"  run: {result.run_dir}")


@command
def cmd_fit(args) -> int:
    from .pipeline import fit

    _print_fit_summary(fit(_fit_config(args)))
    return 0


@command
def cmd_predict(args) -> int:
    from .predict import predict_inputs

    results = predict_inputs(args.run, args.inputs, text_file=args.file)
    if args.csv:
        from .records import atomic_write_text
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([results[0].kind if results else "path", "label", "probability", "error"])
        for r in results:
            writer.writerow([r.path, r.label or "", "" if r.probability is None else f"{r.probability:.6f}", r.error or ""])
        atomic_write_text(Path(args.csv), buffer.getvalue())
    for r in results:
        shown = r.path if r.kind == "path" else _snippet(r.path)
        if r.error:
            print(f"{shown}\t-\t-\t{r.error}")
        else:
            print(f"{shown}\t{r.label}\t{r.probability:.4f}")
    return 1 if all(r.error for r in results) else 0


def _snippet(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


@command
def cmd_zoo(args) -> int:
    from .zoo import list_backbones

    print(f"{'backbone':32} {'pretrained':12} {'offline':8} description")
    for b in list_backbones():
        print(f"{b['name']:32} {('yes' if b['has_pretrained'] else 'no'):12} "
              f"{('yes' if b['pretrained_offline'] else 'no'):8} {b['description']}")
    print("\nAny timm model name works too; its weights come from the hub when online, or --weights FILE.")
    from .zoo.text_backbones import list_text_backbones

    print(f"\n{'text backbone':32} {'pretrained':12} {'offline':8} description")
    for b in list_text_backbones():
        print(f"{b['name']:32} {('yes' if b['has_pretrained'] else 'no'):12} "
              f"{('yes' if b['pretrained_offline'] else 'no'):8} {b['description']}")
    print("\nAny Hugging Face encoder or sentence-transformers model works too, by hub id or local folder.")
    return 0


@command
def cmd_datasets(args) -> int:
    from .data import list_datasets

    for d in list_datasets():
        print(f"{d['name']:16} {'available' if d['available'] else 'not installed':14} {d['description']}")
    return 0


@command
def cmd_compare(args) -> int:
    from .compare import CompareConfig, run_compare
    from .config import parse_duration

    settings = {k: getattr(args, k) for k in ("image_size", "train_per_class", "train_size", "max_eval",
                                                 "strict", "elpv_grades", "epochs", "batch_size",
                                                 *TEXT_SETTINGS)
                if getattr(args, k) not in (None, False, "auto")}
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip()) if args.arms else None
    config = CompareConfig(
        data=args.data, arms=arms,
        backbone=args.backbone, scratch_model=args.scratch_model, seeds=args.seeds, target=args.target,
        budget_seconds=parse_duration(args.budget), evals_per_epoch=args.evals_per_epoch, out=args.out,
        fit_settings=settings)
    print_comparison(run_compare(config))
    return 0


def print_comparison(c: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{c['data']}: time to {c['target_accuracy']:.3f} validation accuracy "
                        f"({c['target_source']})")
    for col in ("arm", "backbone", "best val", "test acc", "train s", "time to target"):
        table.add_column(col, justify="left" if col in ("arm", "backbone") else "right")
    for a in c["arms"]:
        ttt = a["time_to_target_seconds"]
        size = "" if a["input_size"] is None else \
            f" @{a['input_size']}{' tokens' if a.get('modality') == 'text' else 'px'}"
        table.add_row(a["name"], f"{a['backbone']}{size}", f"{a['best_val_accuracy']:.3f}",
                      f"{a['test_accuracy']:.3f}", f"{a['train_seconds']:.1f}",
                      f"{ttt:.1f} s" if ttt is not None else "never within budget")
    console = Console()
    console.print(table)
    console.print(f"[bold]{c['verdict_sentence']}[/bold]")
    if c.get("report"):
        console.print(f"report: {c['report']}")


@command
def cmd_report(args) -> int:
    from .report import build_comparison_report, build_fit_report

    run = Path(args.run)
    if (run / "comparison.json").exists():
        print(build_comparison_report(run))
    elif (run / "summary.json").exists():
        print(build_fit_report(run))
    else:
        raise HeadstartError(f"{run} is not a finished fit or compare run",
                             hint="pass a folder holding summary.json or comparison.json")
    return 0


@command
def cmd_demo(args) -> int:
    from .demo import run_demo

    from .config import parse_duration

    return run_demo(out=args.out, train_per_class=args.train_per_class, image_size=args.image_size,
                    budget_seconds=parse_duration(args.budget))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headstart", description="Train an accurate classifier in a fraction of the time by reusing a "
                                     "pre-trained model, and prove the time saved.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_fit_options(sub.add_parser("fit", help="train a classifier and write a run directory"))
    p = sub.add_parser("predict", help="label images or texts with a finished run")
    p.add_argument("run", help="a run directory written by `headstart fit`")
    p.add_argument("inputs", nargs="*", help="image files or folders; for a text run, the texts themselves")
    p.add_argument("--file", help="text runs: a file with one text per line ('-' reads standard input)")
    p.add_argument("--csv", help="also write the predictions to this CSV file")
    p = sub.add_parser("compare", help="transfer arms vs a from-scratch arm: time to accuracy and a verdict")
    p.add_argument("data")
    p.add_argument("--arms", help="comma-separated strategies (default: probe,lp-ft,finetune,scratch for "
                                  "images; probe,lp-ft,finetune,lora,tfidf,scratch for text)")
    p.add_argument("--backbone", help="default: tf_efficientnet_lite0 for images, all-MiniLM-L6-v2 for text")
    p.add_argument("--scratch-model",
                   help="the scratch arm's architecture: a zoo name, or 'same' for the backbone's own "
                        "(default: resnet9 for images, embedding-bag for text)")
    p.add_argument("--seeds", type=int, default=1, help="repeat each arm K times; medians are reported")
    p.add_argument("--target", type=float, help="target validation accuracy (default: scratch's best)")
    p.add_argument("--budget", help="time cap per arm, e.g. 2m")
    p.add_argument("--evals-per-epoch", type=int, default=4)
    for flag, kind in (("--image-size", int), ("--train-per-class", int), ("--train-size", int),
                       ("--max-eval", int), ("--epochs", int), ("--batch-size", int)):
        p.add_argument(flag, type=kind)
    p.add_argument("--strict", action="store_true")
    p.add_argument("--elpv-grades", action="store_true")
    _add_text_options(p)
    p.add_argument("--out")
    p = sub.add_parser("report", help="rebuild the report of a fit or compare run")
    p.add_argument("run")
    sub.add_parser("zoo", help="list backbones and which load offline")
    sub.add_parser("datasets", help="list the built-in datasets")
    p = sub.add_parser("demo", help="transfer vs scratch on the built-in elpv solar cells (no network needed)")
    p.add_argument("--out", help="run directory (default: a new folder under runs/)")
    p.add_argument("--budget", default="100s", help="time cap per arm")
    p.add_argument("--train-per-class", type=int, help="a smaller labelled subset, for a quicker look")
    p.add_argument("--image-size", type=int, help="input size for the transfer arm (default 224)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except HeadstartError as e:
        print(f"headstart: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("headstart: interrupted; `--resume` with the same --out continues a fit", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
