"""`--strategy auto` as a race between arms in which no work is paid twice.

The arms (race_arms.py): the probe (transfer, cheap), lp-ft (continues from the probe's head),
and the no-transfer baseline (scratch on images, continuing from its own weights and optimiser;
TF-IDF on text, one shot). Each arm is advanced by slices of wall time and keeps what its slices
built, so the arm that wins simply goes on: its final model has every slice's work behind it.

The rule, after every round of slices:
1. each arm's validation points are fitted with a learning curve and projected to where the arm
   would be if it had all the time left (learning_curves.project), with a band from the
   validation set's binomial noise;
2. the leader is the arm with the highest central projection; an arm is dropped only when its
   optimistic projection is below the leader's pessimistic one. Why: a pilot sees the start of a
   curve and noisy points, so "projected lower" is not "worse" until the bands part; dropping on
   central values alone is how a trailing arm got called a lead ("0.969 against 0.974");
3. rounds go on while two or more arms can still gain from time (unfinished) and more than
   COMMIT_SHARE of the budget is left: each unfinished arm gets a ROUND_SHARE slice of what is
   left, split between them;
4. then the rest of the budget goes to the unfinished arm projected highest (a quarter of the
   budget trains one arm further than it would split, and bands that still overlap mean either
   is within noise of the other). A finished arm (the complete probe, TF-IDF) is kept at no
   cost, so the time never goes unused while an arm could gain from it, and at the end the arm
   with the highest validation accuracy reached wins: a trailing arm is never called a lead.
5. a dropped arm is parked, not stopped: when every arm still racing has finished (the probe
   complete) and time is left, the dropped arm that reached highest takes it. Why: a loop's
   curve is read mid-schedule (its rate still high, its anneal to come), so its projection is
   low exactly where scratch wins later (mnist-5k at 60 s: dropped at 0.82 validation after
   14.5 s, "even optimistically 0.806", while 20 s went unused and a scratch run of the whole
   budget scored 0.962 on test against the probe's 0.926). The same holds when the arm that
   took the rest finishes early (a probe whose data is done): the next arm takes what is left.
   A dropped arm wins only by beating the others by more than the validation noise.
Every round's projections, drops and reasons are kept in the record (summary.json, under auto).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from .learning_curves import Projection, binomial_sd, project

COMMIT_SHARE = 0.25   # below this share of the budget left, the leader takes the rest
ROUND_SHARE = 0.3     # each round spends this share of what is left, split between unfinished arms
MIN_SLICE = 1.5       # seconds: a slice shorter than this buys an evaluation, not training
MAX_ROUNDS = 12


class Arm(Protocol):
    """What the race asks of an arm (race_arms.py; faked in tests)."""

    name: str
    finished: bool          # it can gain nothing more (a complete probe, TF-IDF, a loop that stopped)
    wall_seconds: float     # the race's seconds it has used

    def advance(self, seconds: float) -> None: ...
    def run_to_end(self, seconds: float) -> None: ...       # the winner: on, to the budget's end
    def points(self) -> list[tuple[float, float]]: ...      # (cost, validation accuracy)
    def cost_at(self, seconds_more: float) -> float: ...     # its cost after `seconds_more` of the race
    def stop(self) -> None: ...
    def kept(self): ...                                      # its training so far (None: nothing usable)
    def reached(self) -> float: ...                          # the validation accuracy of what it keeps
    def record(self) -> dict: ...


def verdict(projections: dict[str, Projection]) -> tuple[str, dict[str, str]]:
    """(leader, {dropped arm: why}): the leader has the highest central projection; an arm goes
    only when even its optimistic end is below the leader's pessimistic one."""
    leader = max(projections, key=lambda name: (projections[name].mid, projections[name].low))
    bar = projections[leader].low
    dropped = {name: (f"even optimistically {p.high:.3f}, below {leader}'s pessimistic {bar:.3f}")
               for name, p in projections.items() if name != leader and p.high < bar}
    return leader, dropped


@dataclass
class RaceResult:
    winner: object                     # the arm that takes the budget's end
    reason: str
    rounds: list[dict] = field(default_factory=list)
    arms: list[dict] = field(default_factory=list)  # every arm's record: curve, slices, fate

    def to_dict(self) -> dict:
        return {"winner": self.winner.name, "reason": self.reason, "rounds": self.rounds, "arms": self.arms,
                "rule": "drop an arm when its optimistic projection is below the leader's pessimistic one; "
                        f"the leader takes the rest once less than {COMMIT_SHARE:.0%} of the budget is left"}


def run_race(arms: list, budget: float, n_val: int, first_slices: dict[str, float], *,
             clock: Callable[[], float] = time.perf_counter, joins: Callable[[object, list], list] | None = None,
             seed: int = 0) -> RaceResult:
    """Race `arms` over `budget` seconds of wall time (from now). first_slices: each arm's
    first slice (the priors' allocation). joins(arm, alive) -> arms to add once `arm` has run a
    slice (lp-ft once the probe is done). The winner is advanced to the budget's end before this
    returns; the losers are stopped."""
    started = clock()

    def left() -> float:
        return budget - (clock() - started)

    alive, rounds, fates = [], [], {}
    benched: list = []  # dropped arms: parked, not stopped (rule 5)
    every = list(arms)  # every arm that ran, in the order it joined
    for arm in list(arms):  # round 0: the priors' allocation, cheapest evidence first
        arm.advance(min(first_slices.get(arm.name, MIN_SLICE), max(left(), 0.0)))
        alive.append(arm)
        for new in (joins(arm, alive) if joins else []):
            alive.append(new)
            every.append(new)
            if getattr(new, "absorbs", None):  # lp-ft's epoch 0 is the probe: the probe lives on in it
                fates[new.absorbs] = f"continued by {new.name}, which starts from its head"
                alive = [a for a in alive if a.name != new.absorbs]
            new.advance(min(first_slices.get(new.name, MIN_SLICE), max(left(), 0.0)))
    projections: dict[str, Projection] = {}
    latest: dict[str, Projection] = {}  # every arm's last projection, a dropped arm's too
    for number in range(MAX_ROUNDS):
        alive = [a for a in alive if a.name not in fates]
        projections = {a.name: project(a.points(), a.cost_at(max(left(), 0.0)), n_val, finished=a.finished,
                                       seed=seed) for a in alive}
        latest.update(projections)
        leader, dropped = verdict(projections)
        rounds.append({"round": number, "at_seconds": round(clock() - started, 2), "leader": leader,
                       "projected": {k: p.to_dict() for k, p in projections.items()}, "dropped": dropped})
        for arm in alive:
            if arm.name in dropped:
                fates[arm.name] = f"dropped after round {number}: {dropped[arm.name]}"
                benched.append(arm)
        alive = [a for a in alive if a.name not in dropped]
        unfinished = [a for a in alive if not a.finished]
        if len(unfinished) <= 1 or left() < COMMIT_SHARE * budget or number == MAX_ROUNDS - 1:
            break
        share = max(MIN_SLICE, ROUND_SHARE * left() / len(unfinished))
        for arm in unfinished:
            arm.advance(min(share, max(left(), 0.0)))
    winner, reason = _finish(alive, latest, left, fates, benched, n_val)
    return RaceResult(winner, reason, rounds, [{**a.record(), "fate": fates.get(a.name, "")} for a in every])


def _finish(alive: list, projections: dict[str, Projection], left: Callable[[], float],
            fates: dict, benched: list, n_val: int) -> tuple[object, str]:
    """The rest of the budget goes to the unfinished arm projected highest (a finished arm is
    kept at no cost: it can gain nothing from time); if that arm finishes with time left (a probe
    whose data is done), the next takes it: the other racing arms by projection, then the dropped
    ones by what they reached (rule 5). Then the arm whose validation accuracy is highest wins,
    except that a dropped arm must beat the best of the others by more than one binomial standard
    error: it was judged worse, and its figure is the best of many noisy evaluations (fashion-mnist
    at 60 s: a revived scratch read 0.866 against the probe's 0.864 and scored 0.834 on test
    against the refit probe's 0.894). So time is never left unused while an arm could gain from
    it, and an arm that trails is never called a lead: the choice is made on what was reached."""
    unfinished = sorted((a for a in alive if not a.finished), key=lambda a: -projections[a.name].mid)
    spare = sorted((a for a in benched if not a.finished), key=lambda a: -a.reached())
    ran: list = []
    for arm in unfinished + spare:  # each continues from where its slices left it
        if left() > (0.0 if arm in unfinished and not ran else MIN_SLICE):
            arm.run_to_end(left())
            ran.append(arm)
        else:
            arm.stop()
            if arm in unfinished:
                fates[arm.name] = (f"stopped: {ran[0].name} is projected higher and took the rest of the budget"
                                   if ran else "stopped: no time left")
    revived = [a for a in ran if a in spare]
    # the racing arms that ran on, the finished arms, and any other whose work is in hand (a probe cut short)
    regular = [a for a in alive if a in ran or a.finished or a.kept() is not None] or alive
    contenders = regular + revived
    reached = {a.name: a.reached() for a in contenders}
    # ties go to the arm that trained on first (it holds the budget's work), then to the others in order
    winner = max(regular, key=lambda a: (reached[a.name], bool(ran) and a is ran[0]))
    bar = reached[winner.name] + binomial_sd(reached[winner.name], n_val)
    clearly = [a for a in revived if reached[a.name] > bar]
    if clearly:
        winner = max(clearly, key=lambda a: reached[a.name])
    # an arm whose model learnt from the training part alone must clearly beat one whose delivered
    # model also learns from validation (the probe's and TF-IDF's refit): the refit is worth points
    # its validation figure cannot show (elpv, 100/class: 200 training images, 334 validation;
    # scratch read 0.781 against the probe's 0.775, and scored 0.726 on test against its 0.822)
    note = ""
    refitting = [a for a in contenders if getattr(a, "refits", False)]
    if refitting and not getattr(winner, "refits", False):
        best = max(refitting, key=lambda a: reached[a.name])
        if reached[winner.name] <= reached[best.name] + binomial_sd(reached[best.name], n_val):
            note = (f"; {winner.name} did not beat {best.name} by more than the noise, and {best.name}'s "
                    "model also learns from the validation part (refit)")
            winner = best
    for arm in contenders:
        outcome = "won" if arm is winner else (
            f"lost: {winner.name} reached higher" if reached[winner.name] >= reached[arm.name] else
            f"lost: within the noise of {winner.name}, whose model is refit") + \
            (" (a dropped arm must beat it by more than the noise)" if arm in revived else "")
        if arm in revived:
            fates[arm.name] = (f"{fates[arm.name]}; then took the time left, which no arm still racing could use, "
                               f"and {outcome}")
        else:
            fates[arm.name] = outcome + (": took the rest of the budget" if ran and arm is ran[0] else
                                         ": trained on with the time left" if arm in ran else "")
    figures = ", ".join(f"{name} {acc:.3f}" for name, acc in reached.items())
    if len(contenders) == 1:
        why = "it is the only arm left"
    elif revived:
        why = (f"{', '.join(a.name for a in revived)}, dropped earlier, took the time left once every racing arm "
               f"had finished; at the end {winner.name} won on the validation accuracy reached ({figures}; a "
               f"dropped arm had to pass {bar:.3f})")
    elif ran:
        why = (f"{ran[0].name} took the rest of the budget (projected highest of the arms still training); "
               f"at the end {winner.name} reached the highest validation accuracy ({figures})")
    else:
        why = f"every arm had finished; the highest validation accuracy wins ({figures})"
    return winner, _reason(winner.name, projections, why + note)


def _reason(leader: str, projections: dict[str, Projection], why: str) -> str:
    p = projections[leader]
    others = ", ".join(f"{name} {q.mid:.3f} [{q.low:.3f}, {q.high:.3f}]"
                       for name, q in projections.items() if name != leader)
    return (f"{leader} is projected to {p.mid:.3f} [{p.low:.3f}, {p.high:.3f}] at the budget's end"
            + (f" against {others}" if others else "") + f"; {why}")
