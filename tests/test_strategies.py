"""One common test over every registered strategy, plus the training-loop promises:
budget, NaN stop, feature cache, early stopping records."""
from dataclasses import replace

import numpy as np
import pytest

from headstart.config import FitConfig
from headstart.errors import HeadstartError
from headstart.pipeline import fit
from headstart.records import read_json, read_metrics
from headstart.strategies import STRATEGIES

from conftest import make_blobs

RUN_FILES = ("config.yaml", "metrics.jsonl", "model.safetensors", "model.json", "summary.json", "splits.json")


def small_config(tmp_path, strategy, **overrides):
    settings = dict(data="blobs", backbone="tf_efficientnet_lite0", strategy=strategy, image_size=32,
                    epochs=3, batch_size=16, scratch_model="resnet9", out=str(tmp_path / strategy))
    settings.update(overrides)
    return FitConfig(**settings)


# every strategy that trains on images with a CNN (LoRA needs attention layers: see test_text)
@pytest.mark.parametrize("strategy", sorted(s for s, st in STRATEGIES.items()
                                            if st.architecture is None and not st.requires_attention))
def test_every_strategy_learns_and_writes_a_complete_run(tmp_path, strategy):
    data = make_blobs(n_per_class=30)
    result = fit(small_config(tmp_path, strategy, epochs=6 if strategy == "scratch" else 2), data=data)
    run = result.run_dir
    for name in RUN_FILES:
        assert (run / name).exists(), name
    summary = read_json(run / "summary.json")
    for key in ("test_accuracy", "macro_f1", "train_seconds", "wall_seconds", "peak_rss_mb"):
        assert key in summary
    assert summary["test_accuracy"] >= 0.6, summary["test_accuracy"]  # chance is 1/3
    assert summary["strategy"] == strategy
    assert 0 < summary["train_seconds"] <= summary["wall_seconds"]
    rows = read_metrics(run)
    val = [r for r in rows if r["split"] == "val"]
    assert val, "no validation evaluations recorded"
    times = [r["train_seconds"] for r in rows]
    assert times == sorted(times), "the training clock must never run backwards"
    assert rows[-1]["split"] == "test"
    weights = read_json(run / "model.json")["backbone"]["weights"]
    assert weights == "random" if strategy == "scratch" else weights.startswith("packaged:")


def test_probe_reuses_cached_features_on_refit(tmp_path):
    data = make_blobs()
    first = fit(small_config(tmp_path / "a", "probe"), data=data).summary
    second = fit(small_config(tmp_path / "b", "probe"), data=data).summary
    assert first["features_cached"] is False and second["features_cached"] is True
    assert second["test_accuracy"] == pytest.approx(first["test_accuracy"])


def test_budget_stops_the_run_inside_it(tmp_path):
    config = small_config(tmp_path, "scratch", epochs=500, patience=500, budget_seconds=5.0, evals_per_epoch=2)
    summary = fit(config, data=make_blobs()).summary
    assert summary["stop_reason"] == "budget"
    assert summary["wall_seconds"] - summary["decode_seconds"] < 5.0 + 3.0  # + model build, test pass
    assert summary["train_seconds"] < 5.0
    assert summary["epochs_run"] < 500


def test_the_schedule_is_shortened_to_the_steps_that_fit_the_budget():
    from types import SimpleNamespace

    import torch

    from headstart.train.loop import TrainPlan, _fit_schedule_to_budget
    from headstart.train.optim import build_optimizer, build_schedule

    w = torch.nn.Parameter(torch.ones(1))
    scheduler = build_schedule("onecycle", build_optimizer("adamw", [{"params": [w], "lr": 1.0}], 0.0), 1000)
    for _ in range(10):
        scheduler.step()
    plan = TrainPlan(epochs=100, budget_seconds=30.0, evals_per_epoch=1)
    clock = SimpleNamespace(wall_seconds=10.0)  # 20 s left
    # 10 steps an epoch at 0.1 s a step + one 1 s evaluation = 2 s an epoch -> 10 epochs = 100 steps
    _fit_schedule_to_budget(scheduler, plan, clock, [0.1] * 10, 1.0, steps_per_epoch=10)
    assert scheduler.horizon.total == 10 + 100
    _fit_schedule_to_budget(scheduler, plan, clock, [0.01] * 10, 0.1, steps_per_epoch=10)
    assert scheduler.horizon.total == 110, "a faster pace never lengthens the plan"
    factors = [scheduler.lr_lambdas[0](s) for s in range(110)]
    assert max(factors) > 0.9 and factors[-1] < 0.01, "the rate still peaks and anneals within the budget"


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    import types

    import torch
    import torch.nn.functional as F

    import headstart.train.objective as objective  # the loss a batch gives

    calls = []

    def poisoned(logits, y, **kw):  # a loss that goes NaN in the second epoch
        calls.append(1)
        loss = F.cross_entropy(logits, y, **kw)
        return loss * float("nan") if len(calls) > steps_per_epoch else loss

    data = make_blobs()
    steps_per_epoch = 3
    monkeypatch.setattr(objective, "F", types.SimpleNamespace(cross_entropy=poisoned))
    config = small_config(tmp_path, "scratch", epochs=5, batch_size=16, train_size=48)
    with pytest.raises(HeadstartError, match="loss became nan at epoch 2") as err:
        fit(config, data=data)
    assert "--lr" in str(err.value) and "checkpoint" in str(err.value)
    kept = tmp_path / "scratch" / "checkpoint" / "scratch.pt"
    assert kept.exists(), "the last good checkpoint (after epoch 1) must survive the NaN"
    assert torch.load(kept, weights_only=True)["epoch"] == 1


def test_rerunning_into_a_finished_run_dir_is_refused(tmp_path):
    fit(small_config(tmp_path, "probe"), data=make_blobs())
    with pytest.raises(HeadstartError, match="already holds a run"):
        fit(small_config(tmp_path, "probe"), data=make_blobs())


def test_single_class_data_is_a_clear_error(tmp_path):
    data = make_blobs(classes=("only",))
    with pytest.raises(HeadstartError, match="two classes"):
        fit(small_config(tmp_path, "probe"), data=data)


def test_probe_under_a_tight_budget_fits_on_the_features_it_had_time_for(tmp_path, monkeypatch):
    import headstart.strategies.linear as linear

    monkeypatch.setattr(linear, "CHUNK", 8)
    monkeypatch.setattr(linear, "ANYTIME_FIT_RESERVE", 0.0)
    real = linear.compute_features

    def slow(classifier, images, description=None, batch_size=None, engine=None):  # ~0.05 s per image
        import time
        time.sleep(0.05 * len(images))
        return real(classifier, images, description, batch_size, engine)

    monkeypatch.setattr(linear, "compute_features", slow)
    data = make_blobs(n_per_class=60)
    summary = fit(small_config(tmp_path, "probe", budget_seconds=3.0), data=data, use_feature_cache=False).summary
    assert summary["stop_reason"] == "budget"
    assert 2 * 3 <= summary["probe_train_used"] < summary["sizes"]["train"]
    assert summary["train_seconds"] < 3.0
    assert summary["test_accuracy"] > 0.6


def test_anytime_probe_logs_provisional_heads_when_a_curve_is_asked_for(tmp_path):
    data = make_blobs(n_per_class=60)
    run = fit(replace(small_config(tmp_path, "probe"), evals_per_epoch=4), data=data,
              use_feature_cache=False).run_dir
    rows = [r for r in read_metrics(run) if r["split"] == "val"]
    anytime = [r for r in rows if r["phase"] == "probe-anytime"]
    assert [r["n_train"] for r in anytime] == sorted(r["n_train"] for r in anytime)
    assert len(anytime) >= 2 and anytime[0]["n_train"] < rows[-1]["n_train"]
    assert anytime[0]["train_seconds"] < rows[-1]["train_seconds"]
    # a plain fit (one evaluation per epoch) keeps only the final head: no provisional fits to pay for
    plain = fit(replace(small_config(tmp_path, "probe"), out=str(tmp_path / "plain")), data=data,
                use_feature_cache=False).run_dir
    assert not [r for r in read_metrics(plain) if r.get("phase") == "probe-anytime"]
