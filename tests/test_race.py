"""--strategy auto's race: learning curves with their bands, the drop rule on given curves, the
race on fake arms (no time left unused, a trailing arm never called a lead), a real scratch arm
continuing across slices, and the race drawn."""
from __future__ import annotations

import numpy as np
import pytest

from headstart.choose.learning_curves import Projection, binomial_sd, project
from headstart.choose.race import COMMIT_SHARE, run_race, verdict


def _power_law(x, a=0.95, b=0.5, c=0.7):
    return a - b * np.asarray(x, dtype=float) ** -c


def test_a_curve_is_projected_with_a_band_that_holds_its_end():
    xs = [1, 2, 4, 8, 16]
    points = list(zip(xs, _power_law(xs)))
    p = project(points, 64, n_val=300)
    assert p.basis == "curve"
    assert p.low <= float(_power_law(64)) <= p.high
    assert p.mid == pytest.approx(float(_power_law(64)), abs=0.01)
    assert p.mid > max(a for _, a in points)  # still rising: projected above its best point


def test_few_points_or_a_finished_arm_say_what_they_can():
    early = project([(1, 0.3), (2, 0.4)], 100, n_val=300)
    assert early.basis == "too few points" and early.high == 1.0  # never dropped on no evidence
    done = project([(1, 0.9)], 100, n_val=300, finished=True)
    assert done.mid == 0.9 and done.high - done.low == pytest.approx(2 * 1.64 * binomial_sd(0.9, 300), rel=1e-6)


def test_a_trailing_arm_projected_higher_within_the_bands_keeps_racing():
    # the case: the probe finished at 0.969, scratch projected to 0.974 on 300 images
    probe = project([(1000, 0.969)], 1000, n_val=300, finished=True)
    scratch = Projection(0.974, 0.950, 0.990, "curve")
    leader, dropped = verdict({"probe": probe, "scratch": scratch})
    assert leader == "scratch" and dropped == {}  # the probe is not a lead, and not dropped either


def test_an_arm_clearly_below_is_dropped():
    probe = project([(1000, 0.70)], 1000, n_val=300, finished=True)
    xs = [1, 2, 4, 8]
    scratch = project(list(zip(xs, _power_law(xs, a=0.97, b=0.1))), 40, n_val=300)
    leader, dropped = verdict({"probe": probe, "scratch": scratch})
    assert leader == "scratch" and "probe" in dropped and "below scratch" in dropped["probe"]


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _FakeArm:
    """An arm on a fake clock: `curve(seconds)` is its accuracy after that much training."""

    def __init__(self, name, clock, curve, *, finishes_after=None):
        self.name, self._clock, self._curve, self._finish = name, clock, curve, finishes_after
        self.wall_seconds, self.slices, self._points, self.stopped = 0.0, [], [], False

    @property
    def finished(self):
        return self._finish is not None and self.wall_seconds >= self._finish

    def advance(self, seconds):
        if self._finish is not None:
            seconds = min(seconds, max(self._finish - self.wall_seconds, 0.0))
        self.slices.append((self.wall_seconds, self.wall_seconds + seconds))
        for _ in range(4):  # four evaluations a slice
            self.wall_seconds += seconds / 4
            self._clock.now += seconds / 4
            self._points.append((self.wall_seconds, float(self._curve(self.wall_seconds))))

    def run_to_end(self, seconds):
        self.advance(seconds)

    def points(self):
        return list(self._points)

    def cost_at(self, seconds_more):
        return self.wall_seconds + seconds_more

    def stop(self):
        self.stopped = True

    def kept(self):
        return self.name if self._points and not self.stopped else None

    def reached(self):
        return max(a for _, a in self._points)

    def record(self):
        return {"name": self.name, "slices": self.slices, "wall_seconds": self.wall_seconds,
                "curve": [{"at": x, "accuracy": a} for x, a in self._points]}


def test_the_race_drops_a_clearly_worse_arm_and_the_winner_continues_to_the_end():
    clock = _Clock()
    good = _FakeArm("scratch", clock, lambda t: _power_law(t, a=0.97, b=0.3, c=0.8))
    bad = _FakeArm("probe", clock, lambda t: 0.40, finishes_after=5.0)
    result = run_race([bad, good], 60.0, 300, {"probe": 5.0, "scratch": 6.0}, clock=clock)
    assert result.winner is good
    assert "dropped" in next(a["fate"] for a in result.arms if a["name"] == "probe")
    # no work paid twice: the winner's slices are one run, each starting where the last ended
    starts = [s for s, _ in good.slices]
    assert starts[0] == 0.0 and all(b == a_end for (_, a_end), b in zip(good.slices, starts[1:]))
    assert clock.now == pytest.approx(60.0)  # the budget is used to its end


def test_a_finished_leader_does_not_leave_the_budget_unused_while_a_close_arm_could_train():
    clock = _Clock()
    probe = _FakeArm("probe", clock, lambda t: 0.969, finishes_after=10.0)
    scratch = _FakeArm("scratch", clock, lambda t: min(0.985, 0.90 + 0.004 * t))
    result = run_race([probe, scratch], 60.0, 300, {"probe": 10.0, "scratch": 4.0}, clock=clock)
    assert clock.now == pytest.approx(60.0)  # the rest went to scratch, not unused
    assert result.winner is scratch and "reached the highest validation accuracy" in result.reason
    assert result.rounds and all(r["dropped"] == {} for r in result.rounds)  # bands overlapped
    # and had scratch stayed below the probe, the probe (kept at no cost) would have won
    clock2 = _Clock()
    probe2 = _FakeArm("probe", clock2, lambda t: 0.969, finishes_after=10.0)
    slow = _FakeArm("scratch", clock2, lambda t: min(0.96, 0.93 + 0.001 * t))
    assert run_race([probe2, slow], 60.0, 300, {"probe": 10.0, "scratch": 4.0}, clock=clock2).winner is probe2


def test_a_curve_never_projects_below_the_point_its_arm_already_holds():
    # noisy points whose fit ends lower than the best one read (mnist-5k's scratch arm: 0.82 read,
    # "even optimistically 0.806")
    points = [(1, 0.50), (2, 0.70), (3, 0.82), (4, 0.74), (5, 0.76)]
    p = project(points, 6, n_val=200)
    assert p.mid >= 0.82 and p.high >= 0.82 + 1.64 * binomial_sd(0.82, 200) - 1e-9
    assert p.low >= 0.82 - 1.64 * binomial_sd(0.82, 200) - 1e-9


def _probe_and_scratch(probe_accuracy, scratch_curve, *, probe_done=12.0, slices=(12.0, 8.0)):
    """A race of 60 s on 300 validation images: (probe, scratch, result, clock)."""
    clock = _Clock()
    probe = _FakeArm("probe", clock, lambda t: probe_accuracy, finishes_after=probe_done)
    scratch = _FakeArm("scratch", clock, scratch_curve)
    result = run_race([scratch, probe], 60.0, 300, {"probe": slices[0], "scratch": slices[1]}, clock=clock)
    return probe, scratch, result, clock


def test_a_dropped_arm_takes_the_time_a_finished_leader_cannot_use():
    # scratch reads low mid-schedule and is dropped; the probe finishes early. The time left goes
    # to scratch, not unused, and scratch wins because it then reaches higher on validation
    probe, scratch, result, clock = _probe_and_scratch(0.92, lambda t: 0.30 + 0.02 * t if t < 20 else 0.97)
    fates = {a["name"]: a["fate"] for a in result.arms}
    assert fates["scratch"].startswith("dropped after round 0") and "took the time left" in fates["scratch"]
    assert clock.now == pytest.approx(60.0) and result.winner is scratch and not scratch.stopped
    assert "dropped earlier" in result.reason
    # had it stayed below, the finished probe wins (a tie too: it did not need the spare time)
    probe2, _, result2, clock2 = _probe_and_scratch(0.92, lambda t: 0.30 + 0.01 * min(t, 62))
    assert result2.winner is probe2 and clock2.now == pytest.approx(60.0)
    assert "lost: probe reached higher" in next(a["fate"] for a in result2.arms if a["name"] == "scratch")


def test_a_dropped_arm_must_beat_the_others_by_more_than_the_noise():
    # fashion-mnist at 60 s: a revived scratch read 0.866 against the probe's 0.864 (300 images:
    # one standard error is 0.02) and scored 6 points lower on test: the probe stays
    probe, _, result, clock = _probe_and_scratch(0.864, lambda t: 0.30 + 0.02 * t if t < 20 else 0.866)
    assert result.winner is probe and clock.now == pytest.approx(60.0)
    assert "by more than the noise" in next(a["fate"] for a in result.arms if a["name"] == "scratch")
    assert "had to pass 0.884" in result.reason


def test_when_the_arm_that_took_the_rest_finishes_early_the_next_arm_takes_what_is_left():
    # digits at 60 s: the probe, cut short and projected highest, took the rest and finished its
    # data with time to spare; scratch, stopped then with 10 s of training, now trains on
    probe, scratch, result, clock = _probe_and_scratch(0.94, lambda t: 0.91 + 0.001 * t if t < 30 else 0.99,
                                                       probe_done=30.0, slices=(10.0, 10.0))
    fates = {a["name"]: a["fate"] for a in result.arms}
    assert clock.now == pytest.approx(60.0) and not scratch.stopped
    assert result.winner is scratch and fates["scratch"].startswith("won: trained on with the time left")
    assert probe.finished and fates["probe"].startswith("lost: scratch reached higher")


def test_rounds_split_the_time_until_a_quarter_is_left():
    clock = _Clock()
    a = _FakeArm("a", clock, lambda t: 0.80 + 0.001 * t)
    b = _FakeArm("b", clock, lambda t: 0.80 + 0.0011 * t)
    result = run_race([a, b], 100.0, 300, {"a": 5.0, "b": 5.0}, clock=clock)
    assert len(result.rounds) >= 2
    last_split = result.rounds[-1]["at_seconds"]
    assert last_split >= (1 - COMMIT_SHARE) * 100.0 - 1e-6
    assert clock.now == pytest.approx(100.0)
    assert sum(len(arm.slices) for arm in (a, b)) >= 5


def test_a_scratch_arm_continues_its_own_run_across_slices(tmp_path):
    """The real training loop, parked between slices: its step counter and clock carry on,
    one model is built, and the kept training holds every slice's rows."""
    import time

    from conftest import make_blobs
    from headstart.choose.auto_fit import pipeline_stages
    from headstart.choose.race_arms import LoopArm, gated
    from headstart.config import FitConfig
    from headstart.modalities import modality_of
    from headstart.pipeline import split

    data = make_blobs(n_per_class=24, size=16)
    config = FitConfig(data="blobs", strategy="auto", scratch_model="resnet9", image_size=16, batch_size=8,
                       explain_examples=0, patience=100, epochs=3)  # 27 steps, 12 evaluations: ends on its own
    stages = pipeline_stages(config, modality_of(data), split(config, data), use_feature_cache=False)
    origin = time.perf_counter()
    arm = LoopArm("scratch", lambda b: stages.loop("scratch", b, 4, None), origin + 300.0, origin=origin)
    with gated([arm]):
        # slices far shorter than the run: each parks at its next validation (every ~2 steps), so
        # two of them cannot reach the end however fast the machine (at 1 s an idle one did)
        arm.advance(0.05)
        first = arm.record()["slices"][-1]
        arm.advance(0.05)
        second = arm.record()["slices"][-1]
        arm.run_to_end(300.0)
    kept = arm.kept()
    assert len(arm.record()["slices"]) == 3  # it never finished early: each slice ran on
    assert first["to_step"] > 0 and second["from_step"] == first["to_step"] and second["to_step"] > first["to_step"]
    assert kept.recorder.step >= second["to_step"]
    steps = [r["step"] for r in kept.recorder.rows if r["split"] == "val"]
    assert steps == sorted(steps) and steps[0] <= first["to_step"]  # one run: never back to step 1
    assert kept.outcome["stop_reason"] == "completed" and kept.outcome["epochs_run"] == pytest.approx(3.0)


def test_the_race_is_drawn(tmp_path):
    from headstart.report.race import race_figure

    race = {"arms": [
        {"name": "probe", "fate": "lost: scratch reached higher", "slices": [{"from": 0, "to": 5}],
         "curve": [{"at": 4.0, "accuracy": 0.9}, {"at": 5.0, "accuracy": 0.93}]},
        {"name": "scratch", "fate": "won: continued", "slices": [{"from": 5, "to": 9}, {"from": 9, "to": 30}],
         "curve": [{"at": 6.0, "accuracy": 0.5}, {"at": 9.0, "accuracy": 0.8}, {"at": 30.0, "accuracy": 0.97}]}]}
    made = race_figure(race, tmp_path / "race.png")
    assert made.exists() and made.read_bytes()[:4] == b"\x89PNG"
    assert race_figure({"arms": []}, tmp_path / "none.png") is None


def test_lp_ft_reaches_at_least_the_probe_head_it_starts_from():
    # elpv at 60 s: lp-ft's own epochs read 0.695 while it kept the probe's head (0.7725): the race
    # read 0.695 and nearly gave the win to scratch's 0.686
    from headstart.choose.race_arms import LoopArm

    arm = LoopArm("lp-ft", lambda b: None, 0.0, start_accuracy=0.7725)
    assert arm.reached() == 0.7725
    arm._timeline.point(1.0, 0.695)
    assert arm.reached() == 0.7725
    arm._timeline.point(2.0, 0.80)
    assert arm.reached() == 0.80
    assert LoopArm("scratch", lambda b: None, 0.0).reached() == 0.0
    # and its projection never falls below that head: it is not dropped for its epochs' dip
    dipped = LoopArm("lp-ft", lambda b: None, 0.0, start_accuracy=0.775)
    for cost, accuracy in [(1.0, 0.62), (2.0, 0.66), (3.0, 0.68)]:
        dipped._timeline.point(cost, accuracy)
    p = project(dipped.points(), 10.0, n_val=300)
    assert p.mid >= 0.775 and p.high >= 0.775


def test_an_arm_trained_on_the_training_part_alone_must_clearly_beat_a_refitting_one():
    # elpv, 100/class (200 training images, 334 validation): scratch read 0.781 against the
    # probe's 0.775, and the probe, refit on train+val, scored 0.822 on test against scratch's 0.726
    class _Refitting(_FakeArm):
        refits = True

    def race(scratch_end):
        clock = _Clock()
        probe = _Refitting("probe", clock, lambda t: 0.775, finishes_after=6.0)
        scratch = _FakeArm("scratch", clock, lambda t: min(scratch_end, 0.70 + 0.01 * t))
        return probe, scratch, run_race([probe, scratch], 60.0, 334, {"probe": 6.0, "scratch": 8.0}, clock=clock)

    probe, _, close = race(0.781)
    assert close.winner is probe and "learns from the validation part" in close.reason
    assert next(a["fate"] for a in close.arms if a["name"] == "scratch").startswith("lost: within the noise of probe")
    _, scratch, clear = race(0.85)
    assert clear.winner is scratch
