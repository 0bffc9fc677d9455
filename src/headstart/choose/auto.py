"""`--strategy auto`: which strategy to train, raced inside the budget with no work paid twice.

1. Cheap evidence first: this machine's measured rates for the pretrained backbone and the
   scratch model (train/throughput.py, cached per machine), the class count and examples per
   class, the data's native resolution against the backbone's input, and k-NN on the raw inputs
   (how far the pixels alone separate the classes). They set the first allocation (priors):
   the probe's first slice is what its feature pass should cost; the scratch arm's first slice
   is larger where the evidence favours it (small native images, many examples per class, raw
   k-NN high) and smaller where it does not.
2. The race (race.py, the arms in race_arms.py): the probe, lp-ft (joins once the probe is done
   and at least FINETUNE_EPOCHS epochs of fine-tuning fit in what is left; it starts from the
   probe's head, which stays its epoch 0), and the no-transfer baseline (scratch, continuing
   from its own weights and optimiser; or TF-IDF for text, exact in one shot). After each round
   every arm's learning curve is projected to the budget's end with its band
   (learning_curves.py); an arm is dropped only when its optimistic end is below the leader's
   pessimistic one. The winner continues from what its slices built to the budget's end, so a
   chosen strategy is the run's training, not a pilot followed by a second start from zero.

The budget given is what the fit's deadline has left, less its closing parts (auto_fit.py).
The stages (the pilot probe, a training loop, the rates) are the pipeline's, passed in by
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
from ..strategies.estimate import Workload, epoch_seconds, probe_seconds
from ..strategies.refit import deliver_held_refit
from ..train.throughput import Rates, reconcile
from .race import MIN_SLICE, run_race
from .race_arms import LoopArm, OneShotArm, ProbeArm, gated

BUDGET_WITHOUT_ONE = 300.0   # auto needs a budget to fit; without --budget it plans for 5 minutes
MIN_PILOT_SECONDS = 4.0
FINETUNE_EPOCHS = 2          # lp-ft joins only when this many epochs fit after the probe
PROBE_FIRST_MIN, PROBE_FIRST_MAX = 0.2, 0.5  # the probe's first slice: twice its expected pass, in these shares
SCRATCH_FIRST = 0.12         # the scratch arm's first slice: this share of the race, scaled by the priors
SCRATCH_FIRST_WHEN = 1.5      # a scratch prior this strong runs the scratch arm before the probe
EVAL_EVERY_SECONDS = 1.5     # a loop arm evaluates (and may pause) about this often
ONE_SHOT_SHARE = 0.5         # the one-shot baseline's budget (TF-IDF): this share of the race


@dataclass
class Stages:
    """What auto needs from the pipeline (auto_fit.pipeline_stages; injected, so the choice can be
    tested on given evidence)."""
    rates: Callable[[str], Rates | None]     # strategy -> its model's measured rates (None: one-shot)
    pilot: Callable[..., dict]               # (strategy, budget, train, val, evals_per_epoch) -> figures, rows, kept
    no_transfer: str                         # the baseline's strategy: scratch (images) or tfidf (text)
    # (strategy, budget, evals_per_epoch, start) -> KeptTraining: a training loop run to its budget in
    # the caller's thread (start: the probe's KeptTraining lp-ft continues from)
    loop: Callable[..., KeptTraining] | None = None
    raw_knn: Callable[[], float | None] = lambda: None   # k-NN accuracy on the raw inputs, on a sample
    sizes: Callable[[], dict] = dict                    # {"native": side, "model": the backbone's input}
    # size -> the size the probe and lp-ft now run at (None: kept as it was, the user named one)
    transfer_size: Callable[[int], int | None] = lambda size: None


@dataclass
class Choice:
    strategy: str
    reason: str
    budget_left: float | None
    evidence: dict = field(default_factory=dict)
    kept: KeptTraining | None = None  # the winner's training: the run's own
    settings: dict = field(default_factory=dict)  # what the winner's fit must be run with (its image size)

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "reason": self.reason, "evidence": self.evidence}


def choose_strategy(train, val, test_size: int, budget: float | None, stages: Stages, *, seed: int = 0,
                    spent_before: float = 0.0) -> Choice:
    """The race's choice within `budget` seconds. spent_before: seconds of the command's budget an
    earlier choice (--backbone auto) already used; where that leaves too little for a race, the
    cheapest strategy is taken rather than the command refused half-way (a user who gave 60 s
    was told "give --budget 10s or more" after the ranking had used 50 of them on a busy machine)."""
    started = time.perf_counter()
    planned = budget if budget is not None else BUDGET_WITHOUT_ONE
    work = Workload(train=len(train), val=len(val), test=test_size, epochs=FINETUNE_EPOCHS)
    baseline_rates = stages.rates(stages.no_transfer)
    cheap = _cheap_evidence(train, stages, baseline_rates)
    hedge = _hedge(cheap, stages)  # before the transfer model's rates: they are measured at its size
    transfer_rates = stages.rates("probe")
    probe_cost = probe_seconds(work, transfer_rates)
    evidence = {"budget_seconds": planned, "budget_given": budget is not None,
                "rates": {"transfer": transfer_rates.to_dict(),
                          "baseline": baseline_rates.to_dict() if baseline_rates else None},
                "probe_seconds_expected": round(probe_cost, 2), "cheap": cheap,
                **({"transfer_image_size": hedge} if hedge else {})}
    try:
        _check_affordable(planned, probe_cost, work, baseline_rates, stages.no_transfer)
    except HeadstartError:
        if budget is None or spent_before <= 0:
            raise  # the user's own budget is too small: said up front, with the minimum
        cheapest = _cheapest(stages, budget, spent_before, evidence)
        if hedge and cheapest.strategy != stages.no_transfer:
            cheapest.settings = {"image_size": hedge["size"]}  # the cheaper size, measured above
        return cheapest
    # what the fit does after training, kept out of the race: the test pass, the run's files
    closing = CLOSING_RESERVE + test_size / transfer_rates.forward
    race_budget = max(planned - closing - (time.perf_counter() - started), MIN_PILOT_SECONDS)
    slack = _baseline_slack(test_size, transfer_rates, baseline_rates)
    evidence["baseline_slack_seconds"] = round(slack, 2)
    origin = time.perf_counter()
    arms, first = _arms(train, val, work, race_budget, origin, stages, baseline_rates, transfer_rates, cheap,
                        slack=slack)
    every = list(arms)

    def joins(arm, alive) -> list:
        if arm.name != "probe" or not arm.finished or stages.loop is None:
            return []
        left = race_budget - (time.perf_counter() - origin)
        fit = _finetune_epochs_that_fit(left, work, transfer_rates, stages, evidence)
        if fit < FINETUNE_EPOCHS:
            return []
        lpft = LoopArm("lp-ft", lambda b: stages.loop("lp-ft", b, 2, arm.kept()), origin + race_budget,
                       origin=origin, absorbs="probe", start_accuracy=arm.reached())
        every.append(lpft)
        first["lp-ft"] = max(MIN_SLICE, 0.25 * left)
        return [lpft]

    with gated(every):
        result = run_race(arms, race_budget, len(val), first, joins=joins, seed=seed)
    winner = result.winner
    evidence["race"] = result.to_dict()
    evidence["first_slices"] = {k: round(v, 2) for k, v in first.items()}
    _reconcile_rates(transfer_rates, baseline_rates, result.arms, len(train), len(val), evidence)
    strategy = getattr(winner, "strategy", winner.name)
    reason = result.reason
    left = planned - closing - (time.perf_counter() - started)
    evidence["choosing_seconds"] = round(time.perf_counter() - started, 2)
    say(f"--strategy auto chose {strategy}: {reason}")
    # a transfer winner trained at the hedge's size: the run's model is that one
    settings = {"image_size": hedge["size"]} if hedge and strategy != stages.no_transfer else {}
    return Choice(strategy, reason, max(left, 1.0) if budget is not None else None, evidence,
                  kept=_deliver(winner.kept(), strategy), settings=settings)


def _cheapest(stages: Stages, budget: float, spent_before: float, evidence: dict) -> Choice:
    """No race fits in what an earlier choice left: the cheapest strategy trains in it (a one-shot
    baseline such as TF-IDF, else the probe), and the reason says so."""
    strategy = stages.no_transfer if stages.rates(stages.no_transfer) is None else "probe"
    reason = (f"only {budget:.0f} s of the budget were left after {spent_before:.0f} s of choosing the backbone: "
              f"too little for a race, so the cheapest strategy, {strategy}, trains in it")
    say(f"--strategy auto chose {strategy}: {reason}")
    evidence.update(race=None, choosing_seconds=0.0)
    return Choice(strategy, reason, max(budget, 1.0), evidence)


def _deliver(kept: KeptTraining | None, strategy: str) -> KeptTraining | None:
    """The winner's training as the run's. A winning probe whose head was held to the training
    part (for lp-ft to start from) now takes its refit on train+val, as a fixed `--strategy probe`
    does (measured: fashion-mnist at 60 s, 0.872 with the held head against the fixed probe's 0.894)."""
    outcome = getattr(kept, "outcome", None)
    if not isinstance(outcome, dict):
        return kept
    held = outcome.pop("held_refit", None)
    if held is not None and strategy == "probe":
        outcome.update(deliver_held_refit(held, kept.model.head.fc))
    return kept


def _baseline_slack(test_size: int, transfer_rates: Rates, baseline_rates: Rates | None) -> float:
    """Seconds of the closing reserve a winning no-transfer loop may train in: the reserve is
    sized for the transfer model's test pass, and the small scratch model's costs a fraction of
    it (mnist-5k at 60 s: 8 of 60 s went unused after scratch won, while a fixed scratch run
    trained ~20 s longer and scored 1.6 points higher)."""
    if baseline_rates is None or not baseline_rates.forward:
        return 0.0
    return max(0.0, test_size / transfer_rates.forward - SLACK_SAFETY * test_size / baseline_rates.forward)


SLACK_SAFETY = 2.0  # the scratch model's test pass is budgeted at twice its measured cost


def _arms(train, val, work: Workload, race_budget: float, origin: float, stages: Stages,
          baseline_rates: Rates | None, transfer_rates: Rates, cheap: dict, *,
          slack: float = 0.0) -> tuple[list, dict]:
    """The arms, cheapest evidence first, and their first slices (the priors' allocation).
    slack: seconds past the race's end that the no-transfer loop is planned to, should it win
    (_baseline_slack): it races on the race's clock, and only its run to the end uses them."""
    # a head lp-ft may continue from is fitted on the training part alone; its refit on train+val
    # is held beside it and delivered if the probe wins (_deliver)
    may_finetune = stages.loop is not None and race_budget / epoch_seconds(work, transfer_rates) >= FINETUNE_EPOCHS
    refit = {"hold_refit": True} if may_finetune else {}
    # the slice covers its validation pass too, so the probe never takes more than PROBE_FIRST_MAX
    # of the race (measured on digits under load: 156 s of a 172 s race, scratch starved)
    probe = ProbeArm(lambda b: stages.pilot("probe", b, train, val, evals_per_epoch=4, **refit),
                     len(train), origin=origin)
    # generous: a probe cut short extracts again from the start until the feature store resumes it
    expected = probe_seconds(Workload(train=work.train, val=work.val, test=0), transfer_rates)
    first = {"probe": min(max(2 * expected, PROBE_FIRST_MIN * race_budget), PROBE_FIRST_MAX * race_budget)}
    if baseline_rates is None:  # one-shot (TF-IDF): exact and cheap, so it goes first
        # under a budget of its own: its analyzer sweep starts no candidate past most of it (run with
        # none, char n-grams of bbc-news's 1,607 long texts took 44 s of a 29 s race)
        one_shot = OneShotArm(stages.no_transfer, lambda b: stages.pilot(stages.no_transfer, b, train, val),
                              origin=origin)
        first[stages.no_transfer] = ONE_SHOT_SHARE * race_budget
        return [one_shot, probe], first
    epoch = work.train / baseline_rates.train
    evals = int(min(20, max(1, math.ceil(epoch / EVAL_EVERY_SECONDS))))
    scratch = LoopArm(stages.no_transfer, lambda b: stages.loop(stages.no_transfer, b, evals, None),
                      origin + race_budget + slack, origin=origin)
    first[stages.no_transfer] = max(MIN_PILOT_SECONDS, SCRATCH_FIRST * cheap["scratch_prior"] * race_budget)
    # where the evidence leans to scratch it runs first: on a loaded machine the first arm's
    # slice can overrun, and the arm the priors favour should not be the one starved
    return ([scratch, probe] if cheap["scratch_prior"] >= SCRATCH_FIRST_WHEN else [probe, scratch]), first


def _cheap_evidence(train, stages: Stages, baseline_rates: Rates | None) -> dict:
    """Classes, examples per class, native resolution against the backbone's input and k-NN on
    the raw inputs: the prior on the no-transfer baseline, a factor on its first slice (1: no
    lean). Small native images and many examples per class are where scratch has beaten
    transfer (digits, mnist-5k in BENCHMARKS 11.3); a handful per class is where it cannot."""
    classes = int(len(np.unique(train.labels)))
    evidence = {"classes": classes, "examples_per_class": round(len(train) / max(classes, 1), 1), **stages.sizes()}
    if baseline_rates is None:  # one shot: it is run whole, first
        return {**evidence, "scratch_prior": 1.0}
    evidence["knn_raw"] = stages.raw_knn()
    prior, because, leaning = 1.0, [], []
    for applies, factor, says in SCRATCH_PRIORS:
        holds = applies(evidence)
        if holds:
            prior *= factor
            because.append(says.format(**evidence))
        if factor > 1:
            leaning.append(holds)
    return {**evidence, "scratch_prior": round(min(prior, 2.5), 2), "prior_because": because,
            "all_lean_to_scratch": all(leaning)}


# (when, factor on the scratch arm's first slice, what the record says)
SCRATCH_PRIORS = (
    (lambda e: bool(e.get("native") and e.get("model") and e["native"] * 4 <= e["model"]), 1.5,
     "native {native} px against the backbone's {model} px"),
    (lambda e: e["examples_per_class"] >= 100, 1.3, "{examples_per_class:.0f} examples per class"),
    (lambda e: e["examples_per_class"] < 20, 0.5, "only {examples_per_class:.0f} examples per class"),
    (lambda e: (e.get("knn_raw") or 0.0) >= 0.8, 1.3, "k-NN on the raw inputs {knn_raw:.2f}"),
)


# The probe's size where all the cheap evidence leans to scratch: at 128 px the frozen pass costs
# a third of 224 px's and the probe loses about a point (mnist-5k 0.914 against 0.926,
# fashion-mnist 0.840-0.842 against 0.850; BENCHMARKS 20.2). Where scratch is the likely winner
# the probe is the hedge, and a cheaper hedge leaves the favourite the time it needs: on mnist-5k
# at 60 s beside a competing process the 224 px probe took 30 of the race's 43 s, scratch 13.
HEDGE_SIZE = 128


def _hedge(cheap: dict, stages: Stages) -> dict | None:
    """The probe's (and lp-ft's) smaller input size, where every piece of cheap evidence leans to
    scratch (tiny native images, many examples per class, raw k-NN high) and the user named none;
    None elsewhere: where the evidence is mixed (fashion-mnist: its raw k-NN is low) the probe
    often wins, and its full size is worth the point."""
    model = cheap.get("model")
    if not cheap.get("all_lean_to_scratch") or not model or model <= HEDGE_SIZE:
        return None
    size = stages.transfer_size(HEDGE_SIZE)
    if size is None:
        return None
    return {"size": size, "instead_of": model,
            "because": f"every piece of cheap evidence leans to scratch ({'; '.join(cheap['prior_because'])}): "
                       f"the probe runs at {size} px, a third of {model} px's cost for about a point of accuracy, "
                       "so the arm the evidence favours gets the time"}


def _finetune_epochs_that_fit(left: float, work: Workload, transfer_rates: Rates, stages: Stages,
                              evidence: dict) -> float:
    """Epochs of lp-ft that fit in `left`: first estimated from the inference rate (a training
    step costs about TRAIN_STEP_FORWARDS forward passes), and the training rate measured only
    when that estimate leaves room for them (measuring costs seconds: ~25 under heavy load)."""
    room = left - HEAD_RESERVE
    estimated = replace(transfer_rates, train=transfer_rates.forward / TRAIN_STEP_FORWARDS)
    fit = room / epoch_seconds(work, estimated)
    if fit >= FINETUNE_EPOCHS:
        train_rates = stages.rates("lp-ft")
        evidence["rates"]["transfer_training"] = train_rates.to_dict()
        fit = room / epoch_seconds(work, train_rates)
    evidence["finetune_epochs_that_fit"] = round(fit, 2)
    return fit


TRAIN_STEP_FORWARDS = 3.0  # a training step (forward, backward, update) against one forward pass
HEAD_RESERVE = 3.0  # seconds for the head sweep and the test pass after fine-tuning
# seconds kept beside the test pass for building the chosen model and its first files: the
# caller's budget is already net of the closing parts (post_fit.closing_reserve), and the
# training that follows is given the fit's deadline itself (pipeline.complete_fit)
CLOSING_RESERVE = 2.0


def _reconcile_rates(transfer_rates: Rates, baseline_rates: Rates | None, arms: list[dict], n_train: int,
                     n_val: int, evidence: dict) -> None:
    """The arms ran the real work: where a cached rate is off by more than 2x from what they
    observed, the cache is marked stale (train/throughput.reconcile)."""
    from ..strategies.estimate import HEAD_FIT_SECONDS

    observed = {}
    for arm in arms:
        if arm["strategy"] == "probe" and arm.get("examples") and arm["wall_seconds"] > 3 * HEAD_FIT_SECONDS:
            observed["transfer"] = (arm["examples"] + n_val) / (arm["wall_seconds"] - HEAD_FIT_SECONDS)
            reconcile(transfer_rates, forward=observed["transfer"])
        if arm["cost_unit"] == "training seconds" and arm["strategy"] != "lp-ft" and arm["curve"]:
            last = arm["curve"][-1]
            if last["cost"] > 0 and last.get("epoch"):
                observed["baseline_training"] = last["epoch"] * n_train / last["cost"]
                reconcile(baseline_rates, train=observed["baseline_training"])
    evidence["observed_rates"] = {k: round(v, 1) for k, v in observed.items()}


def _check_affordable(budget: float, probe_cost: float, work: Workload, baseline_rates: Rates | None,
                      baseline: str) -> None:
    """A budget too small for anything names the minimum."""
    one_epoch = work.train / baseline_rates.train if baseline_rates else 0.0
    minimum = min(probe_cost, one_epoch + MIN_PILOT_SECONDS) + MIN_PILOT_SECONDS
    if budget < minimum:
        raise HeadstartError(
            f"a budget of {budget:.0f} s is too small for --strategy auto here: the cheapest choice needs about "
            f"{minimum:.0f} s on this machine (the probe's feature pass {probe_cost:.0f} s for "
            f"{work.train + work.val + work.test} examples, plus the pilots)",
            hint=f"give --budget {math.ceil(minimum * 1.2)}s or more, or name a strategy (e.g. --strategy probe)")


def _stratified(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == k))[:per_class] for k in np.unique(labels)]
    return np.sort(np.concatenate(picked))


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
