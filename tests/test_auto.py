"""--strategy auto: the race on given evidence, the budget, and one real fit;
the expected-time estimate; --freeze-depth and --layer-decay."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import make_blobs
from headstart.choose import auto
from headstart.choose.auto import Stages, choose_strategy
from headstart.train.throughput import Rates, model_rates
from headstart.config import FitConfig
from headstart.errors import HeadstartError


class _Split:
    def __init__(self, n, k=2):
        self.labels = np.arange(n) % k
        self.num_classes = k

    def __len__(self):
        return len(self.labels)

    def subset(self, index):
        return _Split(len(index), self.num_classes)


def _stages(probe_acc, scratch_curve, transfer=Rates(2000.0, 200.0, 0.0), baseline=Rates(2000.0, 500.0, 0.0)):
    """Fake stages: the probe completes at probe_acc; the scratch loop logs scratch_curve(t)
    every 50 ms of real time (t: its training seconds) through a real Recorder, so the race's
    gate parks and resumes it as it would a real loop, until its budget."""
    import time

    from headstart.pipeline import KeptTraining
    from headstart.records import Recorder

    calls = []

    def pilot(strategy, budget, train, val, evals_per_epoch=1, hold_refit=False):
        calls.append((strategy, budget))
        return {"best_val_accuracy": probe_acc, "n_used": len(train), "wall_seconds": 0.5, "kept": "probe-model",
                "rows": [{"split": "val", "phase": "probe", "accuracy": probe_acc, "n_train": len(train)}]}

    def loop(strategy, budget, evals_per_epoch, start):
        calls.append((strategy, budget))
        recorder = Recorder(None, strategy, write=False)
        while recorder.wall_seconds + 0.05 < budget:
            recorder.resume()
            time.sleep(0.05)
            recorder.step += 1
            recorder.epoch = recorder.step / 10
            recorder.log("val", scratch_curve(recorder.train_seconds), 0.5, phase=strategy)
        return KeptTraining(f"{strategy}-model", recorder, {"best_val_accuracy": None, "steps": recorder.step})

    rates = {"probe": transfer, "lp-ft": transfer, "scratch": baseline}
    return Stages(rates=lambda s: rates[s], pilot=pilot, no_transfer="scratch", loop=loop), calls


def test_auto_races_and_the_winning_scratch_arm_is_one_continued_run():
    # the probe completes at 0.90; scratch climbs past it: it wins, and what the run keeps is the
    # scratch loop that ran through every slice (one call, one model), not a second start
    stages, calls = _stages(0.90, lambda t: min(0.99, 0.5 + 0.2 * t))
    choice = choose_strategy(_Split(400), _Split(100), 100, 8.0, stages)
    assert choice.strategy == "scratch" and choice.kept.model == "scratch-model"
    assert [c[0] for c in calls] == ["probe", "scratch"]  # each arm started once
    race = choice.evidence["race"]
    scratch = next(a for a in race["arms"] if a["name"] == "scratch")
    assert len(scratch["slices"]) >= 2 and scratch["fate"].startswith("won")
    assert all(b["from_step"] == a["to_step"] for a, b in zip(scratch["slices"], scratch["slices"][1:]))
    assert choice.kept.recorder.step == scratch["slices"][-1]["to_step"]
    # scratch already holds 0.99 (its projection never falls below what it holds): the probe's
    # 0.90 on 100 validation images is clearly below, and dropped
    probe = next(a for a in race["arms"] if a["name"] == "probe")
    assert race["rounds"] and "below scratch's pessimistic" in probe["fate"]
    # the time spent choosing comes off the budget the run gets
    assert choice.budget_left <= 8.0 - auto.CLOSING_RESERVE


def test_a_winning_scratch_arm_trains_on_in_the_test_pass_time_it_does_not_need():
    # the closing reserve is sized for the transfer model's test pass (1000 images at 400/s: 2.5 s);
    # the scratch model's (at 4000/s, budgeted twice over: 0.5 s) leaves 2 s that a winning
    # scratch loop trains in, past the race's own end
    stages, _ = _stages(0.90, lambda t: min(0.99, 0.5 + 0.2 * t), transfer=Rates(400.0, 200.0, 0.0),
                        baseline=Rates(4000.0, 500.0, 0.0))
    choice = choose_strategy(_Split(400), _Split(100), 1000, 10.0, stages)
    assert choice.strategy == "scratch"
    assert choice.evidence["baseline_slack_seconds"] == pytest.approx(2.0)
    race_end = 10.0 - auto.CLOSING_RESERVE - 1000 / 400.0
    scratch = next(a for a in choice.evidence["race"]["arms"] if a["name"] == "scratch")
    assert scratch["slices"][-1]["to"] > race_end + 1.0
    assert choice.kept.recorder.wall_seconds > scratch["slices"][-1]["to"] - scratch["slices"][0]["from"] - 0.5


def test_evidence_that_leans_to_scratch_runs_the_scratch_arm_first():
    stages, calls = _stages(0.90, lambda t: min(0.99, 0.5 + 0.2 * t))
    stages.sizes = lambda: {"native": 8, "model": 224}  # tiny native images: scratch's case
    choice = choose_strategy(_Split(400), _Split(100), 100, 8.0, stages)
    assert choice.evidence["cheap"]["scratch_prior"] >= auto.SCRATCH_FIRST_WHEN
    assert [c[0] for c in calls] == ["scratch", "probe"]


def test_auto_keeps_the_probe_when_scratch_stays_below_it():
    stages, _ = _stages(0.95, lambda t: 0.6)
    choice = choose_strategy(_Split(400), _Split(100), 100, 8.0, stages)
    assert choice.strategy == "probe" and choice.kept == "probe-model"
    # dropped, then given the time the finished probe could not use, and still below it
    fate = next(a["fate"] for a in choice.evidence["race"]["arms"] if a["name"] == "scratch")
    assert fate.startswith("dropped") and "lost: probe reached higher" in fate


def test_a_one_shot_baseline_runs_first_and_wins_when_it_reads_higher():
    stages, calls = _stages(0.90, lambda t: 0.5)
    stages.no_transfer = "tfidf"
    plain_pilot = stages.pilot

    def pilot(strategy, budget, train, val, evals_per_epoch=1, hold_refit=False):
        if strategy == "tfidf":  # one shot, exact, no rate: under a share of the race as its own budget
            calls.append((strategy, budget))
            return {"best_val_accuracy": 0.95, "n_used": len(train), "wall_seconds": 0.2, "kept": "tfidf-model",
                    "rows": [{"split": "val", "phase": "tfidf", "accuracy": 0.95}]}
        return plain_pilot(strategy, budget, train, val, evals_per_epoch, hold_refit)

    stages.pilot = pilot
    stages.rates = lambda s: None if s == "tfidf" else Rates(2000.0, 200.0, 0.0)
    choice = choose_strategy(_Split(400), _Split(100), 100, 8.0, stages)
    assert [c[0] for c in calls] == ["tfidf", "probe"]
    race = choice.evidence["budget_seconds"] - auto.CLOSING_RESERVE - 100 / 2000.0  # less the test pass
    assert calls[0][1] == pytest.approx(auto.ONE_SHOT_SHARE * race, rel=0.05)  # its own budget, not none
    assert choice.strategy == "tfidf" and choice.kept == "tfidf-model"
    assert [a["name"] for a in choice.evidence["race"]["arms"]] == ["tfidf", "probe"]


def test_the_cheap_evidence_sets_the_scratch_arms_first_slice():
    stages, _ = _stages(0.9, lambda t: 0.5)
    stages.sizes = lambda: {"native": 8, "model": 224}
    stages.raw_knn = lambda: 0.95
    lean = auto._cheap_evidence(_Split(1000, 5), stages, Rates(2000.0, 500.0, 0.0))
    assert lean["scratch_prior"] > 1.5 and len(lean["prior_because"]) == 3
    stages.sizes, stages.raw_knn = (lambda: {"native": 224, "model": 224}), (lambda: 0.3)
    few = auto._cheap_evidence(_Split(50, 5), stages, Rates(2000.0, 500.0, 0.0))
    assert few["scratch_prior"] == 0.5


def test_where_all_the_evidence_leans_to_scratch_the_probe_hedges_at_a_smaller_size():
    # tiny native images, 100 examples a class, raw k-NN 0.95: the probe runs at HEDGE_SIZE, its
    # rates are measured there, and a winning probe's fit is run at that size
    stages, _ = _stages(0.95, lambda t: 0.6)
    stages.sizes, stages.raw_knn = (lambda: {"native": 8, "model": 224}), (lambda: 0.95)
    order, measured = [], stages.rates
    stages.rates = lambda s: order.append(s) or measured(s)
    stages.transfer_size = lambda size: order.append(size) or size
    choice = choose_strategy(_Split(500, 5), _Split(100), 100, 8.0, stages)
    assert order.index(auto.HEDGE_SIZE) < order.index("probe")
    assert choice.evidence["transfer_image_size"]["size"] == auto.HEDGE_SIZE
    assert choice.strategy == "probe" and choice.settings == {"image_size": auto.HEDGE_SIZE}
    # mixed evidence (raw k-NN low, as on fashion-mnist) or a size the user named: no hedge
    stages.raw_knn = lambda: 0.6
    mixed = auto._cheap_evidence(_Split(1000, 5), stages, Rates(2000.0, 500.0, 0.0))
    assert mixed["scratch_prior"] > 1.5 and auto._hedge(mixed, stages) is None
    stages.raw_knn, stages.transfer_size = (lambda: 0.95), (lambda size: None)
    assert auto._hedge(auto._cheap_evidence(_Split(1000, 5), stages, Rates(2000.0, 500.0, 0.0)), stages) is None


def test_a_budget_too_small_names_the_minimum():
    stages, _ = _stages(0.9, lambda t: 0.5, transfer=Rates(10.0, 2.0, 0.0), baseline=Rates(20.0, 5.0, 0.0))
    with pytest.raises(HeadstartError, match=r"too small .* about \d+ s") as e:
        choose_strategy(_Split(400), _Split(100), 100, 10.0, stages)
    assert "--budget" in e.value.hint


def test_a_budget_an_earlier_choice_used_up_takes_the_cheapest_strategy_instead_of_refusing():
    """--backbone auto ranked for 50 s of a 60 s budget on a busy machine: the command goes on with
    the cheapest strategy rather than telling a user who gave 60 s to give 10."""
    stages, calls = _stages(0.9, lambda t: 0.5, transfer=Rates(10.0, 2.0, 0.0), baseline=Rates(20.0, 5.0, 0.0))
    choice = choose_strategy(_Split(400), _Split(100), 100, 10.0, stages, spent_before=50.0)
    assert choice.strategy == "probe" and choice.kept is None and calls == []  # trained by the fit, no race
    assert "50 s of choosing the backbone" in choice.reason and choice.budget_left == 10.0


@pytest.mark.slow
@pytest.mark.report
def test_fit_with_strategy_auto_records_its_choice_and_reason(tmp_path):
    from headstart.choose.auto_fit import fit_auto as fit

    data = make_blobs(n_per_class=20, size=32)
    budget = 60.0
    result = fit(FitConfig(data="blobs", strategy="auto", image_size=32, budget_seconds=budget,
                           explain_examples=0, out=str(tmp_path / "run")), data=data)
    chosen = result.summary["auto"]["strategy"]
    assert result.summary["strategy"] == chosen["strategy"] in ("probe", "lp-ft", "scratch")
    race = chosen["evidence"]["race"]
    assert chosen["reason"] and race["rounds"] and {a["name"] for a in race["arms"]} >= {"probe", "scratch"}
    assert race["winner"] == chosen["strategy"] and all(a["fate"] for a in race["arms"])
    # the run's config is the chosen one (fit --config reproduces it), its budget what was left
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["strategy"] == chosen["strategy"]
    assert saved["budget_seconds"] <= max(budget - chosen["evidence"]["choosing_seconds"], 1.0)
    from headstart.report import build_fit_report

    # the report is drawn again here: a loaded machine may have skipped it to keep the budget
    page = build_fit_report(tmp_path / "run").read_text()
    assert "Chosen automatically" in page and "race.png" in page and (tmp_path / "run" / "race.png").exists()


def test_rates_are_measured_once_then_read_from_the_cache(monkeypatch):
    from headstart.modalities import modality_of
    from headstart.train import throughput
    from headstart.zoo import get_backbone

    # a quiet machine: under the suite's two workers the load average can pass the core count, and
    # a rate measured busy is measured again once quiet (tests/test_budget.py pins that behaviour)
    monkeypatch.setattr(throughput, "busy_now", lambda before=None: None)

    data = make_blobs(n_per_class=4, size=32)
    model = modality_of(data).build_classifier(get_backbone("resnet9", pretrained=False, image_size=32), 3)
    prepared = model.prepare(data)
    first = model_rates(model, prepared.inputs, prepared.labels)
    again = model_rates(model, prepared.inputs, prepared.labels)
    assert not first.cached and first.forward > 0 and first.train > 0
    assert again.cached and again.forward == pytest.approx(first.forward)


@pytest.mark.slow
def test_a_fit_without_budget_says_how_long_it_expects(tmp_path, capsys, monkeypatch):
    from headstart.pipeline import fit

    monkeypatch.setenv("HEADSTART_QUIET", "0")
    fit(FitConfig(data="blobs", strategy="scratch", scratch_model="resnet9", epochs=1, explain_examples=0,
                  out=str(tmp_path / "run")), data=make_blobs(n_per_class=8, size=16))
    said = [line for line in capsys.readouterr().err.splitlines() if "expected time" in line]
    assert said and "training images" in said[0] and "1 epoch" in said[0]


def test_freeze_depth_keeps_the_stem_groups_still_and_layer_decay_spreads_rates(tmp_path):
    import torch

    from headstart.pipeline import build, resolve_plan
    from headstart.modalities import modality_of
    from headstart.strategies.backbone_training import freeze_stem_groups

    data = make_blobs(n_per_class=8, size=16)
    config = FitConfig(data="blobs", strategy="lp-ft", backbone="resnet9", pretrained=False, image_size=16)
    model = build(resolve_plan(config, modality_of(data)), data)
    groups = model.backbone.param_groups()
    freeze_stem_groups(model.backbone, 2)
    assert not any(p.requires_grad for g in groups[:2] for p in g)
    assert all(p.requires_grad for g in groups[2:] for p in g)
    with pytest.raises(HeadstartError, match="freeze-depth"):
        freeze_stem_groups(model.backbone, len(groups))
    from headstart.strategies import get_strategy
    spread = get_strategy("lp-ft").spread(4, modality_of(data), FitConfig(data="x", layer_decay=0.5))
    assert spread == pytest.approx(0.5 ** -3)  # stem at lr * 0.5^3
    assert torch.is_tensor(groups[0][0])


def test_a_winning_probe_delivers_its_refit_head_while_lp_ft_starts_from_the_train_only_one():
    # the race's probe arm holds its train+val refit beside the train-only head lp-ft would start
    # from; the refit is written only if the probe wins (fashion-mnist at 60 s: 0.872 without it,
    # 0.894 for the fixed probe, which refits)
    import torch

    from headstart.choose.auto_fit import pipeline_stages
    from headstart.modalities import modality_of
    from headstart.pipeline import split

    data = make_blobs(n_per_class=20, size=16)
    config = FitConfig(data="blobs", strategy="auto", backbone="tf_efficientnet_lite0", image_size=32,
                       explain_examples=0)
    splits = split(config, data)
    stages = pipeline_stages(config, modality_of(data), splits, use_feature_cache=False)
    held = stages.pilot("probe", None, splits.train, splits.val, evals_per_epoch=4, hold_refit=True)["kept"]
    plain = stages.pilot("probe", None, splits.train, splits.val, evals_per_epoch=4)["kept"]
    assert "delivered" not in held.outcome and "held_refit" in held.outcome
    assert plain.outcome["delivered"].startswith("refit on train+val")
    before = held.model.head.fc.weight.detach().clone()
    lpft = auto._deliver(stages.pilot("probe", None, splits.train, splits.val, evals_per_epoch=4,
                                      hold_refit=True)["kept"], "lp-ft")
    assert "held_refit" not in lpft.outcome and "delivered" not in lpft.outcome
    assert torch.equal(lpft.model.head.fc.weight, before)  # lp-ft's start: the head that never saw validation
    delivered = auto._deliver(held, "probe")
    assert delivered.outcome["delivered"] == plain.outcome["delivered"]
    assert not torch.equal(delivered.model.head.fc.weight, before)
    assert torch.allclose(delivered.model.head.fc.weight, plain.model.head.fc.weight, atol=1e-4)
