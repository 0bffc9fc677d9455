"""The tune report, from RUN/tune.json: every trial's value over the study's time with the best
so far, each searched setting against the value, and the best trial's settings; and the table
`headstart tune` prints."""
from __future__ import annotations

import sys

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from headstart.files import atomic_write_text, read_json  # noqa: E402

from . import html, plots  # noqa: E402

HISTORY = "tune_history.png"
SETTINGS = "tune_settings.png"
STATE_MARKS = {"COMPLETE": ("o", 1.0), "PRUNED": ("x", 0.6)}  # a failed trial has no value to draw


def _strategies(trials: list[dict]) -> list[str]:
    return list(dict.fromkeys(t["params"].get("strategy", "?") for t in trials))


def history(study: dict, path: Path) -> Path:
    """Each trial's value when it finished (pruned ones: their last reported value, as crosses),
    coloured by strategy, under the best-so-far line of the complete ones."""
    trials = [t for t in study["trials"] if t["value"] is not None and t["finished_after_seconds"] is not None]
    strategies = _strategies(trials)
    with plt.rc_context(plots.STYLE):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for state, (mark, alpha) in STATE_MARKS.items():
            for i, name in enumerate(strategies):
                shown = [t for t in trials if t["state"] == state and t["params"].get("strategy") == name]
                if shown:
                    ax.scatter([t["finished_after_seconds"] / 60 for t in shown], [t["value"] for t in shown],
                               color=plots.colour(i), marker=mark, alpha=alpha, s=36,
                               label=f"{name}{'' if state == 'COMPLETE' else ' (pruned)'}")
        done = sorted((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: t["finished_after_seconds"])
        if done:
            best, xs, ys = -1.0, [], []
            for t in done:
                best = max(best, t["value"])
                xs.append(t["finished_after_seconds"] / 60)
                ys.append(best)
            ax.step(xs, ys, where="post", color="black", linewidth=1.8, label="best so far")
        ax.set_xlabel("minutes since the study's first trial started")
        plots._accuracy_axis(ax, "validation accuracy")
        plots._accuracy_limits(ax, [t["value"] for t in trials] or [0.0, 1.0])
        ax.set_title(f"{plots.plain(study['data'])}: {len(trials)} trial(s) with a value", fontsize=11)
        ax.legend(loc="lower right", fontsize=8)
        return plots._save(fig, path)


def settings_panels(study: dict, path: Path) -> Path | None:
    """One panel per searched setting: its value in each trial against the trial's validation
    accuracy (log axis for rates), coloured by strategy. A per-setting view rather than an
    importance score: the space is conditional, and importance needs settings every trial has."""
    trials = [t for t in study["trials"] if t["value"] is not None]
    names = [n for n in dict.fromkeys(k for t in trials for k in t["params"]) if n != "strategy"]
    if not trials or not names:
        return None
    strategies = _strategies(trials)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    with plt.rc_context(plots.STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
        for ax, name in zip(axes.flat, names):
            for i, strategy in enumerate(strategies):
                shown = [t for t in trials if name in t["params"] and t["params"].get("strategy") == strategy]
                xs = [t["params"][name] for t in shown]
                if shown:
                    ax.scatter([str(x) if isinstance(x, str) else x for x in xs], [t["value"] for t in shown],
                               color=plots.colour(i), s=22, label=strategy)
            if name in ("lr", "weight_decay"):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labelled decades only
            ax.set_title(name, fontsize=10)
            ax.tick_params(axis="x", labelsize=7, labelrotation=20)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        axes.flat[0].set_ylabel("validation accuracy")
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
        return plots._save(fig, path)


def build_tune_report(run_dir: str | Path) -> Path:
    """Write RUN/report.html (and its figures) for a tune run directory."""
    run_dir = Path(run_dir)
    study = read_json(run_dir / "tune.json")
    history(study, run_dir / HISTORY)
    panels = settings_panels(study, run_dir / SETTINGS)
    top = sorted((t for t in study["trials"] if t["state"] == "COMPLETE"), key=lambda t: -t["value"])
    page = html.environment().get_template("tune.html.j2").render(
        title=f"headstart tune: {study.get('data')}", run_name=run_dir.name, study=study, top=top,
        history=HISTORY, panels=SETTINGS if panels else None)
    atomic_write_text(run_dir / "report.html", page)
    return run_dir / "report.html"


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)  # rates span decades: 3 significant digits


def print_tune(result: dict, top: int = 10) -> None:
    """The summary `headstart tune` prints: the best trials as a table, then the counts, the
    best settings and the command that re-runs them."""
    from rich.console import Console
    from rich.table import Table

    # piped into a file or a log, rich would wrap a wide table at 80 columns until it is unreadable
    console = Console(width=None if sys.stdout.isatty() else 200)
    ranked = sorted((t for t in result["trials"] if t["state"] == "COMPLETE"), key=lambda t: -t["value"])[:top]
    table = Table(title=f"{result['data']}: best {len(ranked)} trial(s) by validation accuracy")
    for col in ("trial", "strategy", "settings", "best val", "test acc", "seconds"):
        table.add_column(col, justify="right" if col in ("trial", "best val", "test acc", "seconds") else "left")
    for t in ranked:
        settings = ", ".join(f"{k}={_fmt(v)}" for k, v in t["params"].items() if k != "strategy")
        table.add_row(str(t["number"]), str(t["params"].get("strategy")), settings, f"{t['value']:.4f}",
                      "-" if t["test_accuracy"] is None else f"{t['test_accuracy']:.4f}",
                      "-" if t["seconds"] is None else f"{t['seconds']:.1f}")
    console.print(table)

    def line(text: str) -> None:
        console.print(text, soft_wrap=True)  # a command to copy must not wrap

    c = result["counts"]
    line(f"trials: {c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed"
         + (f", {c['running']} still running elsewhere" if c["running"] else "")
         + f" of {result['trials_wanted']}; wall {result['wall_seconds']:.1f} s")
    best = result["best"]
    if best is None:
        line("[bold]no trial finished[/bold]: nothing to re-run")
    else:
        chosen = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
        line(f"[bold]best: trial {best['number']}, validation accuracy {best['value']:.4f}[/bold] "
             f"(test {best['test_accuracy']:.4f}): {chosen}")
        line(f"re-run it: {best['rerun']}")
    line(f"report: {result['report']}")
