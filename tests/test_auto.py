"""--strategy auto: the projection, the choice on given evidence, the budget, and one real fit;
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


def _rows(curve):
    return [{"split": "val", "train_seconds": t, "accuracy": a} for t, a in curve]


def test_projection_adds_the_last_doubling_halved_each_time_after():
    flat = {"rows": _rows([(1, 0.7), (2, 0.7), (4, 0.7)]), "best_val_accuracy": 0.7}
    assert auto._project(flat, 64) == pytest.approx(0.7)
    rising = {"rows": _rows([(1, 0.60), (2, 0.62), (4, 0.64)]), "best_val_accuracy": 0.64}
    # last doubling (2 -> 4 s) gained 0.02; 4 -> 16 s is two more doublings: 0.02 * (1 + 1/2)
    assert auto._project(rising, 16) == pytest.approx(0.64 + 0.02 * 1.5)
    # never more than MAX_ERROR_REMOVED of the error left, however long the budget
    steep = {"rows": _rows([(1, 0.2), (2, 0.9)]), "best_val_accuracy": 0.9}
    assert auto._project(steep, 1e6) == pytest.approx(0.9 + auto.MAX_ERROR_REMOVED * 0.1)


class _Split:
    def __init__(self, n, k=2):
        self.labels = np.arange(n) % k
        self.num_classes = k

    def __len__(self):
        return len(self.labels)

    def subset(self, index):
        return _Split(len(index), self.num_classes)


def _stages(probe_acc, scratch_curve, transfer=Rates(200.0, 20.0, 0.0), baseline=Rates(2000.0, 500.0, 0.0)):
    calls = []

    def pilot(strategy, budget, train, val, evals_per_epoch=1):
        calls.append((strategy, budget, len(train)))
        if strategy == "probe":
            return {"best_val_accuracy": probe_acc, "rows": _rows([(1.0, probe_acc)]), "n_used": len(train)}
        return {"best_val_accuracy": max(a for _, a in scratch_curve), "rows": _rows(scratch_curve),
                "n_used": len(train)}

    rates = {"probe": transfer, "lp-ft": transfer, "scratch": baseline}
    return Stages(rates=lambda s: rates[s], pilot=pilot, no_transfer="scratch"), calls


def test_auto_picks_scratch_when_its_curve_overtakes_the_probe():
    stages, calls = _stages(0.90, [(2, 0.90), (4, 0.95)])
    choice = choose_strategy(_Split(400), _Split(100), 100, 120.0, stages)
    assert choice.strategy == "scratch" and "does not pay" in choice.reason
    assert choice.evidence["projected"]["scratch"] > choice.evidence["projected"]["transfer"]
    assert [c[0] for c in calls] == ["probe", "scratch"]
    closing = auto.CLOSING_RESERVE + 100 / 200.0  # the test pass at the transfer rate, and the files
    # a short pilot (shares come from the time left when each pilot starts: the test's own
    # microseconds of real time come off it, hence abs=)
    assert calls[1][1] == pytest.approx(auto.PILOT_SHARE * (120 - closing), abs=0.05)


def test_auto_keeps_transfer_and_fine_tunes_only_when_epochs_fit():
    stages, _ = _stages(0.85, [(2, 0.60), (4, 0.62)])
    roomy = choose_strategy(_Split(400), _Split(100), 100, 300.0, stages)
    assert roomy.strategy == "lp-ft" and roomy.evidence["finetune_epochs_that_fit"] >= auto.FINETUNE_EPOCHS
    tight = choose_strategy(_Split(400), _Split(100), 100, 40.0, stages)
    assert tight.strategy == "probe" and "fit only" in tight.reason
    # the time spent choosing comes off the budget the chosen run gets
    assert tight.budget_left <= 40.0 - auto.CLOSING_RESERVE


def test_the_probe_pilot_is_the_real_probe_under_its_share_of_the_budget():
    stages, calls = _stages(0.8, [(2, 0.5), (4, 0.5)])
    choose_strategy(_Split(400), _Split(100), 100, 100.0, stages)
    closing = auto.CLOSING_RESERVE + 100 / 200.0
    # its share of the budget, plus its validation pass (100 examples at the transfer rate)
    # (taken from the time left when it starts: the test's own milliseconds come off it, hence abs=)
    assert calls[0] == ("probe", pytest.approx(auto.FULL_PROBE_SHARE * (100.0 - closing) + 100 / 200.0, abs=0.05), 400)


def test_a_probe_pilot_cut_short_is_projected_from_its_data_curve():
    rows = [{"split": "val", "n_train": n, "accuracy": a} for n, a in ((25, 0.70), (50, 0.76), (100, 0.80))]
    cut = {"best_val_accuracy": 0.80, "n_train": 100, "complete": False, "wall_seconds": 10.0, "rows": rows}
    # 10 s bought 100 examples; 40 s more buy all 400: two doublings past 100, each half the last (0.04)
    assert auto._project_probe(cut, 400, 40.0) == pytest.approx(0.80 + 0.04 * 1.5)
    assert auto._project_probe({**cut, "complete": True}, 400, 40.0) == pytest.approx(0.80)


def test_a_budget_too_small_names_the_minimum():
    stages, _ = _stages(0.9, [(1, 0.5)], transfer=Rates(10.0, 2.0, 0.0), baseline=Rates(20.0, 5.0, 0.0))
    with pytest.raises(HeadstartError, match=r"too small .* about \d+ s") as e:
        choose_strategy(_Split(400), _Split(100), 100, 10.0, stages)
    assert "--budget" in e.value.hint


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
    assert chosen["reason"] and chosen["evidence"]["pilots"]
    # the run's config is the chosen one (fit --config reproduces it), its budget what was left
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["strategy"] == chosen["strategy"]
    assert saved["budget_seconds"] <= budget - chosen["evidence"]["choosing_seconds"]
    assert "Chosen automatically" in (tmp_path / "run" / "report.html").read_text()


def test_rates_are_measured_once_then_read_from_the_cache():
    from headstart.modalities import modality_of
    from headstart.zoo import get_backbone

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
