"""When a validation curve has plateaued, and what its plateau is, read robustly.

Shared by the training loop (a baseline trains until its curve plateaus, then cools its rate
down and stops) and by compare (the baseline's plateau is the target the transfer arms race).

Validation accuracy measured every quarter epoch is noisy: from scratch at 64 px one
evaluation can jump 0.4 -> 0.79 -> 0.6. So the curve is read through a trailing median of
the last three evaluations: one spike moves it not at all, two good evaluations out of three
do. On that smoothed curve:

- the curve has *plateaued* when its best value gained at most `min_gain` (0.5 points) over
  the evaluations of the last `lookback` share (a third) of the elapsed training time, and that
  stretch holds at least `min_evaluations` (6) evaluations and spans at least `min_epochs`
  (3) epochs. A share of the elapsed time, so the rule suits a run of 10 epochs and one of
  50 alike: confirming costs half the time the last gain took (a plateau reached at 100 s is
  confirmed at 150 s), and a curve still gaining half a point per third of its time is not
  called flat. The 3 epochs keep it from calling the first turbulent epochs at the peak
  rate (measured on elpv: evaluations swinging 0.46-0.71 for two epochs, then 0.77) a
  plateau, which the cool-down would then freeze into a weak baseline.
- the *plateau* is the best value of the smoothed curve, reached at the first evaluation whose
  smoothed value attains it: that evaluation's training seconds are when the baseline got there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlateauRule:
    window: int = 3              # evaluations in the trailing median
    min_gain: float = 0.005      # accuracy (0.5 points): less is no gain
    lookback: float = 1 / 3      # share of the elapsed training time the gain is looked for in
    min_evaluations: int = 6     # the looked-back stretch must hold at least this many evaluations
    min_epochs: float = 3.0      # ... and span at least this many epochs (when epochs are known)

    def describe(self) -> str:
        return (f"best of a trailing median of {self.window} validation evaluations; plateaued when it gained "
                f"<= {self.min_gain * 100:g} points over the last {self.lookback:.0%} of the training time "
                f"(>= {self.min_evaluations} evaluations and {self.min_epochs:g} epochs)")


PLATEAU_RULE = PlateauRule()


def smoothed(accuracies, window: int = PLATEAU_RULE.window) -> np.ndarray:
    """Trailing median: value j is the median of evaluations j-window+1 .. j. Until the window
    is full there is no reading (-inf): a first evaluation alone must not set a plateau."""
    a = np.asarray(accuracies, dtype=float)
    return np.array([np.median(a[j - window + 1:j + 1]) if j >= window - 1 else -np.inf for j in range(len(a))])


def has_plateaued(seconds, accuracies, rule: PlateauRule = PLATEAU_RULE, epochs=None) -> bool:
    """Has the curve (training seconds, validation accuracy and, if known, epoch per evaluation,
    in order) stopped gaining? A curve still rising by more than rule.min_gain over the lookback
    has not."""
    t = np.asarray(seconds, dtype=float)
    if len(t) == 0:
        return False
    s = smoothed(accuracies, rule.window)
    recent = t > (1 - rule.lookback) * t[-1]
    if recent.sum() < rule.min_evaluations or recent.all():
        return False  # too few evaluations to judge, or nothing before the stretch to compare with
    if epochs is not None:
        e = np.asarray(epochs, dtype=float)
        if e[-1] - e[~recent][-1] < rule.min_epochs:
            return False  # the stretch is too short in epochs to tell a plateau from turbulence
    return float(s.max() - s[~recent].max()) <= rule.min_gain


def read_plateau(seconds, accuracies, rule: PlateauRule = PLATEAU_RULE) -> dict | None:
    """{accuracy, seconds, evaluations} of the curve's plateau (see the module's note); None
    for a curve of fewer evaluations than the median needs: too short to read robustly."""
    if len(accuracies) < rule.window:
        return None
    s = smoothed(accuracies, rule.window)
    best = float(s.max())
    first = int(np.flatnonzero(s >= best - 1e-9)[0])
    return {"accuracy": round(best, 6), "seconds": round(float(seconds[first]), 3), "evaluations": len(s)}
