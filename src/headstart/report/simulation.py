"""The simulate-al report: learning curves (test accuracy against labels used, every method
beside random, with the seed spread) and the verdict against random, from simulate_al.json."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import html, plots  # noqa: E402

FIGURE = "al_curves.png"


def learning_curves(study: dict, path: Path) -> Path:
    """One line per method (median over seeds, shaded from the worst to the best seed); random
    is drawn black and dashed, as the line every other must clear."""
    with plt.rc_context(plots.STYLE):  # the house style every report figure shares
        fig, ax = plt.subplots(figsize=(8, 5))
        labels = study["labels"]
        others = [n for n in study["methods"] if n != "random"]
        for i, name in enumerate(others + (["random"] if "random" in study["methods"] else [])):
            m = study["methods"][name]
            baseline = name == "random"
            colour = "black" if baseline else plots.colour(i)
            ax.plot(labels, m["median"], color=colour, linestyle="--" if baseline else "-",
                    marker=None if baseline else plots.marker(i), markersize=4, linewidth=2.2 if baseline else 1.5,
                    label=plots.plain(name) + (" (baseline)" if baseline else ""))
            if study["seeds"] > 1:
                ax.fill_between(labels, m["low"], m["high"], color=colour, alpha=0.08 if baseline else 0.12, linewidth=0)
        ax.set_xlabel("labels used")
        if len(labels) <= 12:
            ax.set_xticks(labels)  # the measured points, not matplotlib's round numbers
        plots._accuracy_axis(ax, "test accuracy")
        plots._accuracy_limits(ax, [v for m in study["methods"].values() for v in m["low"]])
        ax.set_title(f"Active learning on {plots.plain(study['data'])}: {study['seeds']} seed(s), "
                     f"median with the seeds' range", fontsize=11)
        ax.legend(loc="lower right", fontsize=9)
        return plots._save(fig, path)


def build_simulation_report(run_dir: str | Path) -> Path:
    """Write RUN/report.html (and its figure) for a simulate-al run directory."""
    return html.record_page(run_dir, "simulate_al", draw=learning_curves, figure=FIGURE, key="study",
                            title=lambda study: f"headstart simulate-al: {study.get('data')}")
