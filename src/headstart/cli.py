"""The `headstart` command: each sub-command is a config of settings (config/) and a thin
function over the Python API that prints what it returns. The parser is derived from the
configs (cli_options.py); this module imports nothing heavy until a command runs."""
from __future__ import annotations

import signal
import sys
from importlib import import_module

from . import interrupts
from .cli_options import command, parse
from .cli_print import print_comparison, print_fit_summary
from .config import (AuditConfig, CompareConfig, DatasetsConfig, DemoConfig, ExplainConfig, ExportConfig, FitConfig,
                     PredictConfig, PretrainConfig, PruneConfig, RankConfig, ReportConfig, SelectConfig, ServeConfig,
                     SimulateALConfig, TrackConfig, TuneConfig, ZooAddConfig, ZooListConfig, ZooRemoveConfig)
from .config.budget import forget_command_start, mark_command_start
from .errors import HeadstartError
from .log import set_quiet


@command("fit", FitConfig, help="train a classifier and write a run directory", defaults_file=True)
def _fit(config: FitConfig) -> int:
    from .api import run_fit

    print_fit_summary(run_fit(config))
    return 0


@command("predict", PredictConfig, help="label images or texts with a finished run")
def _predict(config: PredictConfig) -> int:
    from .api import predict

    results = predict.with_config(config)
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


@command("explain", ExplainConfig, help="show why a finished run labels images or texts as it does")
def _explain(config: ExplainConfig) -> int:
    from .api import explain

    out, result = explain.with_config(config)
    for item in result["items"]:
        shown = _snippet(item["name"])
        for e in item["explanations"]:
            evidence = ", ".join(e["top_words"]) if "top_words" in e else str(out / e["image"])
            print(f"{shown}\t{e['role']} {e['class']}\t{item['probability']:.4f}\t{evidence}")
    for bad in result.get("unreadable", []):
        print(f"{_snippet(bad['name'])}\t-\t-\t{bad['error']}")
    print(f"{result['method']}: {out / 'report.html'}")
    return 0


def _printed(api_name: str, printer: str):
    """A command that is its API function, what it returns handed to `printer` ("module:function",
    imported when the command runs: some printers sit beside torch)."""

    def run(config) -> int:
        from . import api

        module, _, name = printer.partition(":")
        getattr(import_module(f"headstart.{module}"), name)(getattr(api, api_name).with_config(config))
        return 0

    return run


command("compare", CompareConfig, help="transfer arms vs a from-scratch arm: time to accuracy and a verdict")(
    _printed("compare", "cli_print:print_comparison"))
command("simulate-al", SimulateALConfig, help="active learning on a labelled dataset with its labels hidden: every "
        "selection method beside random, as learning curves")(_printed("simulate_al", "cli_print:print_study"))
command("tune", TuneConfig, help="search strategy, backbone and hyper-parameters with Optuna; each trial a run")(
    _printed("tune", "report.tune:print_tune"))
command("rank", RankConfig, help="rank pretrained backbones (and layers) on your data by transferability scores")(
    _printed("rank", "report.rank:print_ranking"))
command("pretrain", PretrainConfig, help="self-supervised pre-training on your own unlabelled images or texts; the "
        "backbone joins the local zoo")(_printed("pretrain", "adapt.pretrain:print_pretrain"))


@command("report", ReportConfig, help="rebuild the report of a fit or compare run")
def _report(config: ReportConfig) -> int:
    from .report import build_report

    print(build_report(config.run))
    return 0


@command("track", TrackConfig, help="log a finished fit or compare run to TensorBoard or MLflow (as --track does)")
def _track(config: TrackConfig) -> int:
    from .api import track

    track.with_config(config)
    return 0


@command("select", SelectConfig, help="rank an unlabelled pool with a finished run: the items to label next")
def _select(config: SelectConfig) -> int:
    from .api import select

    done = select.with_config(config)
    for row in done["rows"]:
        print(f"{row['rank']}\t{row['score']:.4f}\t{row['guess']}\t{row['guess_probability']:.3f}\t"
              f"{_snippet(row[done['column']])}")
    dropped = done["dropped"]
    if dropped["already_labelled"] or dropped["repeated_in_pool"]:
        print(f"dropped {dropped['already_labelled']} item(s) already labelled and {dropped['repeated_in_pool']} "
              f"repeated in the pool")
    print(f"{done['method']}: {done['k']} of {done['ranked']} item(s) in {done['csv']}; "
          + _SELECT_NEXT_STEP[done["format"]].format(file=done["csv"]))
    return 0


# what to do with what select wrote, by --format
_SELECT_NEXT_STEP = {
    "csv": "fill in its label column and pass it to `headstart fit ... --add-labels {file}`",
    "label-studio": "import it into a Label Studio project labelled with the config beside it (.xml), label, "
                    "export, and pass the export to `headstart fit ... --add-labels EXPORT`",
}


@command("audit", AuditConfig, help="likely label errors, near-duplicates, train/test leaks and outliers in a "
                                    "dataset or a run's data")
def _audit(config: AuditConfig) -> int:
    from .api import audit

    done = audit.with_config(config)
    for row in done["rows"][:20]:  # the first of each kind come first; audit.csv holds them all
        print(f"{row['kind']}\t{row['score']:.4f}\t{row['given']}\t{row['suggested'] or '-'}\t{_snippet(row['item'])}")
    counts = ", ".join(f"{n} {kind.replace('_', ' ')}(s)" for kind, n in done["counts"].items())
    print(f"{counts}: {done['csv']} (mark its exclude column and pass it to `headstart fit ... --exclude "
          f"{done['csv']}`); report: {done['report']}")
    return 0


@command("serve", ServeConfig, help="the model behind HTTP with a small web page: POST /predict, /explain, "
                                    "GET /health, /metadata, /docs")
def _serve(config: ServeConfig) -> int:
    from .api import serve  # the default engine never imports PyTorch (deploy/serve_engines.py)

    return serve.with_config(config)


@command("export", ExportConfig, help="write a finished run as a model file to deploy, checked against the run")
def _export(config: ExportConfig) -> int:
    from .api import export

    done = export.with_config(config)
    c = done["checks"]
    print(f"{done['file']}\t{done['precision']}\t{done['file_mb']:.1f} MB\ttest accuracy "
          f"{c['onnx_test_accuracy']:.4f} (PyTorch {c['torch_test_accuracy']:.4f}, "
          f"{c['accuracy_points_lost']:+.2f} points lost)\tchecks: {done['file']}.json")
    return 0


@command("prune", PruneConfig, help="remove a share of a CNN run's channels, fine-tune briefly, write a new run")
def _prune(config: PruneConfig) -> int:
    from .api import prune
    from .deploy.prune import pruning_lines

    print("\n".join(pruning_lines(prune.with_config(config))))
    return 0


@command("zoo", ZooListConfig, help="list backbones and which load offline; add or remove your own runs' "
         "backbones (the local zoo)")
def _zoo(config: ZooListConfig) -> int:
    from .modalities import modalities
    from .zoo import list_backbones
    from .zoo.local import listing_lines

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


@command("zoo add", ZooAddConfig, help="register a finished run's backbone (no head) in $HEADSTART_HOME/zoo")
def _zoo_add(config: ZooAddConfig) -> int:
    from .api import zoo_add

    done = zoo_add.with_config(config)
    print(f"added local backbone {done['name']}: {done['folder']}")
    return 0


@command("zoo remove", ZooRemoveConfig, help="delete a local backbone")
def _zoo_remove(config: ZooRemoveConfig) -> int:
    from .api import zoo_remove

    done = zoo_remove.with_config(config)
    print(f"removed local backbone {done['name']}: {done['folder']}")
    return 0


@command("datasets", DatasetsConfig, help="list the built-in datasets and their options")
def _datasets(config: DatasetsConfig) -> int:
    from .data import list_datasets

    for d in list_datasets():
        print(f"{d['name']:16} {'available' if d['available'] else 'not installed':14} {d['description']}")
        for option, what in d["options"].items():
            print(f"{'':16} {'':14} option {d['name']}:{option}: {what}")
    return 0


@command("demo", DemoConfig, help="transfer vs scratch on the built-in elpv solar cells (no network needed)")
def _demo(config: DemoConfig) -> int:
    from .demo import demo_notice, run_demo

    print(demo_notice(config.budget_seconds), flush=True)
    print_comparison(run_demo(config))
    return 0


def main(argv: list[str] | None = None) -> int:
    invocation = parse(sys.argv[1:] if argv is None else list(argv))  # a malformed line exits 2 (argparse)
    if invocation.quiet:
        set_quiet()
    try:
        if invocation.command.name in ("fit", "compare"):  # --budget counts from the process's start (config/budget.py)
            mark_command_start(from_process_start=argv is None)
        with interrupts.handling():  # Ctrl-C and SIGTERM: a checkpoint at the loop's next safe point
            return invocation.command.run(invocation.config())
    except HeadstartError as e:
        print(f"headstart: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # interrupts.Interrupted, or a Ctrl-C outside main()'s handlers
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"headstart: interrupted ({signal.Signals(signum).name}); `--resume` with the same --out continues "
              f"a fit or a pretrain from its last checkpoint", file=sys.stderr)
        return 128 + signum
    finally:
        forget_command_start()


if __name__ == "__main__":
    sys.exit(main())
