"""`--strategy auto`: which strategy to train, chosen from evidence and kept inside the budget.

The evidence, gathered in a few percent of the budget before anything is kept:
1. this machine's measured rates for the pretrained backbone and for the scratch model
   (train/throughput.py: inference, and a training step when fine-tuning could fit at all; a
   few seconds, cached per machine);
2. a pilot of the probe: the real probe under 60 % of the time left once the rates are measured
   (and its validation pass) (complete, its features are cached, so a chosen probe or lp-ft
   reuses them and the pilot is not wasted; cut short, its anytime heads after 1/8, 1/4, 1/2
   of the data say what the rest would add). The pilots' observed pace is checked against the
   cached rates: one off by more than 2x is measured again at its next use;
3. a pilot of the no-transfer baseline: the scratch model trained for a few percent of the
   budget (its early validation curve), or for text the one-shot TF-IDF model (exact).

The budget given is what the fit's deadline has left, less its closing parts (auto_fit.py).
The choice: project each side to the end of the budget and take the better. Each side is its
pilot's best accuracy plus what further doublings would add if each adds half as much as the one
before (concave learning curves in log-scale, the shape both have): for scratch, doublings of its
training time; for the probe, doublings of the training examples it can afford (none when its
pilot completed). lp-ft starts from the probe's head and keeps it unless it beats it, so it
only adds. Transfer wins ties: it is the cheaper bet to keep. A transfer choice
is lp-ft when at least two epochs of fine-tuning fit in what the pilots left, else the probe.
The stages (building a model, running a short unrecorded fit) are the pipeline's, passed in by
auto_fit.py (and faked by the tests), so this module decides and never writes a run.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ..errors import HeadstartError
from ..log import say
from ..pipeline import KeptTraining
from ..strategies.estimate import Workload, describe_seconds, epoch_seconds, probe_seconds
from ..train.throughput import Rates

BUDGET_WITHOUT_ONE = 300.0   # auto needs a budget to fit; without --budget it plans for 5 minutes
PILOT_SHARE = 0.06           # the scratch pilot's share of the budget
MIN_PILOT_SECONDS = 4.0
FULL_PROBE_SHARE = 0.6       # the probe pilot's budget: the real probe, on all the data it gets through
FINETUNE_EPOCHS = 2          # lp-ft only when this many epochs fit after the probe
EDGE = 0.005                 # a projected edge smaller than half a point is no edge
# a projection removes at most this share of the error left at the pilot's end: a short pilot
# sees the steep start of a curve and not where it flattens (on Fashion-MNIST at 100 labels per
# class, scratch's pilot gained 0.6 over its first doubling and then plateaued at 0.83)
MAX_ERROR_REMOVED = 0.35


@dataclass
class Stages:
    """What auto needs from the pipeline (auto_fit.pipeline_stages; injected, so the choice can be
    tested on given evidence)."""
    rates: Callable[[str], Rates | None]                  # strategy -> its model's measured rates (None: one-shot)
    pilot: Callable[..., dict]                            # (strategy, budget, train, val, evals_per_epoch) -> rows
    no_transfer: str                                      # the baseline's strategy: scratch (images) or tfidf (text)


@dataclass
class Choice:
    strategy: str
    reason: str
    budget_left: float | None
    evidence: dict = field(default_factory=dict)
    kept: KeptTraining | None = None  # the probe pilot's training, when the probe is chosen

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "reason": self.reason, "evidence": self.evidence}


def choose_strategy(train, val, test_size: int, budget: float | None, stages: Stages, *, seed: int = 0) -> Choice:
    started = time.perf_counter()
    planned = budget if budget is not None else BUDGET_WITHOUT_ONE
    work = Workload(train=len(train), val=len(val), test=test_size, epochs=FINETUNE_EPOCHS)
    transfer_rates = stages.rates("probe")
    baseline_rates = stages.rates(stages.no_transfer)
    probe_cost = probe_seconds(work, transfer_rates)
    evidence = {"budget_seconds": planned, "budget_given": budget is not None,
                "rates": {"transfer": transfer_rates.to_dict(),
                          "baseline": baseline_rates.to_dict() if baseline_rates else None},
                "probe_seconds_expected": round(probe_cost, 2)}
    _check_affordable(planned, probe_cost, work, baseline_rates, stages.no_transfer)
    # what the fit does after training, kept out of every share: the test pass, the run's files
    closing = CLOSING_RESERVE + test_size / transfer_rates.forward
    planned_work = max(planned - closing, MIN_PILOT_SECONDS)

    # each pilot's share is of the time left when it starts, not of the budget at the choice's
    # start: measuring the rates (an engine's first export) may have taken many seconds of it
    probe = _probe_pilot(train, val, planned_work - (time.perf_counter() - started), stages,
                         len(val) / transfer_rates.forward)
    baseline = _baseline_pilot(train, val, planned_work, work, baseline_rates, stages,
                               left=planned_work - (time.perf_counter() - started))
    evidence["pilots"] = {"probe": _brief(probe), stages.no_transfer: _brief(baseline)}
    transfer_rates = _checked_against_pilots(transfer_rates, baseline_rates, probe, baseline, len(train), len(val),
                                             evidence)

    spent = time.perf_counter() - started
    left = planned_work - spent
    transfer_acc = _project_probe(probe, len(train), left)
    baseline_acc = _project(baseline, left) if baseline_rates is not None else baseline["best_val_accuracy"]
    evidence.update(projected={"transfer": round(transfer_acc, 4), stages.no_transfer: round(baseline_acc, 4)},
                    choosing_seconds=round(spent, 2))
    if baseline_acc > transfer_acc + EDGE:
        strategy = stages.no_transfer
        reason = (f"{stages.no_transfer} is projected to reach {baseline_acc:.3f} validation accuracy in the "
                  f"{describe_seconds(left)} left against {transfer_acc:.3f} for the pretrained backbone's probe: "
                  f"transfer does not pay here")
    else:
        probe_left = 0.0 if probe["complete"] else probe_cost  # a complete pilot cached the features
        room = left - probe_left - HEAD_RESERVE
        # a training step costs at least an inference pass: when even that bound leaves no room
        # for the epochs, the training rate is not worth the seconds measuring it costs
        epochs_fit = room / epoch_seconds(work, transfer_rates)
        if epochs_fit >= FINETUNE_EPOCHS:
            train_rates = stages.rates("lp-ft")
            evidence["rates"]["transfer_training"] = train_rates.to_dict()
            epochs_fit = (left - (time.perf_counter() - started - spent) - probe_left - HEAD_RESERVE) \
                / epoch_seconds(work, train_rates)
        evidence["finetune_epochs_that_fit"] = round(epochs_fit, 2)
        gap = f"{transfer_acc:.3f} against {baseline_acc:.3f} projected for {stages.no_transfer}"
        if epochs_fit >= FINETUNE_EPOCHS:
            strategy = "lp-ft"
            reason = (f"the probe leads ({gap}) and {epochs_fit:.1f} epochs of fine-tuning fit in the "
                      f"{describe_seconds(left)} left, so lp-ft starts from the probe's head and tunes every layer")
        else:
            strategy = "probe"
            reason = (f"the probe leads ({gap}); fine-tuning would fit only {max(epochs_fit, 0):.1f} "
                      f"epoch(s) in the {describe_seconds(left)} left, so the probe stays")
    left = planned - closing - (time.perf_counter() - started)
    evidence["choosing_seconds"] = round(time.perf_counter() - started, 2)
    # a chosen probe is its pilot: the real probe on all the data it had time for (with cached
    # features when complete). Training it again would cost seconds and, cut short, do worse.
    kept = probe.get("kept") if strategy == "probe" else None
    if kept is not None:
        reason += " (its pilot is the run: no second pass)"
    say(f"--strategy auto chose {strategy}: {reason}")
    return Choice(strategy, reason, max(left, 1.0) if budget is not None else None, evidence,
                  kept=kept)


HEAD_RESERVE = 3.0  # seconds for the head sweep and the test pass after fine-tuning
# seconds kept beside the test pass for building the chosen model and its first files: the
# caller's budget is already net of the closing parts (post_fit.closing_reserve), and the
# training that follows is given the fit's deadline itself (pipeline.complete_fit)
CLOSING_RESERVE = 2.0


def _checked_against_pilots(transfer_rates: Rates, baseline_rates: Rates | None, probe: dict, baseline: dict,
                            n_train: int, n_val: int, evidence: dict) -> Rates:
    """The pilots ran the real work: where a cached rate is off by more than 2x from what they
    observed, the cache is marked stale (train/throughput.reconcile) and the rest of this choice
    uses the observed rate."""
    from ..strategies.estimate import HEAD_FIT_SECONDS
    from ..train.throughput import reconcile

    observed = {}
    # the probe's pilot: its feature passes (train and validation) and a head sweep; on a few
    # seconds the sweep would dominate, so only a longer pilot that extracted is read
    if probe.get("wall_seconds", 0.0) > 3 * HEAD_FIT_SECONDS and not probe.get("features_cached"):
        seconds = probe["wall_seconds"] - HEAD_FIT_SECONDS
        observed["transfer"] = (probe.get("n_train", 0) + n_val) / seconds
        if reconcile(transfer_rates, forward=observed["transfer"]):
            transfer_rates = replace(transfer_rates, forward=observed["transfer"], cached=False)
    rows = [r for r in baseline.get("rows", []) if r.get("split") == "val" and r.get("train_seconds")]
    if baseline_rates is not None and rows:  # the scratch pilot's own training clock
        observed["baseline_training"] = rows[-1].get("epoch", 0.0) * n_train / rows[-1]["train_seconds"]
        reconcile(baseline_rates, train=observed["baseline_training"])
    evidence["observed_rates"] = {k: round(v, 1) for k, v in observed.items()}
    return transfer_rates


def _check_affordable(budget: float, probe_cost: float, work: Workload, baseline_rates: Rates | None,
                      baseline: str) -> None:
    """Item 7: a budget too small for anything names the minimum."""
    pilot = max(MIN_PILOT_SECONDS, PILOT_SHARE * budget)
    one_epoch = work.train / baseline_rates.train if baseline_rates else 0.0
    minimum = min(probe_cost, one_epoch + pilot) + pilot
    if budget < minimum:
        raise HeadstartError(
            f"a budget of {budget:.0f} s is too small for --strategy auto here: the cheapest choice needs about "
            f"{minimum:.0f} s on this machine (the probe's feature pass {probe_cost:.0f} s for "
            f"{work.train + work.val + work.test} examples, plus the pilots)",
            hint=f"give --budget {math.ceil(minimum * 1.2)}s or more, or name a strategy (e.g. --strategy probe)")


def _probe_pilot(train, val, budget, stages, val_seconds: float = 0.0) -> dict:
    """The real probe under a share of the budget, asked for a curve: its anytime heads after 1/8,
    1/4 and 1/2 of the training examples are a learning curve over data. Complete, its features
    are cached and a chosen probe or lp-ft reuses them; cut short, it fitted on the stratified
    share it had time for, and the curve says what the rest would add. Its budget also covers its
    validation pass, which the probe's wall clock counts but a fixed probe's share would not
    (without it, on a slow machine the pilot spent its share embedding the validation split)."""
    out = stages.pilot("probe", FULL_PROBE_SHARE * budget + val_seconds, train, val, evals_per_epoch=4)
    return {**out, "complete": out["n_used"] >= len(train), "n_train": out["n_used"]}


def _project_probe(pilot: dict, n_total: int, seconds_left: float) -> float:
    """The probe's accuracy on the examples it can afford in what is left: all of them when its
    pilot completed (the features are cached); else as many as the pilot's pace allows, with the
    gain of the pilot's last doubling of data, halved at each further doubling."""
    best, used = pilot["best_val_accuracy"], max(pilot["n_train"], 1)
    if pilot["complete"]:
        return best
    seconds = max(pilot.get("wall_seconds", 0.0), 1e-9)
    affordable = min(n_total, used * seconds_left / seconds)
    points = [(r["n_train"], r["accuracy"]) for r in pilot["rows"] if r.get("n_train")]
    half = [a for n, a in points if n <= used / 2]
    gain = max(0.0, best - max(half)) if half else 0.0
    doublings = math.log2(affordable / used) if affordable > used else 0.0
    added = gain * (2 - 2 ** (1 - doublings)) if doublings > 0 else 0.0
    return float(min(best + added, best + MAX_ERROR_REMOVED * (1 - best)))


def _baseline_pilot(train, val, budget, work, rates, stages, left: float | None = None) -> dict:
    """The no-transfer baseline's pilot: PILOT_SHARE of the budget, at most half of what is `left`."""
    if rates is None:  # one-shot (TF-IDF): the pilot is the whole fit
        return {**stages.pilot(stages.no_transfer, None, train, val), "complete": True}
    seconds = max(MIN_PILOT_SECONDS, min(PILOT_SHARE * budget, budget if left is None else left / 2))
    epochs = seconds / max(work.train / rates.train, 1e-9)
    # at least ~6 evaluations inside the pilot, so its curve has a shape to read
    evals = int(min(20, max(1, math.ceil(6 / max(epochs, 1e-9)))))
    out = stages.pilot(stages.no_transfer, seconds, train, val, evals_per_epoch=evals)
    return {**out, "complete": False}


def _project(pilot: dict, seconds_left: float) -> float:
    """The baseline's accuracy after `seconds_left` of training, from its pilot curve: its best so
    far, plus the gain of its last doubling of time, halved at each further doubling."""
    points = [(r["train_seconds"], r["accuracy"]) for r in pilot["rows"] if r.get("split") == "val"]
    if not points:
        return pilot["best_val_accuracy"]
    t_end = max(t for t, _ in points)
    best = max(a for _, a in points)
    before_half = [a for t, a in points if t <= t_end / 2]
    gain = max(0.0, best - max(before_half)) if before_half else 0.0
    doublings = math.log2(max(seconds_left, t_end) / max(t_end, 1e-9))
    added = gain * (2 - 2 ** (1 - doublings)) if doublings > 0 else 0.0  # gain * (1 + 1/2 + 1/4 + ...)
    return float(min(best + added, best + MAX_ERROR_REMOVED * (1 - best)))


def _stratified(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == k))[:per_class] for k in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def _brief(pilot: dict) -> dict:
    return {"best_val_accuracy": round(pilot["best_val_accuracy"], 4), "n_train": pilot.get("n_train"),
            "train_seconds": round(pilot.get("train_seconds", 0.0), 2),
            "wall_seconds": round(pilot.get("wall_seconds", 0.0), 2), "complete": pilot.get("complete"),
            "curve": [(round(r["train_seconds"], 2), round(r["accuracy"], 4))
                      for r in pilot.get("rows", []) if r.get("split") == "val"][:40]}


# --backbone auto ranks on a stratified sample of the training split: its scores need a few
# dozen examples per class, not thousands, and every candidate embeds it. Under a budget the
# sample is smaller and the candidates run on PyTorch eager (an ONNX Runtime export per
# candidate would cost more than it saves on a sample this size).
RANK_PER_CLASS = {"budget": 20, "none": 100}
RANK_SHARE = 0.3  # under a budget, candidates start only while the ranking has used less than this share


def _pixels(candidate) -> tuple:
    """A candidate's cost, roughly: its input pixels; a truncated layer costs less than the whole."""
    from ..zoo import resolve_backbone

    size = candidate.image_size or resolve_backbone(candidate.backbone).input_size or 0
    return (size * size, "@" not in candidate.backbone)


def choose_backbone(train, modality: str, config) -> dict:
    """--backbone auto: rank the candidates on a sample of the training split and take the
    recommended one (choose/rank.py)."""
    from .candidates import Candidate, default_candidates
    from .rank import rank_candidates, recommend

    started = time.perf_counter()
    candidates = default_candidates(modality)
    if config.image_size:  # the user's size for candidates that name none
        candidates = list(dict.fromkeys(Candidate(c.backbone, c.image_size or config.image_size)
                                        for c in candidates))
    budgeted = config.budget_seconds is not None
    sample = train.subset(_stratified(train.labels, RANK_PER_CLASS["budget" if budgeted else "none"], config.seed))
    deadline = None
    if budgeted:  # cheapest first, until the ranking's share of the budget is spent
        candidates = sorted(candidates, key=_pixels)
        deadline = started + RANK_SHARE * config.budget_seconds
    ranked = rank_candidates(sample, candidates, seed=config.seed, deadline=deadline,
                             extract_engine="torch" if budgeted else config.extract_engine)
    best = recommend(ranked)
    say(f"--backbone auto chose {best['candidate']}: {best['reason']}")
    table = [{k: row.get(k) for k in ("candidate", "rank", "value", "seconds")} for row in ranked["candidates"]]
    return {"candidate": best["candidate"], "backbone": best["backbone"], "image_size": best["image_size"],
            "score": best["score"], "reason": best["reason"], "ranking": table, "sample": len(sample),
            "skipped": ranked.get("skipped", []), "seconds": round(time.perf_counter() - started, 2)}
