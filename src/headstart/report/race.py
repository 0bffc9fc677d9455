"""The race `--strategy auto` ran, drawn: validation accuracy against the race's seconds, one
line per arm, each slice's end marked (where the arm paused or was cut) and each arm's fate
(won, dropped, stopped) at its last point. It reads the race record summary.json keeps under
auto.strategy.evidence.race, so any run that raced can be drawn again."""
from __future__ import annotations

from pathlib import Path

from . import plots
from .plots import plt


def race_figure(race: dict, path: Path) -> Path | None:
    """RUN/race.png from a race record; None when no arm has a point to draw."""
    arms = [a for a in race.get("arms") or [] if a.get("curve")]
    if not arms:
        return None
    with plt.rc_context(plots.STYLE):
        fig, ax = plt.subplots(figsize=(8, 4.6))
        for i, arm in enumerate(arms):
            at = [p["at"] for p in arm["curve"]]
            accuracy = [p["accuracy"] for p in arm["curve"]]
            won = (arm.get("fate") or "").startswith("won")
            ax.plot(at, accuracy, marker=plots.marker(i), markersize=4, linewidth=2.4 if won else 1.4,
                    color=plots.colour(i), label=f"{plots.plain(arm['name'])}: {_fate(arm)}")
            for cut in arm.get("slices") or []:  # a slice's end: the arm paused here, or was cut
                ax.axvline(cut["to"], color=plots.colour(i), alpha=0.25, linewidth=1, linestyle=":")
            if not won:
                ax.plot(at[-1:], accuracy[-1:], marker="x", markersize=10, color=plots.colour(i))
        plots._accuracy_axis(ax, "Validation accuracy")
        plots._accuracy_limits(ax, [p["accuracy"] for a in arms for p in a["curve"]])
        ax.set_xlim(left=0)  # the race's start: an arm that began late shows it
        ax.set_xlabel("seconds into the race (dotted: a slice's end)")
        ax.set_title("--strategy auto: the race")
        ax.legend(loc="lower right")
        return plots._save(fig, path)


def _fate(arm: dict) -> str:
    fate = arm.get("fate") or ""
    return fate.split(":")[0] if fate else "ran"
