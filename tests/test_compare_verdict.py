"""The verdict and time-to-target logic, on hand-made arm figures (no training)."""
import pytest

from headstart.compare import CompareConfig, judge, time_to_target, validate
from headstart.errors import HeadstartError


def arm(name, strategy, test, ttt, spread=0.0):
    return {"name": name, "strategy": strategy, "backbone": "b", "test_accuracy": test,
            "time_to_target_seconds": ttt, "test_accuracy_spread": spread}


def test_time_to_target_is_the_first_val_row_reaching_it():
    rows = [{"split": "val", "accuracy": 0.5, "train_seconds": 1.0},
            {"split": "val", "accuracy": 0.82, "train_seconds": 2.5},
            {"split": "test", "accuracy": 0.99, "train_seconds": 3.0},
            {"split": "val", "accuracy": 0.9, "train_seconds": 4.0}]
    assert time_to_target(rows, 0.8) == 2.5
    assert time_to_target(rows, 0.95) is None  # test rows never count


def test_transfer_helps_when_faster_and_as_accurate():
    out = judge([arm("probe", "probe", 0.86, 9.0), arm("scratch", "scratch", 0.84, 126.0)], 0.84, n_test=400)
    assert out["verdict"] == "transfer helps"
    assert out["speedup"] == pytest.approx(14.0)
    assert out["time_saved_pct"] == pytest.approx(92.9, abs=0.1)
    assert "14.0x faster" in out["verdict_sentence"]


def test_transfer_that_is_about_as_fast_but_clearly_more_accurate_is_not_called_faster():
    out = judge([arm("probe", "probe", 0.876, 9.0), arm("scratch", "scratch", 0.782, 7.9)], 0.769, n_test=394)
    assert out["verdict"] == "transfer helps" and out["speedup"] == pytest.approx(0.88)
    assert "9.4 points more accurate" in out["verdict_sentence"] and "about as fast" in out["verdict_sentence"]
    assert "faster" not in out["verdict_sentence"]


def test_negative_transfer_when_scratch_ends_clearly_more_accurate():
    out = judge([arm("probe", "probe", 0.80, 5.0), arm("scratch", "scratch", 0.88, 20.0)], 0.87, n_test=1000)
    assert out["verdict"] == "negative transfer"
    assert "8.0 points" in out["verdict_sentence"]


def test_negative_transfer_when_scratch_gets_there_sooner_at_equal_accuracy():
    out = judge([arm("finetune", "finetune", 0.851, 40.0), arm("scratch", "scratch", 0.856, 18.0)], 0.85,
                n_test=1000)
    assert out["verdict"] == "negative transfer"
    assert "sooner" in out["verdict_sentence"]


def test_inconclusive_within_seed_spread_and_similar_time():
    out = judge([arm("probe", "probe", 0.85, 10.0, spread=0.03), arm("scratch", "scratch", 0.86, 11.0, spread=0.03)],
                0.85, n_test=1000)
    assert out["verdict"] == "inconclusive"


@pytest.mark.parametrize("kwargs,match", [
    ({"arms": ("probe", "magic")}, "unknown arm"),
    ({"target": 1.5}, "target"),
    ({"budget_seconds": 1.0}, "budget"),
    ({"arms": ("probe",)}, "no default target"),
])
def test_bad_compare_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(HeadstartError, match=match):
        validate(CompareConfig(data="digits", **kwargs))


def test_a_speed_for_accuracy_trade_off_is_named_as_one():
    out = judge([arm("probe", "probe", 0.878, 38.9), arm("scratch", "scratch", 0.799, 16.4)], 0.772, n_test=394)
    assert out["verdict"] == "inconclusive"
    assert "trade-off" in out["verdict_sentence"] and "7.9 points more accurate" in out["verdict_sentence"]


def test_scratch_arms_may_name_their_architecture():
    from headstart.compare import parse_arm
    assert parse_arm("scratch", "resnet9") == ("scratch", "resnet9")
    assert parse_arm("scratch:same", "resnet9") == ("scratch", "same")
    assert parse_arm("lp-ft", "resnet9") == ("lp-ft", None)
    validate(CompareConfig(data="digits", arms=("probe", "scratch", "scratch:same")))
    with pytest.raises(HeadstartError, match="unknown arm"):
        validate(CompareConfig(data="digits", arms=("probe:same", "scratch")))


def test_the_most_accurate_scratch_arm_is_the_one_compared_against():
    out = judge([arm("probe", "probe", 0.86, 5.0), arm("scratch", "scratch", 0.80, 10.0),
                 arm("scratch:same", "scratch", 0.70, None)], 0.80, n_test=1000)
    assert out["verdict"] == "transfer helps" and out["speedup"] == pytest.approx(2.0)
