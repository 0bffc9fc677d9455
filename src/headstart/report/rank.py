"""The rank report: candidates against every transferability score, what each cost, and the
recommendation -- a pure function of RUN/rank.json (the page, its figure, the console table)."""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import html, plots  # noqa: E402

FIGURE = "rank_scores.png"
# Score columns' short names in the table and the figure (the score's own name otherwise).
SCORE_LABELS = {"logme": "LogME", "hscore": "H-score", "nce": "NCE", "leep": "LEEP", "knn": "k-NN", "linear": "probe CV",
                "sfda": "SFDA", "ncti": "NCTI", "size": "model size"}


def score_label(name: str) -> str:
    return SCORE_LABELS.get(name, name)


def normalised_scores(rank: dict) -> np.ndarray:
    """(candidates, scores): each score rescaled over the candidates so its best is 1 and its
    worst 0 (scores live on unrelated scales: accuracies, nats, evidence); NaN where skipped,
    0.5 where every candidate scored the same."""
    candidates, names = rank.get("candidates") or [], rank.get("scores") or []
    out = np.full((len(candidates), len(names)), np.nan)
    for j, name in enumerate(names):
        values = np.array([_value(c, name) if _value(c, name) is not None else np.nan for c in candidates], float)
        if np.all(np.isnan(values)):
            continue
        low, high = np.nanmin(values), np.nanmax(values)
        out[:, j] = (values - low) / (high - low) if high > low else np.where(np.isnan(values), np.nan, 0.5)
    return out


def _value(candidate: dict, score: str):
    return ((candidate.get("scores") or {}).get(score) or {}).get("value")


def scores_and_cost_figure(rank: dict, path: Path) -> Path:
    """Left: every score per candidate, normalised over the candidates (1 = that score's best),
    with the raw value written in; right: the seconds each candidate cost (embedding, then the
    scores), the recommended one first."""
    candidates, names = rank["candidates"], rank["scores"]
    grid = normalised_scores(rank)
    rows = [plots.plain(c["candidate"], 34) for c in candidates]
    height = 1.6 + 0.45 * len(candidates)
    with plt.rc_context({**plots.STYLE, "axes.grid": False}):
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, height), gridspec_kw={"width_ratios": [3, 2]})
        shown = np.ma.masked_invalid(grid)
        cmap = plt.get_cmap("viridis").with_extremes(bad="#eeeeee")  # grey: skipped
        left.imshow(shown, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        left.set_xticks(range(len(names)), [score_label(n) for n in names])
        left.set_yticks(range(len(rows)), rows)
        for i, c in enumerate(candidates):
            for j, name in enumerate(names):
                value = _value(c, name)
                text = "skipped" if value is None else f"{value:.3g}"
                dark = not np.isnan(grid[i, j]) and grid[i, j] < 0.6
                left.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
        left.set_title("Scores, normalised over the candidates (1 = best)", fontsize=11)
        embed = [c.get("embed_seconds") or 0.0 for c in candidates]
        scored = [c.get("score_seconds") or 0.0 for c in candidates]
        y = np.arange(len(candidates))
        right.barh(y, embed, color=plots.colour(0), label="embedding")
        right.barh(y, scored, left=embed, color=plots.colour(1), label="scores")
        for i, c in enumerate(candidates):
            if c.get("features_cached"):
                right.text(embed[i] + scored[i], i, " features cached", va="center", fontsize=9, color="#777777")
        right.set_yticks(y, [""] * len(y))
        right.invert_yaxis()
        right.set_xlim(0, 1.25 * max(max(e + s for e, s in zip(embed, scored)), 1e-3))  # room for "cached"
        right.set_xlabel("seconds")
        right.set_title("What each candidate cost", fontsize=11, pad=24)
        right.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=9, frameon=False)
        return plots._save(fig, path)


def build_rank_report(run_dir: str | Path) -> Path:
    """Write RUN/report.html (and its figure) for a rank run directory."""
    return html.record_page(run_dir, "rank", draw=scores_and_cost_figure, figure=FIGURE, key="rank",
                            title=lambda rank: f"headstart rank: {rank.get('data_name') or rank.get('data')}",
                            score_label=score_label)


def ranking_table(rank: dict):
    """The console's view of a ranking: a rich Table, best first, each score's value and the
    seconds each candidate cost."""
    from rich.table import Table

    recommended = rank.get("recommended_score")
    table = Table(title=f"{rank.get('data_name') or rank.get('data')}: candidates ranked by "
                        f"{score_label(recommended)} on {rank.get('train_size')} training examples")
    for column in ("#", "candidate", "size"):
        table.add_column(column, justify="right" if column != "candidate" else "left")
    for name in rank["scores"]:
        table.add_column(score_label(name) + (" *" if name == recommended else ""), justify="right")
    for column in ("embed s", "scores s", "ms/example"):
        table.add_column(column, justify="right")
    for i, c in enumerate(rank["candidates"], 1):
        values = [("—" if _value(c, n) is None else f"{_value(c, n):.3f}") for n in rank["scores"]]
        embed = f"{c['embed_seconds']:.1f}" + (" (cached)" if c.get("features_cached") else "")
        table.add_row(str(i), c["candidate"], f"{c['input_size']} {c.get('unit', '')}".strip(), *values, embed,
                      f"{c['score_seconds']:.2f}", f"{c['ms_per_example']:.2f}",
                      style="bold" if i == 1 else None)
    return table


def print_ranking(rank: dict) -> None:
    """The table, the skipped candidates and the recommendation, for the command line."""
    from rich.console import Console
    from rich.text import Text

    # piped into a file or a log, rich would wrap a wide table at 80 columns until it is unreadable
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(ranking_table(rank))
    for skipped in rank.get("skipped") or []:
        console.print(f"skipped {skipped['candidate']}: {skipped['reason']}", markup=False)
    console.print(Text(f"recommended: {rank['recommendation']['reason']}", style="bold"))
    if rank.get("report"):
        console.print(f"report: {rank['report']}", markup=False)
