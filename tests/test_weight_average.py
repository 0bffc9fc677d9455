"""The weight average auto's race reads its scratch arm by (train/weight_average.py): slow while
the rate is high, the raw weights once it has annealed, and what a loop with it evaluates and keeps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from headstart.records import Recorder
from headstart.train import loop
from headstart.train.batches import ArrayTokenDataset
from headstart.train.loop import TrainPlan, train_model
from headstart.train.weight_average import WeightAverage


def _set(model: nn.Linear, value: float) -> None:
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.fill_(value)


def test_the_average_damps_weights_that_bounce_at_a_high_rate_and_meets_them_once_it_anneals():
    model = nn.Linear(2, 1)
    average = WeightAverage(model)
    for step in range(300):  # at the peak rate the weights bounce between -1 and 1: the average stays near 0
        _set(model, 1.0 if step % 2 else -1.0)
        average.update(model, step, total_steps=1000, rate=1.0)
    assert abs(float(average.module.weight.mean())) < 0.1
    for step in range(300, 360):  # annealed (the rate at 1e-4 of its peak): the window narrows to the weights
        _set(model, 0.5)
        average.update(model, step, total_steps=1000, rate=1e-4)
    assert float(average.module.weight.mean()) == pytest.approx(0.5, abs=1e-3)


def test_a_warm_up_keeps_the_window_wide_and_integer_buffers_are_copied():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    average = WeightAverage(model)
    for step in range(200):  # a rising rate is the highest so far at every step: no narrowing
        with torch.no_grad():
            model[0].weight.fill_(1.0 if step % 2 else -1.0)
            model[1].num_batches_tracked.fill_(step)
        average.update(model, step, total_steps=1000, rate=0.01 * (step + 1))
    assert abs(float(average.module[0].weight.mean())) < 0.1
    assert int(average.module[1].num_batches_tracked) == 199


class _Val:
    def __init__(self, x, y):
        self.inputs, self.labels = x, y

    def __len__(self):
        return len(self.labels)


def _trained(weight_average: bool, monkeypatch) -> tuple[dict, list]:
    made = []

    class Recording(WeightAverage):
        def __init__(self, model):
            super().__init__(model)
            made.append(self)

    monkeypatch.setattr(loop, "WeightAverage", Recording)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    rng = np.random.default_rng(0)
    y = np.arange(48) % 3
    x = (rng.normal(size=(48, 4)) + y[:, None]).astype(np.float32)
    plan = TrainPlan(epochs=1, batch_size=4, patience=100, seed=0, schedule="constant",
                     weight_average=weight_average)
    train_model(model, [{"params": list(model.parameters()), "lr": 0.5}], ArrayTokenDataset(x, y), _Val(x, y),
                plan, Recorder(None, "t"))
    return {k: v.clone() for k, v in model.state_dict().items()}, made


def test_a_loop_with_the_average_evaluates_and_delivers_the_average_not_the_raw_weights(monkeypatch):
    raw, none_made = _trained(False, monkeypatch)
    averaged, made = _trained(True, monkeypatch)
    assert none_made == [] and len(made) == 1
    # one evaluation (the epoch's end), so what is kept is the average at that moment
    assert all(torch.equal(averaged[k], made[0].module.state_dict()[k]) for k in averaged)
    assert not all(torch.equal(averaged[k], raw[k]) for k in raw)  # the same run's raw weights differ
