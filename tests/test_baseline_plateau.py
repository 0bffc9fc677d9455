"""The honest scratch baseline (issue 11): the plateau rule, the cool-down that ends a plateaued
run annealed, the baseline's own budget, and the plateau as compare's target."""
import math

import numpy as np
import pytest
import torch

from conftest import make_blobs, write_image_folder
from headstart.cli import main
from headstart.baseline import BASELINE_CAP_MULTIPLE, BASELINE_CAP_SECONDS, baseline_budget
from headstart.compare import judge
from headstart.config import CompareConfig
from headstart.records import read_json, read_metrics
from headstart.train.optim import build_schedule
from headstart.train.plateau import PLATEAU_RULE, has_plateaued, read_plateau, smoothed

FAST = ["--image-size", "32", "--batch-size", "16"]


# --------------------------------------------------------------------------- the rule, on hand-made curves

def curve(values, step=1.0):
    return [step * (i + 1) for i in range(len(values))], list(values)


def test_a_single_spike_does_not_set_the_plateau():
    seconds, acc = curve([0.50, 0.60, 0.93, 0.66, 0.70, 0.71, 0.72, 0.71, 0.72, 0.72])
    read = read_plateau(seconds, acc)
    assert read["accuracy"] == pytest.approx(0.72)   # not the spike's 0.93
    assert read["seconds"] == 9.0                     # two of the last three first hold 0.72 there
    assert read["evaluations"] == 10
    # nor at the very first evaluations, before the median has three to look at
    assert read_plateau(*curve([0.9, 0.4, 0.5, 0.55, 0.6]))["accuracy"] == pytest.approx(0.55)
    # two good evaluations out of three do move it
    assert read_plateau(*curve([0.5, 0.6, 0.9, 0.9, 0.6]))["accuracy"] == pytest.approx(0.9)


def test_a_still_rising_curve_has_not_plateaued_and_a_flat_one_has():
    rising = np.linspace(0.5, 0.8, 30)                 # +1 point per evaluation
    assert not has_plateaued(*curve(rising))
    slow = np.linspace(0.5, 0.8, 30) ** 0.2            # still gaining > 0.5 points over the last 40%
    assert not has_plateaued(*curve(slow))
    flat = list(np.linspace(0.5, 0.8, 15)) + [0.80, 0.795, 0.802, 0.798, 0.80, 0.801]
    assert not has_plateaued(*curve(flat))             # flat for 6 of 21: too soon to tell
    flat += [0.799, 0.80, 0.80, 0.80]
    assert has_plateaued(*curve(flat))                 # flat for the last third and more
    # noise around a flat line is no gain: a spike inside the looked-back stretch does not count
    spiky = list(flat[:-3]) + [0.95, 0.80, 0.80]
    assert has_plateaued(*curve(spiky))


def test_a_flat_stretch_shorter_than_three_epochs_is_turbulence_not_a_plateau():
    # 4 evaluations an epoch (as compare asks): 2 epochs rising, then flat
    rise = [0.3 + 0.06 * i for i in range(8)]
    seconds, acc = curve(rise + [0.75] * 10)
    epochs = [(i + 1) / 4 for i in range(len(acc))]
    assert has_plateaued(seconds, acc)                       # without epochs: the time share alone
    assert not has_plateaued(seconds, acc, epochs=epochs)    # the looked-back third spans 1.5 epochs
    seconds, acc = curve(rise + [0.75] * 28)
    epochs = [(i + 1) / 4 for i in range(len(acc))]
    assert has_plateaued(seconds, acc, epochs=epochs)        # its last third spans 3 epochs


def test_too_few_evaluations_are_neither_a_plateau_nor_a_reading():
    assert not has_plateaued(*curve([0.7, 0.7, 0.7, 0.7]))  # < min_evaluations in the lookback
    assert read_plateau(*curve([0.7, 0.9])) is None         # shorter than the median's window
    assert list(smoothed([0.1, 0.9, 0.2, 0.3])) == pytest.approx([-math.inf, -math.inf, 0.2, 0.3])
    assert "0.5 points" in PLATEAU_RULE.describe()


# --------------------------------------------------------------------------- the cool-down

def test_a_plateau_cools_the_rate_down_from_where_it_is_to_zero():
    from headstart.train.optim import cool_down

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [weight], "lr": 1.0, "initial_lr": 1.0}])
    scheduler = build_schedule("onecycle", optimizer, 300)   # 30 epochs of 10 steps: warm-up to step 75
    for _ in range(80):
        optimizer.step()
        scheduler.step()
    at_peak = optimizer.param_groups[0]["lr"]
    assert at_peak > 0.95                                     # a run stopped now would stop at its peak
    cool_down(scheduler, steps_per_epoch=10)
    assert scheduler.horizon.total == 80 + 20                 # 25% of the steps so far (>= one epoch)
    lrs = []
    for _ in range(20):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] < at_peak and lrs[0] > 0.9 * at_peak        # continuous: no jump
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))          # annealing
    assert lrs[-1] < 1e-3                                     # to ~0 at the horizon's end


def test_a_horizon_already_ending_sooner_is_left_alone():
    from headstart.train.optim import cool_down

    optimizer = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1.0, "initial_lr": 1.0}])
    scheduler = build_schedule("onecycle", optimizer, 100)
    for _ in range(95):
        optimizer.step()
        scheduler.step()
    before = scheduler.lr_lambdas[0]
    cool_down(scheduler, steps_per_epoch=10)
    assert scheduler.horizon.total == 100 and scheduler.lr_lambdas[0] is before


# --------------------------------------------------------------------------- the baseline's budget

def test_the_baseline_budget_is_its_own():
    assert baseline_budget(CompareConfig(data="d", budget_seconds=100)) == BASELINE_CAP_MULTIPLE * 100
    assert baseline_budget(CompareConfig(data="d")) == BASELINE_CAP_SECONDS
    assert baseline_budget(CompareConfig(data="d", budget_seconds=100, baseline_budget_seconds=30)) == 30


def test_the_verdict_names_the_plateau_and_a_cap_that_cut_it_short():
    def arm(name, strategy, test, ttt, plateau=None):
        return {"name": name, "strategy": strategy, "backbone": "b", "test_accuracy": test,
                "time_to_target_seconds": ttt, "test_accuracy_spread": 0.0, "baseline": strategy == "scratch",
                **({"plateau": plateau} if plateau else {})}
    plateau = {"accuracy": 0.793, "seconds": 153.0, "reached_cap": False, "budget_seconds": 500.0}
    out = judge([arm("probe", "probe", 0.87, 3.7), arm("scratch", "scratch", 0.80, 153.0, plateau)], 0.793, n_test=400)
    assert out["speedup"] == pytest.approx(41.35)
    assert "The scratch baseline plateaued at 0.793 validation accuracy after 153.0 s of training; " \
           "that is the target." in out["verdict_sentence"]
    capped = {**plateau, "reached_cap": True}
    out = judge([arm("probe", "probe", 0.87, 3.7), arm("scratch", "scratch", 0.80, 153.0, capped)], 0.793, n_test=400)
    assert "its cap of 500 s stopped it before a plateau was confirmed" in out["verdict_sentence"]
    # an old comparison's arms (no plateau) give the old sentence
    out = judge([arm("probe", "probe", 0.87, 3.7), arm("scratch", "scratch", 0.80, 153.0)], 0.793, n_test=400)
    assert "plateau" not in out["verdict_sentence"]


# --------------------------------------------------------------------------- a tiny compare, end to end

def arm_config(out, arm):
    import yaml
    return yaml.safe_load((out / "arms" / arm / "config.yaml").read_text())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "data", make_blobs(n_per_class=20))


@pytest.mark.report
def test_compare_trains_scratch_to_its_plateau_and_makes_it_the_target(folder, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(folder), "--arms", "probe,scratch", "--budget", "20s", "--epochs", "20",
                 "--out", str(out), "--explain-examples", "0", *FAST]) == 0
    comparison = read_json(out / "comparison.json")
    plateau = comparison["baseline_plateau"]
    assert comparison["target_source"] == "baseline-plateau"
    assert comparison["target_accuracy"] == plateau["accuracy"]
    assert plateau["arm"] == "scratch" and plateau["rule"] == PLATEAU_RULE.describe()
    assert comparison["baseline_budget_seconds"] == plateau["budget_seconds"] == BASELINE_CAP_MULTIPLE * 20
    # the scratch arm had the baseline's budget, not the probe's, and stopped on its plateau
    assert arm_config(out, "scratch")["budget_seconds"] == BASELINE_CAP_MULTIPLE * 20
    # the probe's own 20 s, less what the command spent before it (its promise is the arms' sum: 120 s)
    assert 15 < arm_config(out, "probe")["budget_seconds"] <= 20
    scratch = read_json(out / "arms" / "scratch" / "summary.json")
    assert scratch["stop_reason"] == "plateau" and not plateau["reached_cap"]
    # the plateau is the robust reading of its own validation curve; scratch's time to target is
    # read like every arm's (issue 23.4): its first evaluation within the noise of the plateau
    val = [r for r in read_metrics(out / "arms" / "scratch") if r["split"] == "val"]
    read = read_plateau([r["train_seconds"] for r in val], [r["accuracy"] for r in val])
    assert plateau["accuracy"] == read["accuracy"] and plateau["seconds"] == read["seconds"]
    arms = {a["name"]: a for a in comparison["arms"]}
    assert comparison["target_reached_at"] < plateau["accuracy"]
    assert arms["scratch"]["time_to_target_seconds"] == next(
        r["train_seconds"] for r in val if r["accuracy"] >= comparison["target_reached_at"] - 1e-9)
    assert arms["scratch"]["time_to_target_seconds"] <= plateau["seconds"]
    # the annealed run's last evaluations were at a rate near zero: it converged rather than stopping mid-peak
    assert val[-1]["lr"] < 0.05 * max(r["lr"] for r in val)
    sentence = comparison["verdict_sentence"]
    assert f"plateaued at {plateau['accuracy']:.3f} validation accuracy after {plateau['seconds']:.1f} s" in sentence
    assert "plateaued at" in capsys.readouterr().out  # printed too
    page = (out / "report.html").read_text()
    assert "The baseline&#39;s plateau" in page or "The baseline's plateau" in page


def test_baseline_budget_caps_the_scratch_arm(folder, tmp_path):
    out = tmp_path / "cmp"
    # --patience keeps scratch from stopping on its plateau, so only the cap can stop it
    assert main(["compare", str(folder), "--arms", "probe,scratch", "--budget", "20s", "--baseline-budget", "6s",
                 "--patience", "1000", "--epochs", "1000", "--explain-examples", "0", "--out", str(out), *FAST]) == 0
    comparison = read_json(out / "comparison.json")
    scratch = read_json(out / "arms" / "scratch" / "summary.json")
    assert scratch["stop_reason"] == "budget" and scratch["train_seconds"] < 6.0
    assert comparison["baseline_budget_seconds"] == 6.0
    assert comparison["baseline_plateau"]["reached_cap"] is True
    assert "its cap of 6 s stopped it" in comparison["verdict_sentence"]
