"""The arms of `--strategy auto`'s race (race.py): each keeps what its slices built.

- LoopArm: a strategy trained by the one training loop (scratch; lp-ft from the probe's head).
  The loop runs once, in its own thread, planned to the budget's end; at each validation
  evaluation after its slice is spent it parks (its training clock paused) until the race gives
  it another slice, or stops it. So a slice is a stretch of one continuing run: the weights,
  the optimiser's moments, the schedule's step, the epoch counter all carry over, and the arm
  that wins goes on to the budget's end as if it had never paused. Only one arm computes at a
  time: the race waits while an arm runs.
- ProbeArm: the real probe under a budget (its extraction in stratified chunks, anytime heads
  after 1/8, 1/4, 1/2 of the data). Complete, its features are cached and it is finished. Cut
  short, its next slice runs the probe again with the whole time it has had: `resume()` is one
  call, and the extraction continues from the feature store's finished chunks.
- OneShotArm: TF-IDF, exact in one fit; finished after its first slice.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from ..records import observe_evaluations


class ArmStopped(Exception):
    """Raised inside a parked loop arm's thread when the race stops it (it lost)."""


class _Timeline:
    """Wall seconds of one arm's slices, and its points on the race's clock."""

    def __init__(self, name: str, origin: float):
        self.name, self.origin = name, origin
        self.wall_seconds = 0.0
        self.slices: list[dict] = []
        self.curve: list[dict] = []

    def slice(self, began: float, **extra) -> None:
        ended = time.perf_counter()
        self.wall_seconds += ended - began
        self.slices.append({"from": round(began - self.origin, 2), "to": round(ended - self.origin, 2), **extra})

    def point(self, cost: float, accuracy: float, **extra) -> None:
        self.curve.append({"at": round(time.perf_counter() - self.origin, 3), "cost": round(float(cost), 3),
                           "accuracy": round(float(accuracy), 4), **extra})

    def record(self, **extra) -> dict:
        return {"name": self.name, "wall_seconds": round(self.wall_seconds, 2), "slices": self.slices,
                "curve": self.curve, **extra}


class LoopArm:
    """A training loop advanced slice by slice. `run(budget_seconds)` trains in the calling
    thread until its loop's budget (its recorder's wall clock) and returns the KeptTraining;
    `phase`: the loop's phase name, whose validation rows are this arm's points."""

    cost_unit = "training seconds"

    def __init__(self, name: str, run: Callable[[float], object], deadline: float, *, phase: str | None = None,
                 origin: float | None = None, absorbs: str | None = None, start_accuracy: float = 0.0):
        # start_accuracy: the validation accuracy of the state it starts from and may keep (lp-ft's
        # epoch 0 is the probe's head: it never delivers less)
        self.name, self.phase, self.absorbs, self.start_accuracy = name, phase or name, absorbs, start_accuracy
        self._run, self._deadline = run, deadline
        self._timeline = _Timeline(name, origin if origin is not None else time.perf_counter())
        self._turn = threading.Condition()
        self._state = "new"      # new | running | parked | done
        self._until = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._kept = None
        self._error: BaseException | None = None
        self._train_seconds = 0.0
        self._step = 0

    # -- the race's side -------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._state == "done"

    @property
    def wall_seconds(self) -> float:
        return self._timeline.wall_seconds

    def advance(self, seconds: float) -> None:
        if self.finished or seconds <= 0:
            return
        began, from_step = time.perf_counter(), self._step
        with self._turn:
            self._until = began + seconds  # inf: run free
            self._state = "running"
            self._turn.notify_all()
        if self._thread is None:
            budget = self._deadline - began  # planned to the race's end: slices are stretches of it
            self._thread = threading.Thread(target=self._body, args=(budget,), name=f"auto-{self.name}", daemon=True)
            self._thread.start()
        with self._turn:
            self._turn.wait_for(lambda: self._state in ("parked", "done"))
        self._timeline.slice(began, from_step=from_step, to_step=self._step)
        if self._error is not None:
            raise self._error

    def run_to_end(self, seconds: float) -> None:
        """The winner: no more parking; its loop ends itself at the budget's end (its own
        deadline), so this returns with the KeptTraining in hand."""
        self.advance(float("inf"))

    def points(self) -> list[tuple[float, float]]:
        """(cost, validation accuracy); a state it starts from is its point at cost 0, so its
        projection never falls below what it may keep (elpv at 60 s: lp-ft's own epochs read 0.68
        from the probe's 0.775, and it was dropped below scratch's 0.77)."""
        start = [(0.0, self.start_accuracy)] if self.start_accuracy else []
        return start + [(p["cost"], p["accuracy"]) for p in self._timeline.curve]

    def cost_at(self, seconds_more: float) -> float:
        """Its training seconds after `seconds_more` of the race: the share of its wall time
        that was training so far (evaluations take the rest)."""
        share = min(1.0, max(0.3, self._train_seconds / max(self.wall_seconds, 1e-9)))
        return self._train_seconds + share * seconds_more

    def stop(self) -> None:
        with self._turn:
            self._stopping = True
            self._turn.notify_all()
        if self._thread is not None:
            self._thread.join()

    def kept(self):
        """The KeptTraining its run returned (the winner's, once it reached the budget's end)."""
        return self._kept

    def reached(self) -> float:
        """Its best validation accuracy: the loop keeps its best state, its start among them."""
        return max([self.start_accuracy, *(p["accuracy"] for p in self._timeline.curve)])

    def record(self) -> dict:
        return self._timeline.record(strategy=self.name, cost_unit=self.cost_unit, steps=self._step)

    # -- the arm's thread ------------------------------------------------------------------
    def _body(self, budget: float) -> None:
        try:
            self._kept = self._run(budget)
        except ArmStopped:
            pass
        except BaseException as e:  # re-raised in the race's thread by advance()
            self._error = e
        finally:
            with self._turn:
                self._state = "done"
                self._turn.notify_all()

    def at_evaluation(self, row: dict) -> None:
        """In the arm's thread, after its loop logged a validation row (its clock paused): record
        the point, and park if its slice is spent."""
        self._train_seconds, self._step = float(row.get("train_seconds") or 0.0), int(row.get("step") or 0)
        self._timeline.point(self._train_seconds, row["accuracy"], epoch=row.get("epoch"), step=self._step)
        with self._turn:
            if time.perf_counter() < self._until and not self._stopping:
                return
            self._state = "parked"
            self._turn.notify_all()
            self._turn.wait_for(lambda: self._state == "running" or self._stopping)
            if self._stopping:
                raise ArmStopped(self.name)


@contextmanager
def gated(arms: list) -> Iterator[None]:
    """While inside, every validation row a LoopArm's thread logs reaches that arm (its gate).
    `arms`: a list the race may append to (arms that join later)."""
    def forward(row: dict) -> None:
        if row.get("split") != "val" or row.get("accuracy") is None:
            return
        me = threading.current_thread()
        for arm in arms:
            if isinstance(arm, LoopArm) and arm._thread is me and row.get("phase") == arm.phase:
                arm.at_evaluation(row)
                return

    with observe_evaluations(forward):
        try:
            yield
        finally:
            for arm in arms:  # never leave a parked thread behind (an error, Ctrl-C)
                if isinstance(arm, LoopArm) and not arm.finished:
                    arm.stop()


class ProbeArm:
    """The probe, run under a budget; `pilot(budget)` is the pipeline's probe stage and returns
    its figures, rows and KeptTraining (auto_fit.pipeline_stages)."""

    name = "probe"
    cost_unit = "training examples"

    def __init__(self, pilot: Callable[[float], dict], n_train: int, *, origin: float | None = None,
                 name: str = "probe"):
        self._pilot, self.n_train, self.name = pilot, n_train, name
        self._timeline = _Timeline(self.name, origin if origin is not None else time.perf_counter())
        self._out: dict | None = None

    @property
    def finished(self) -> bool:
        return self._out is not None and self._out["n_used"] >= self.n_train

    @property
    def wall_seconds(self) -> float:
        return self._timeline.wall_seconds

    def advance(self, seconds: float) -> None:
        if self.finished or seconds <= 0:
            return
        self.resume(seconds)

    def run_to_end(self, seconds: float) -> None:
        self.advance(seconds)

    def resume(self, seconds: float) -> None:
        """Extract further: one call. The probe stage runs again with all the time the arm has had
        plus `seconds`; its training features continue from the feature store's finished chunks
        and its validation features are cached whole (feature_store.py), so only the head fits
        are done again."""
        began = time.perf_counter()
        out = self._pilot(self.wall_seconds + seconds)
        self._out = out
        for row in out["rows"]:  # the anytime heads: accuracy after 1/8, 1/4, 1/2 of the data
            if row.get("split") == "val" and row.get("phase") == "probe-anytime":
                self._timeline.point(row["n_train"], row["accuracy"], phase=row.get("phase"))
        self._timeline.point(out["n_used"], out["best_val_accuracy"], phase="probe")
        self._timeline.slice(began, examples=out["n_used"])

    def points(self) -> list[tuple[float, float]]:
        return [(p["cost"], p["accuracy"]) for p in self._timeline.curve]

    def cost_at(self, seconds_more: float) -> float:
        if self._out is None:
            return float(self.n_train)
        pace = self._out["n_used"] / max(self.wall_seconds, 1e-9)
        return float(min(self.n_train, self._out["n_used"] + pace * seconds_more))

    def stop(self) -> None:
        pass

    def kept(self):
        return self._out.get("kept") if self._out else None

    @property
    def refits(self) -> bool:
        """Whether the model it delivers is refit on train+val (a held refit counts: auto delivers it)."""
        outcome = getattr(self.kept(), "outcome", None) or {}
        return bool(outcome.get("held_refit") or outcome.get("refit"))

    def reached(self) -> float:
        """The head it keeps (its anytime heads on part of the data are evidence, not the model)."""
        return float(self._out["best_val_accuracy"]) if self._out else 0.0

    def record(self) -> dict:
        return self._timeline.record(strategy="probe", cost_unit=self.cost_unit,
                                     examples=self._out["n_used"] if self._out else 0)


class OneShotArm(ProbeArm):
    """A model fitted exactly in one go (TF-IDF): finished after its first slice."""

    cost_unit = "one fit"

    def __init__(self, name: str, pilot: Callable[[float | None], dict], *, origin: float | None = None):
        super().__init__(pilot, 0, origin=origin, name=name)

    @property
    def finished(self) -> bool:
        return self._out is not None

    def advance(self, seconds: float) -> None:
        if not self.finished:  # one slice: the fit's own budget, which it keeps to its candidate grain
            self.resume(seconds)

    def resume(self, seconds: float) -> None:
        began = time.perf_counter()
        self._out = self._pilot(seconds)
        self._timeline.point(1.0, self._out["best_val_accuracy"])
        self._timeline.slice(began)

    def record(self) -> dict:
        return {**super().record(), "strategy": self.name}
