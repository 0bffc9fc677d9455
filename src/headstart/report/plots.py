"""Pure plotting functions for run reports: data in, one PNG file out.

Every function takes plain Python data (rows of metrics.jsonl, lists from summary.json or
comparison.json) and a destination path, draws with matplotlib's Agg backend and writes the PNG
atomically. Nothing here reads run directories, so plots can be tested and reused on their own.

Colours come from the Okabe-Ito palette and the colour maps are viridis-family, both readable
with the common forms of colour blindness; marker shapes repeat the colour information so the
figures also survive greyscale printing.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # reports are written by headless training runs: never open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

from headstart.files import atomic_write_bytes  # noqa: E402

# Okabe-Ito, minus yellow (too light on white) and black (reserved for reference lines).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#999999"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
NEVER_COLOUR = "#BBBBBB"

DPI = 100  # one figure inch = 100 CSS pixels, so PNGs read at 100 % zoom without rescaling
STYLE = {
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def marker(i: int) -> str:
    return MARKERS[i % len(MARKERS)]


def plain(text: object, limit: int = 28) -> str:
    """A user string made safe for matplotlib text: '$' would start mathtext, and very long
    names would push the axes off the figure."""
    s = str(text)
    if len(s) > limit:
        # Cut from the middle: class names often share a prefix and differ at the end.
        head = (limit - 1) // 2
        s = s[:head] + "…" + s[len(s) - (limit - 1 - head):]
    return s.replace("$", r"\$")


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 600:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _save(fig: plt.Figure, path: Path) -> Path:
    # Render to memory first so a crash mid-draw never leaves a truncated PNG on disk.
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _accuracy_axis(ax: plt.Axes, label: str) -> None:
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel(f"{label} (%)")


def _accuracy_limits(ax: plt.Axes, values: Iterable[float]) -> None:
    vals = [v for v in values if v is not None]
    low = min(vals) if vals else 0.0
    # Start at 0 unless every point is high, where a 0-100 % axis would flatten the curve.
    bottom = 0.0 if low < 0.5 else max(0.0, np.floor((low - 0.05) * 10) / 10)
    ax.set_ylim(bottom, 1.02)


def _log_floor(times: Sequence[float]) -> float:
    """The smallest x a log axis can show: evaluations at 0 s (before any training) are
    clipped to half the smallest positive time, or 0.01 s when there is none."""
    positive = [t for t in times if t > 0]
    return min(positive) / 2 if positive else 0.01


# -- fit report ------------------------------------------------------------------------------

def learning_curve(rows: list[dict], path: Path, *, x: str = "train_seconds",
                   test_accuracy: float | None = None, title: str = "Learning curve") -> Path:
    """Validation accuracy against training seconds (x="train_seconds") or epochs (x="epoch").

    One line through every validation evaluation, with markers by phase so an lp-ft run shows
    where the probe ends and fine-tuning begins; the final test accuracy is a dashed line.
    """
    val = [r for r in rows if r.get("split") == "val" and r.get("accuracy") is not None]
    val.sort(key=lambda r: (r.get(x) or 0.0, r.get("step") or 0))
    xs = [float(r.get(x) or 0.0) for r in val]
    ys = [float(r["accuracy"]) for r in val]

    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8.5, 4.6))
        ax.plot(xs, ys, color="#555555", linewidth=1.2, zorder=1)
        phases = list(dict.fromkeys(str(r.get("phase", "val")) for r in val))
        for i, phase in enumerate(phases):
            pts = [(a, b) for a, b, r in zip(xs, ys, val) if str(r.get("phase", "val")) == phase]
            ax.scatter(*zip(*pts), color=colour(i), marker=marker(i), s=36, zorder=2,
                       label=f"validation ({plain(phase)})")
        if ys:
            best = int(np.argmax(ys))
            ax.annotate(f"best {ys[best]:.1%}", (xs[best], ys[best]), xytext=(0, 10),
                        textcoords="offset points", ha="center", fontsize=10)
        if test_accuracy is not None:
            ax.axhline(test_accuracy, color="black", linestyle="--", linewidth=1,
                       label=f"test accuracy {test_accuracy:.1%}")
        _accuracy_axis(ax, "Validation accuracy")
        _accuracy_limits(ax, ys + ([test_accuracy] if test_accuracy is not None else []))
        ax.set_xlabel("Epoch" if x == "epoch" else "Training time (s, evaluation excluded)")
        ax.set_xlim(left=0)
        ax.set_title(plain(title, 80))
        ax.legend(loc="lower right")
        return _save(fig, path)


def confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, *,
                     title: str = "Confusion matrix (test set)") -> Path:
    """Rows normalised per true class, so each cell reads as "share of class i predicted as j"
    whatever the class sizes; raw counts are written in the cells while they still fit."""
    counts = np.asarray(matrix, dtype=float)
    k = counts.shape[0]
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    names = [plain(c, 22) for c in classes][:k] + [str(i) for i in range(len(classes), k)]

    # Capped so the PNG fits the 1100 px page column at 100 % zoom; past ~40 classes the
    # labels no longer fit one per cell, so only every n-th class is named.
    side = float(np.clip(3.0 + 0.45 * k, 5.5, 9.5))
    label_size = 11 if k <= 10 else 9 if k <= 20 else 7
    every = int(np.ceil(k / 40))
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(side + 1.2, side))
        im = ax.imshow(share, cmap="viridis", vmin=0.0, vmax=1.0)
        cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cbar.ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        cbar.set_label("Share of true class (%)")
        ticks = np.arange(0, k, every)
        names = [names[i] for i in ticks]
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        # Rotate column labels once they would collide side by side.
        rotate = k > 5 or max(map(len, names), default=0) > 8
        ax.set_xticklabels(names, fontsize=label_size, rotation=45 if rotate else 0,
                           ha="right" if rotate else "center", rotation_mode="anchor")
        ax.set_yticklabels(names, fontsize=label_size)
        if k <= 12:
            _annotate_cells(ax, counts, share)
        ax.set_xlabel("Predicted class")
        ax.set_ylabel("True class")
        ax.set_title(plain(title, 80))
        return _save(fig, path)


def _annotate_cells(ax: plt.Axes, counts: np.ndarray, share: np.ndarray) -> None:
    size = 10 if counts.shape[0] <= 8 else 8
    for i, j in np.ndindex(counts.shape):
        # viridis is dark at the low end: white text on dark cells, black on light ones.
        ax.text(j, i, f"{int(counts[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                fontsize=size, color="white" if share[i, j] < 0.6 else "black")


def per_class_accuracy(per_class: dict[str, dict], classes: Sequence[str], path: Path, *,
                       macro_f1: float | None = None,
                       title: str = "Per-class accuracy (recall, test set)") -> Path:
    """Horizontal bars of recall per class, so long class names stay readable; the dashed
    line is the mean recall (balanced accuracy) and macro-F1 is written in the title."""
    names = [c for c in classes if c in per_class] or list(per_class)
    recall = [float(per_class[c].get("recall") or 0.0) for c in names]
    support = [per_class[c].get("support") for c in names]

    height = float(np.clip(1.2 + 0.38 * len(names), 3.0, 24.0))
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(8.5, height))
        pos = np.arange(len(names))
        ax.barh(pos, recall, color=colour(0), height=0.7)
        for p, r, n in zip(pos, recall, support):
            label = f"{r:.0%}" + (f"  (n={n})" if n is not None else "")
            ax.text(min(r, 1.0) + 0.01, p, label, va="center", fontsize=9, zorder=3,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"})
        if recall:
            # Labelled above the axes rather than in a legend, which would cover a bar label.
            mean = float(np.mean(recall))
            ax.axvline(mean, color="black", linestyle="--", linewidth=1)
            ax.text(mean, 1.0, f"mean recall {mean:.1%}", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=9)
        ax.set_yticks(pos)
        ax.set_yticklabels([plain(n, 30) for n in names], fontsize=10 if len(names) <= 25 else 8)
        ax.invert_yaxis()  # first class on top, in the order of the summary
        ax.set_xlim(0, 1.18)  # room for the value labels beyond 100 %
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("Recall: share of the class predicted correctly (%)")
        suffix = f" — macro-F1 {macro_f1:.3f}" if macro_f1 is not None else ""
        ax.set_title(plain(title, 80) + suffix, pad=18)
        return _save(fig, path)


# -- comparison report -----------------------------------------------------------------------

def accuracy_vs_time(arms: list[dict], path: Path, *, target: float | None = None,
                     title: str = "Validation accuracy vs training time") -> Path:
    """Every arm's validation curve on a log time axis (arms differ by orders of magnitude),
    the target as a horizontal line and each arm's time-to-target as a labelled marker.

    arms: [{"name", "rows": metrics rows, "time_to_target_seconds": float|None}] in the order
    that fixes their colours (the same order as time_to_target_bars).
    """
    curves = []
    for arm in arms:
        val = [r for r in arm.get("rows", []) if r.get("split") == "val"
               and r.get("accuracy") is not None]
        val.sort(key=lambda r: r.get("train_seconds") or 0.0)
        curves.append(([float(r.get("train_seconds") or 0.0) for r in val],
                       [float(r["accuracy"]) for r in val]))
    all_times = [t for xs, _ in curves for t in xs]
    all_times += [a["time_to_target_seconds"] for a in arms if a.get("time_to_target_seconds")]
    floor = _log_floor(all_times)

    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(9.5, 5.2))
        for i, (arm, (xs, ys)) in enumerate(zip(arms, curves)):
            xs = [max(t, floor) for t in xs]
            ax.plot(xs, ys, color=colour(i), marker=marker(i), markersize=4, linewidth=1.6,
                    label=plain(arm["name"]))
        for i, arm in enumerate(arms):
            ttt = arm.get("time_to_target_seconds")
            if ttt is not None and target is not None:
                _mark_time_to_target(ax, arm["name"], max(ttt, floor), ttt, target, i,
                                     right_half=_in_right_half(max(ttt, floor), all_times, floor))
        if target is not None:
            ax.axhline(target, color="black", linestyle="--", linewidth=1,
                       label=f"target {target:.1%}")
        if not all_times:
            ax.text(0.5, 0.5, "no evaluations recorded", transform=ax.transAxes,
                    ha="center", va="center", fontsize=14, color="#555555")
        ax.set_xscale("log")
        ax.set_xlabel("Training time (s, log scale, evaluation excluded)")
        _accuracy_axis(ax, "Validation accuracy")
        _accuracy_limits(ax, [y for _, ys in curves for y in ys] + ([target] if target else []))
        ax.set_title(plain(title, 80))
        ax.legend(loc="best", framealpha=0.9)
        return _save(fig, path)


def _in_right_half(t: float, times: Sequence[float], floor: float) -> bool:
    hi = max([floor, *times])
    return np.log(t) > (np.log(floor) + np.log(hi)) / 2


def _mark_time_to_target(ax: plt.Axes, name: str, x: float, ttt: float, target: float, i: int,
                         *, right_half: bool) -> None:
    """A star where the arm first reached the target, labelled below the line; labels near the
    right edge extend leftwards so they stay inside the axes, and successive arms step down
    so labels of arms that reach the target at similar times do not overprint."""
    ax.scatter([x], [target], s=160, marker="*", color=colour(i), edgecolor="black",
               linewidth=0.8, zorder=5)
    ax.annotate(f"{plain(name, 18)}: {fmt_seconds(ttt)}", (x, target),
                xytext=(-8 if right_half else 8, -14 - 14 * (i % 3)), textcoords="offset points",
                ha="right" if right_half else "left", va="top", fontsize=10, color=colour(i),
                fontweight="bold",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                      "alpha": 0.6})


def time_to_target_bars(arms: list[dict], path: Path, *, target: float | None = None,
                        speedup: float | None = None, time_saved_pct: float | None = None,
                        title: str = "Time to reach the target accuracy") -> Path:
    """One horizontal bar per arm: training seconds until validation accuracy first reached
    the target. Arms that never did get a pale hatched bar as long as the time they trained,
    labelled "never within budget", so they are not mistaken for fast arms.

    arms: [{"name", "time_to_target_seconds": float|None, "train_seconds": float|None}].
    """
    names = [plain(a["name"]) for a in arms]
    ttt = [a.get("time_to_target_seconds") for a in arms]
    budget = [a.get("train_seconds") or 0.0 for a in arms]
    longest = max([t for t in ttt if t is not None] + budget + [1e-9])

    height = float(np.clip(1.6 + 0.6 * len(arms), 3.0, 12.0))
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(figsize=(9.5, height))
        pos = np.arange(len(arms))
        for i, (t, b) in enumerate(zip(ttt, budget)):
            if t is None:
                ax.barh(i, b, color=NEVER_COLOUR, hatch="//", edgecolor="#777777", height=0.6)
                label = f"never within budget (trained {fmt_seconds(b)})"
            else:
                ax.barh(i, t, color=colour(i), height=0.6)
                label = fmt_seconds(t)
            ax.text((t if t is not None else b) + longest * 0.01, i, label, va="center",
                    fontsize=10)
        ax.set_yticks(pos)
        ax.set_yticklabels(names)
        ax.invert_yaxis()
        ax.set_xlim(0, longest * 1.45)  # room for the longest label to the right of its bar
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("Training time to reach the target (s, evaluation excluded)")
        if target is not None:
            title = f"{title} ({target:.1%})"
        # The speed-up is the headline, so it sits as a bold line under the title where no bar
        # or label can hide it.
        ax.set_title(plain(title, 80), pad=30)
        ax.text(0.5, 1.02, _speedup_text(speedup, time_saved_pct), transform=ax.transAxes,
                ha="center", va="bottom", fontsize=12, fontweight="bold", color=PALETTE[0])
        return _save(fig, path)


def _speedup_text(speedup: float | None, time_saved_pct: float | None) -> str:
    if speedup is None:
        return "speed-up: n/a"
    if speedup < 1:  # the baseline got there first: say it that way, not "-293 % time saved"
        return f"the baseline was ×{1 / speedup:.1f} faster"
    text = f"speed-up ×{speedup:.1f}"
    if time_saved_pct is not None:
        text += f"  ({time_saved_pct:.0f} % time saved)"
    return text


def label_curve(curve: dict, path: Path, *, title: str = "Test accuracy vs training labels") -> Path:
    """Test accuracy against the number of training labels (log axis), one line per arm through
    its seeds' median with their range shaded (baselines dashed), and the baseline at all labels
    as a dotted line.

    curve: label_curves.json: {"arms": [{"name", "baseline", "points": [{"labels",
    "test_accuracy", "low", "high"}]}], "baseline_arm", "baseline_accuracy", "needed"}.
    """
    arms = curve.get("arms") or []
    bar = curve.get("baseline_accuracy")
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(9.5, 5.2))
        values = []
        for i, arm in enumerate(arms):
            pts = sorted(arm.get("points") or [], key=lambda p: p["labels"])
            xs = [max(p["labels"], 1) for p in pts]
            ys, lo, hi = ([p[k] for p in pts] for k in ("test_accuracy", "low", "high"))
            values += lo + hi
            ax.plot(xs, ys, color=colour(i), marker=marker(i), markersize=5, linewidth=1.6,
                    linestyle="--" if arm.get("baseline") else "-", label=plain(arm["name"]))
            if any(h > l for l, h in zip(lo, hi)):
                ax.fill_between(xs, lo, hi, color=colour(i), alpha=0.15, linewidth=0)
        if bar is not None:
            ax.axhline(bar, color="black", linestyle=":", linewidth=1,
                       label=f"{plain(curve.get('baseline_arm'))} at all labels {bar:.1%}")
        needed = curve.get("needed")
        if needed:
            ax.scatter([needed["labels"]], [needed["test_accuracy"]], s=160, marker="*", color="black",
                       zorder=5, label=f"{plain(needed['arm'])} matches at {needed['labels']:,} labels")
        ax.set_xscale("log")
        measured = sorted({max(p["labels"], 1) for a in arms for p in a.get("points") or []})
        if measured:  # ticks at the measured budgets, as plain counts (not 2x10^1)
            ax.set_xticks(measured, [f"{n:,}" for n in measured])
            ax.set_xticks([], minor=True)
        ax.set_xlabel("Training labels (log scale)")
        _accuracy_axis(ax, "Test accuracy")
        _accuracy_limits(ax, values + ([bar] if bar is not None else []))
        ax.set_title(plain(title, 80))
        ax.legend(loc="lower right", framealpha=0.9)
        return _save(fig, path)
