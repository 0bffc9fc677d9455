import pytest
import torch
from torch import nn

from headstart.errors import HeadstartError
from headstart.train.optim import OPTIMIZERS, build_optimizer, build_schedule, layerwise_groups


def _groups():
    return [[nn.Parameter(torch.zeros(2))] for _ in range(5)]


def test_layerwise_rates_rise_from_stem_to_head():
    head = nn.Linear(2, 2)
    groups = layerwise_groups(_groups(), head, lr=1e-3, spread=100.0)
    lrs = [g["lr"] for g in groups]
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[-2] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:-2], lrs[1:-1]))


def test_frozen_parameters_are_left_out_of_groups():
    params = _groups()
    params[0][0].requires_grad_(False)
    groups = layerwise_groups(params, nn.Linear(2, 2), lr=1e-3, spread=10.0)
    assert groups[0]["params"] == []


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_steps(name):
    w = nn.Parameter(torch.ones(3))
    opt = build_optimizer(name, [{"params": [w], "lr": 0.1}], weight_decay=0.0)
    (w ** 2).sum().backward()
    opt.step()
    assert (w < 1).all()


def test_onecycle_warms_up_then_anneals():
    w = nn.Parameter(torch.ones(1))
    opt = build_optimizer("adamw", [{"params": [w], "lr": 1.0}], 0.0)
    sched = build_schedule("onecycle", opt, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = lrs.index(max(lrs))
    assert 15 <= peak <= 30 and lrs[0] < 0.1 and lrs[-1] < 0.01


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(HeadstartError, match="unknown optimizer"):
        build_optimizer("adamax", [{"params": [nn.Parameter(torch.ones(1))], "lr": 1.0}], 0.0)
