"""compare's verdict: does transfer reach the baseline's bar sooner, without ending less accurate?

Every figure the verdict reads is a measurement on a few hundred images at most, so a
difference inside its own noise is not evidence. Two noises, one per split:

- on validation (where the target and the times to it are read): one binomial standard error
  of an accuracy at the target on the validation set's size (`validation_band`). An arm whose
  best validation accuracy is inside that band of the target has matched it, as far as the
  data can tell: one image of 64 (0.891 against a plateau of 0.906, band 0.036) is not a miss.
- on test (where the final accuracies are compared): the larger of the seed spread and one
  binomial standard error of the baseline's test accuracy (`noise_on_test`, recorded as "noise").

The verdict is the first of `RULES` that holds over those figures; its key is one of
"transfer helps", "negative transfer", "inconclusive" (the report and the diagnosis read it),
and its sentence says which case it is: "Transfer helps, 14x sooner: ...", "As accurate, 88x
sooner: ...", "Inconclusive: ... within the noise (±x)", "Negative transfer: ..." only where
the baseline is ahead by more than the noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .baseline import plateau_sentence

BASELINE_NAMES = {"scratch": "scratch", "tfidf": "TF-IDF + logistic regression"}
SAME_SPEED = 1.2  # speed-ups within 1.2x either way are not called a difference (timing noise)


def validation_band(target: float, n_val: int | None) -> float:
    """One binomial standard error of a validation accuracy at the target: how far below the
    target an arm may end and still be level with it. 0 where the validation size is unknown
    (hand-made or old records), which keeps the exact reading."""
    if not n_val:
        return 0.0
    p = min(max(target, 0.001), 0.999)
    return math.sqrt(p * (1 - p) / n_val)


def noise_on_test(baseline: dict, arms: list[dict], n_test: int) -> float:
    """The larger of one binomial standard error of the baseline's test accuracy and the
    widest seed spread of any arm's test accuracy."""
    p = max(min(baseline["test_accuracy"], 0.999), 0.001)
    return max(math.sqrt(p * (1 - p) / max(n_test, 1)), max(a["test_accuracy_spread"] for a in arms))


@dataclass(frozen=True)
class Figures:
    """What the verdict reads: the baseline, the most accurate transfer arm on test (best), the
    one first at the target (fastest; None when none got there), and the noise of each split."""
    best: dict
    fastest: dict | None
    baseline: dict
    target: float
    noise: float         # on test
    band: float          # on validation, at the target
    speedup: float | None
    transfer_arms: tuple = ()

    @property
    def gap(self) -> float:  # > 0: transfer ends more accurate on test
        return self.best["test_accuracy"] - self.baseline["test_accuracy"]

    @property
    def ahead(self) -> bool:
        return self.gap > self.noise

    @property
    def behind(self) -> bool:
        return self.gap < -self.noise

    @property
    def base(self) -> str:  # "scratch" for a random-init arm, else what it is (TF-IDF)
        return BASELINE_NAMES.get(self.baseline["strategy"], self.baseline["name"])

    @property
    def t_base(self) -> float | None:
        return self.baseline["time_to_target_seconds"]

    @property
    def t(self) -> float | None:
        return self.fastest["time_to_target_seconds"] if self.fastest else None

    @property
    def closest(self) -> dict:
        """The transfer arm whose validation accuracy came nearest the target."""
        return self.fastest or max(self.transfer_arms, key=lambda a: a.get("best_val_accuracy") or 0)

    @property
    def within_band(self) -> bool:
        """Some transfer arm ended on validation inside the band of the target, though none
        reached it at the time the comparison read (a target read exactly: the user's own)."""
        val = self.closest.get("best_val_accuracy")
        return val is not None and self.band > 0 and val >= self.target - self.band - 1e-9

    @property
    def matched_exactly(self) -> bool:
        """The fastest arm's validation accuracy attained the target itself, not only its band."""
        val = self.fastest.get("best_val_accuracy") if self.fastest else None
        return val is None or val >= self.target - 1e-9


@dataclass(frozen=True)
class Rule:
    verdict: str                          # "transfer helps" | "negative transfer" | "inconclusive"
    holds: Callable[[Figures], bool]
    sentence: Callable[[Figures], str]


def _accuracies(f: Figures) -> str:
    return (f"{f.best['test_accuracy']:.3f} for {f.best['name']} vs {f.baseline['test_accuracy']:.3f} "
            f"for {f.base}")


def _points(f: Figures) -> str:
    return f"{abs(f.gap) * 100:.1f} points"


def _on_test(f: Figures) -> str:
    """The test figures, said as what they show."""
    if f.ahead:
        return f"{f.best['name']} ends {_points(f)} more accurate on test ({_accuracies(f)})"
    return f"on test {_accuracies(f)}, within the noise (±{f.noise * 100:.1f} points)"


def _times(speedup: float) -> str:
    return f"{speedup:.0f}x" if speedup >= 10 else f"{speedup:.1f}x"


def _race(f: Figures) -> str:
    return (f"in {f.t:.1f} s of training vs {f.t_base:.1f} s for {f.base} ({f.speedup:.1f}x faster, "
            f"{100 * (1 - 1 / f.speedup):.0f}% less time)")


def _band(f: Figures) -> str:
    n = f.baseline.get("val_size")
    return f"±{f.band:.3f}" + (f" on {n} validation images" if n else "")


def _sooner(f: Figures) -> bool:
    return f.speedup is not None and f.speedup >= SAME_SPEED


def _later(f: Figures) -> bool:
    return f.speedup is not None and f.speedup <= 1 / SAME_SPEED


# The first rule that holds gives the verdict. Accuracy on test decides first (a baseline that
# ends more accurate beyond the noise is negative transfer whatever the times), then the race
# to the target on validation, read within its band.
RULES: list[Rule] = [
    Rule("negative transfer", lambda f: f.behind, lambda f: (
        f"Negative transfer: {f.base} ({f.baseline['backbone']}) ends {_points(f)} more accurate on test "
        f"({_accuracies(f)}), beyond the noise (±{f.noise * 100:.1f} points); use the {f.base} model for this data.")),
    Rule("inconclusive", lambda f: f.fastest is None and f.within_band, lambda f: (
        f"Inconclusive: no transfer arm reached {f.target:.3f} validation accuracy, but {f.closest['name']} "
        f"ended within the noise of it ({f.closest['best_val_accuracy']:.3f}, {_band(f)}); {_on_test(f)}.")),
    Rule("negative transfer", lambda f: f.fastest is None and f.t_base is not None and not f.ahead, lambda f: (
        f"Negative transfer: {f.base} reached {f.target:.3f} validation accuracy in {f.t_base:.1f} s, and no "
        f"transfer arm came within the noise of it ({_band(f)}) before its budget ran out; {_on_test(f)}.")),
    Rule("inconclusive", lambda f: f.fastest is None and f.t_base is not None, lambda f: (
        f"Inconclusive: {f.base} reached {f.target:.3f} validation accuracy and no transfer arm did, but "
        f"{_on_test(f)}: validation and test disagree.")),
    Rule("inconclusive", lambda f: f.fastest is None, lambda f: (
        f"Inconclusive: no arm reached {f.target:.3f} validation accuracy decisively ({_accuracies(f)}).")),
    Rule("transfer helps", lambda f: f.t_base is None, lambda f: (
        f"Transfer helps: {f.fastest['name']} reached {f.target:.3f} validation accuracy in {f.t:.1f} s of "
        f"training; {f.base} never did within its budget ({_accuracies(f)}).")),
    Rule("transfer helps", lambda f: f.ahead and not _sooner(f) and not _later(f), lambda f: (
        # no faster, but clearly more accurate: a "0.9x faster" would mislead
        f"Transfer helps: {f.best['name']} ends {_points(f)} more accurate on test ({_accuracies(f)}), and "
        f"{f.fastest['name']} reached {f.target:.3f} validation accuracy about as fast as {f.base} ({f.t:.1f} s "
        f"vs {f.t_base:.1f} s of training).")),
    Rule("transfer helps", lambda f: _sooner(f) and (f.ahead or f.matched_exactly), lambda f: (
        f"Transfer helps, {_times(f.speedup)} sooner: {f.fastest['name']} reached {f.target:.3f} validation "
        f"accuracy {_race(f)}; {_on_test(f)}.")),
    Rule("transfer helps", _sooner, lambda f: (  # level on test, and on validation within the band
        f"As accurate, {_times(f.speedup)} sooner: {f.fastest['name']} came within the noise of {f.base}'s "
        f"{f.target:.3f} validation accuracy ({f.fastest['best_val_accuracy']:.3f}, {_band(f)}) in {f.t:.1f} s of "
        f"training; {f.base} took {f.t_base:.1f} s to come as close ({f.speedup:.1f}x faster, "
        f"{100 * (1 - 1 / f.speedup):.0f}% less time); {_on_test(f)}.")),
    Rule("negative transfer", lambda f: _later(f) and not f.ahead, lambda f: (
        f"Negative transfer: {f.base} reaches {f.target:.3f} validation accuracy sooner ({f.t_base:.1f} s vs "
        f"{f.t:.1f} s for {f.fastest['name']}) and ends within the noise on test ({_accuracies(f)}); "
        f"transfer buys nothing here.")),
    Rule("inconclusive", _later, lambda f: (  # and transfer ends clearly more accurate
        f"A trade-off: {f.base} reaches {f.target:.3f} validation accuracy sooner ({f.t_base:.1f} s vs "
        f"{f.t:.1f} s for {f.fastest['name']}), but {f.best['name']} ends {_points(f)} more accurate on test "
        f"({_accuracies(f)}); choose transfer if the accuracy matters more than those seconds.")),
    Rule("inconclusive", lambda f: True, lambda f: (
        f"Inconclusive: transfer and {f.base} are within the noise of each other in time "
        f"(speed-up {f.speedup:.2f}x) and accuracy ({_accuracies(f)}; within the noise, "
        f"±{f.noise * 100:.1f} points).")),
]


def judge(arms: list[dict], target: float, n_test: int) -> dict:
    """The verdict over the arms' records (compare.summarise makes them): {verdict,
    verdict_sentence, best_arm, baseline_arm, speedup, time_saved_pct, noise, val_noise}.

    A pure function of the records, so a comparison.json can be judged again and agree."""
    baselines = [a for a in arms if a.get("baseline", a["strategy"] == "scratch")]
    # the best baseline arm: the most accurate on test, the fastest to the target among equals
    scratch = max(baselines, key=lambda a: (a["test_accuracy"], -(a["time_to_target_seconds"] or 1e18)),
                  default=None)
    transfer = [a for a in arms if a not in baselines]
    fastest = min((a for a in transfer if a["time_to_target_seconds"] is not None),
                  key=lambda a: a["time_to_target_seconds"], default=None)
    best = max(transfer, key=lambda a: a["test_accuracy"], default=None)
    result = {"best_arm": None, "speedup": None, "time_saved_pct": None,
              "baseline_arm": scratch["name"] if scratch else None}
    if best is None:
        return {**result, "verdict": "inconclusive", "verdict_sentence": "No transfer arm ran."}
    result["best_arm"] = (fastest or best)["name"]
    if scratch is None:
        t = fastest["time_to_target_seconds"] if fastest else None
        sentence = (f"{fastest['name']} reached {target:.3f} validation accuracy in {t:.1f} s of training."
                    if fastest else f"No arm reached {target:.3f} validation accuracy within its budget.")
        return {**result, "verdict": "inconclusive", "verdict_sentence": sentence + " (no baseline arm to compare with)"}

    t_scratch = scratch["time_to_target_seconds"]
    t_transfer = fastest["time_to_target_seconds"] if fastest else None
    if t_scratch is not None and t_transfer is not None and t_transfer > 0:
        result["speedup"] = round(t_scratch / t_transfer, 2)
        result["time_saved_pct"] = round(100 * (1 - t_transfer / t_scratch), 1)
    figures = Figures(best=best, fastest=fastest, baseline=scratch, target=target,
                      noise=noise_on_test(scratch, arms, n_test), band=validation_band(target, scratch.get("val_size")),
                      speedup=result["speedup"], transfer_arms=tuple(transfer))
    rule = next(r for r in RULES if r.holds(figures))
    sentence = rule.sentence(figures)
    if scratch.get("plateau"):  # say where the baseline's bar came from (and when a cap cut it short)
        sentence += " " + plateau_sentence(figures.base, scratch["plateau"],
                                           target_is_plateau=abs(scratch["plateau"]["accuracy"] - target) < 1e-9)
    return {**result, "verdict": rule.verdict, "verdict_sentence": sentence,
            "noise": round(figures.noise, 4), "val_noise": round(figures.band, 4)}
