"""The `headstart` command: each sub-command is a thin function over the Python API."""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from .cli_options import add_options, from_options
from .cli_parsers import add_adapt_parsers, add_choose_parsers, add_deploy_parsers, add_label_parsers
from .cli_print import print_comparison, print_fit_summary, print_study
from .errors import HeadstartError
from .log import set_quiet

COMMANDS: dict[str, callable] = {}


def command(fn):
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn  # cmd_simulate_al -> simulate-al
    return fn


@command
def cmd_fit(args) -> int:
    from .api import fit_config, run_fit
    from .config import FitConfig

    given = {f: getattr(args, f) for f in FitConfig.__dataclass_fields__ if getattr(args, f) is not ...}
    print_fit_summary(run_fit(fit_config(config=args.config, **given)))
    return 0


@command
def cmd_pretrain(args) -> int:
    from .adapt.pretrain import print_pretrain, run_pretrain
    from .config import PretrainConfig

    print_pretrain(run_pretrain(from_options(PretrainConfig, args)))
    return 0


@command
def cmd_tune(args) -> int:
    from .choose.tune import TuneConfig, run_tune
    from .config import FitConfig
    from .report.tune import print_tune

    print_tune(run_tune(from_options(TuneConfig, args, fit=from_options(FitConfig, args))))
    return 0


@command
def cmd_predict(args) -> int:
    if args.engine == "onnxruntime":  # an exported model, without importing PyTorch
        from .deploy.onnx_predict import predict_inputs
    else:
        from .prediction import predict_inputs

    results = predict_inputs(args.run, args.inputs, text_file=args.file)
    if args.csv:
        from .files import atomic_write_text
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
def cmd_explain(args) -> int:
    from .explain import explain_inputs

    out, result = explain_inputs(args.run, args.inputs, text_file=args.file, method=args.method, out=args.out,
                                 true=args.true)
    for item in result["items"]:
        shown = _snippet(item["name"])
        for e in item["explanations"]:
            evidence = ", ".join(e["top_words"]) if "top_words" in e else str(out / e["image"])
            print(f"{shown}\t{e['role']} {e['class']}\t{item['probability']:.4f}\t{evidence}")
    for bad in result.get("unreadable", []):
        print(f"{_snippet(bad['name'])}\t-\t-\t{bad['error']}")
    print(f"{result['method']}: {out / 'report.html'}")
    return 0


@command
def cmd_select(args) -> int:
    from .api import select

    done = select(args.run, args.pool, k=args.k, method=args.method, out=args.out, seed=args.seed)
    for row in done["rows"]:
        print(f"{row['rank']}\t{row['score']:.4f}\t{row['guess']}\t{row['guess_probability']:.3f}\t"
              f"{_snippet(row[done['column']])}")
    dropped = done["dropped"]
    if dropped["already_labelled"] or dropped["repeated_in_pool"]:
        print(f"dropped {dropped['already_labelled']} item(s) already labelled and {dropped['repeated_in_pool']} "
              f"repeated in the pool")
    print(f"{done['method']}: {done['k']} of {done['ranked']} item(s) in {done['csv']}; fill in its label column "
          f"and pass it to `headstart fit ... --add-labels {done['csv']}`")
    return 0


@command
def cmd_simulate_al(args) -> int:
    from .api import simulate_al

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    study = simulate_al(args.data, start=args.start, k=args.k, rounds=args.rounds, seeds=args.seeds, methods=methods,
                        pool_size=args.pool_size or None, max_eval=args.max_eval, out=args.out,
                        backbone=args.backbone, image_size=args.image_size)
    print_study(study)
    return 0


@command
def cmd_zoo(args) -> int:
    from .api import zoo_add, zoo_remove
    from .modalities import modalities
    from .zoo import list_backbones
    from .zoo.local import listing_lines

    if args.zoo_action:  # the local zoo: `add RUN --name NAME [--force]` or `remove NAME`
        done = zoo_add(args.run, args.name, force=args.force) if args.zoo_action == "add" else zoo_remove(args.name)
        print(f"{'added' if args.zoo_action == 'add' else 'removed'} local backbone {done['name']}: {done['folder']}")
        return 0
    for modality in sorted(modalities(), key=lambda m: m.priority):  # the fallback (images) first
        listed = list_backbones(modality.name)
        if not listed:
            continue
        print(f"{modality.name + ' backbone':32} {'pretrained':12} {'offline':8} description")
        for b in listed:
            print(f"{b['name']:32} {('yes' if b['has_pretrained'] else 'no'):12} "
                  f"{('yes' if b['pretrained_offline'] else 'no'):8} {b['description']}")
        print()
    print("\n".join(listing_lines()), end="\n\n")  # your own runs' backbones (zoo/local.py)
    print("Any timm model name works too, and any Hugging Face encoder or sentence-transformers model by hub\n"
          "id or local folder; their weights come from the hub when online, or --weights FILE.")
    return 0


@command
def cmd_rank(args) -> int:
    from .api import rank
    from .choose.rank import RANK_SETTINGS
    from .report.rank import print_ranking

    print_ranking(rank(candidates=args.candidates, scores=args.scores, **{n: getattr(args, n) for n in RANK_SETTINGS}))
    return 0


@command
def cmd_datasets(args) -> int:
    from .data import list_datasets

    for d in list_datasets():
        print(f"{d['name']:16} {'available' if d['available'] else 'not installed':14} {d['description']}")
        for option, what in d["options"].items():
            print(f"{'':16} {'':14} option {d['name']}:{option}: {what}")
    return 0


@command
def cmd_compare(args) -> int:
    from .compare import run_compare
    from .config import CompareConfig, FitConfig

    config = from_options(CompareConfig, args, fit=from_options(FitConfig, args, skip_per_arm=True, data=args.data))
    print_comparison(run_compare(config))
    return 0


@command
def cmd_track(args) -> int:
    from .tracking import track_existing

    track_existing(args.run, args.to, uri=args.uri, experiment=args.experiment)
    return 0


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
    from .config import parse_duration
    from .demo import demo_notice, run_demo

    budget = parse_duration(args.budget)
    print(demo_notice(budget), flush=True)
    print_comparison(run_demo(out=args.out, train_per_class=args.train_per_class, image_size=args.image_size,
                              budget_seconds=budget))
    return 0


@command
def cmd_prune(args) -> int:
    from .api import prune
    from .deploy.prune import pruning_lines

    print("\n".join(pruning_lines(prune(args.run, sparsity=args.sparsity, budget=args.budget, epochs=args.epochs,
                                       out=args.out))))
    return 0


@command
def cmd_export(args) -> int:
    from .api import export

    done = export(args.run, format=args.format, quantize=args.quantize, out=args.out, tolerance=args.tolerance,
                  force=args.force)
    c = done["checks"]
    print(f"{done['file']}\t{done['precision']}\t{done['file_mb']:.1f} MB\ttest accuracy "
          f"{c['onnx_test_accuracy']:.4f} (PyTorch {c['torch_test_accuracy']:.4f}, "
          f"{c['accuracy_points_lost']:+.2f} points lost)\tchecks: {done['file']}.json")
    return 0


def _add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="label images or texts with a finished run")
    p.add_argument("run", help="a run directory written by `headstart fit`; with --engine onnxruntime, a run "
                   "exported with `headstart export` or its .onnx file")
    p.add_argument("inputs", nargs="*", help="image files or folders; for a text run, the texts themselves")
    p.add_argument("--file", help="text runs: a file with one text per line ('-' reads standard input)")
    p.add_argument("--csv", help="also write the predictions to this CSV file")
    p.add_argument("--engine", default="torch", choices=("torch", "onnxruntime"),
                   help="torch: the run's own model; onnxruntime: its exported ONNX model, without PyTorch "
                        "(default: torch)")


def _torch_free_parser(argv: list[str]) -> argparse.ArgumentParser | None:
    """`predict --engine onnxruntime` must run where PyTorch is not installed, and the full
    parser imports it (fit's options come from the strategy registry): that command alone
    gets a parser of its own."""
    words = [a for a in argv if a not in ("-q", "--quiet")]
    engine = "--engine=onnxruntime" in argv or any(a == "--engine" and b == "onnxruntime"
                                                    for a, b in zip(argv, argv[1:]))
    if not words or words[0] != "predict" or not engine:
        return None
    parser = argparse.ArgumentParser(prog="headstart")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages, only results")
    _add_predict_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def build_parser() -> argparse.ArgumentParser:
    from .config import CompareConfig, FitConfig

    parser = argparse.ArgumentParser(prog="headstart", description="Train an accurate classifier in a fraction of "
                                     "the time by reusing a pre-trained model, and prove the time saved.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages, only results")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="train a classifier and write a run directory")
    add_options(p, FitConfig, skip=("data",))
    p.add_argument("data", nargs="?", help=FitConfig.__dataclass_fields__["data"].metadata["help"])
    p.add_argument("--config", help="a YAML of fit settings (tune's RUN/best.yaml, any run's config.yaml) as the "
                   "defaults: the flags given win, and DATA may be left out when the file names it")
    p.set_defaults(**dict.fromkeys(FitConfig.__dataclass_fields__, ...))  # "not given": --config fills it
    _add_predict_parser(sub)
    p = sub.add_parser("explain", help="show why a finished run labels images or texts as it does")
    p.add_argument("run", help="a run directory written by `headstart fit`")
    p.add_argument("inputs", nargs="*", help="image files or folders; for a text run, the texts themselves")
    p.add_argument("--file", help="text runs: a file with one text per line ('-' reads standard input)")
    p.add_argument("--method", default="auto", help="gradcam, ig or occlusion (images); ig, occlusion or "
                   "linear (texts); auto: Grad-CAM for CNNs, Integrated Gradients otherwise")
    p.add_argument("--true", nargs="+", metavar="CLASS", help="the true class (one for all inputs, or one per "
                   "input): its evidence is shown beside the prediction's")
    p.add_argument("--out", help="folder for the overlays and report.html (default: RUN/explain-TIMESTAMP)")
    p = sub.add_parser("compare", help="transfer arms vs a from-scratch arm: time to accuracy and a verdict")
    add_options(p, CompareConfig)
    add_options(p, FitConfig, skip_per_arm=True)  # every setting the arms share
    p = sub.add_parser("report", help="rebuild the report of a fit or compare run")
    p.add_argument("run")
    p = sub.add_parser("track", help="log a finished fit or compare run to TensorBoard or MLflow (as --track does)")
    p.add_argument("run", help="a fit or compare run directory")
    p.add_argument("--to", required=True, choices=FitConfig.__dataclass_fields__["track"].metadata["choices"],
                   help="the tracker")
    p.add_argument("--uri", help=FitConfig.__dataclass_fields__["track_uri"].metadata["help"])
    p.add_argument("--experiment", default="headstart", help="the MLflow experiment (default: headstart)")
    add_label_parsers(sub)
    add_deploy_parsers(sub)
    add_choose_parsers(sub)
    add_adapt_parsers(sub)
    sub.add_parser("datasets", help="list the built-in datasets and their options")
    p = sub.add_parser("demo", help="transfer vs scratch on the built-in elpv solar cells (no network needed)")
    p.add_argument("--out", help="run directory (default: a new folder under runs/)")
    p.add_argument("--budget", default="100s", help="the transfer arm's time cap (scratch trains to its plateau, at most 180 s)")
    p.add_argument("--train-per-class", type=int, help="a smaller labelled subset, for a quicker look")
    p.add_argument("--image-size", type=int, help="input size for the transfer arm (default 224)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = (_torch_free_parser(argv) or build_parser()).parse_args(argv)
    if args.quiet:
        set_quiet()
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
