"""compare's verdict reads its figures within their own noise (issue 23.4): hand-made arm
records and curves, no training."""
import pytest

from headstart.compare import summarise, time_to_target
from headstart.config import CompareConfig
from headstart.verdict import judge, validation_band

N_VAL, N_TEST = 64, 75  # the held-out digits folder of 500 images: 15 % test, 15 % of the rest val


def _seed(run_dir, arm, strategy, best_val, test, curve, stop="completed"):
    """One arm's seed as run_compare records it: folder, summary and metric rows."""
    rows = [{"split": "train", "accuracy": 1.0, "loss": 0.0, "train_seconds": 0.1}]  # never counts
    rows += [{"split": "val", "accuracy": acc, "loss": 1 - acc, "train_seconds": t} for t, acc in curve]
    summary = {"best_val_accuracy": best_val, "test_accuracy": test, "train_seconds": curve[-1][0],
               "strategy": strategy, "backbone": "resnet9" if strategy == "scratch" else "tf_efficientnet_lite0",
               "weights": "random" if strategy == "scratch" else "packaged", "input_size": 32,
               "words": {"input_unit": "px"}, "stop_reason": stop,
               "sizes": {"train": 361, "val": N_VAL, "test": N_TEST}}
    return [{"dir": run_dir / "arms" / arm, "summary": summary, "rows": rows}]


def _issue_case(tmp_path):
    """The issue's folder: scratch's smoothed plateau 58/64 = 0.906 at 150 s, the transfer arms'
    best 57/64 = 0.891 (the probe at 1.7 s), test 68/75 = 0.907 for the probe vs 66/75 = 0.880."""
    v = lambda k: k / N_VAL  # noqa: E731  k of 64 validation images
    scratch = [(10.0 * i, v(20 + 3 * i)) for i in range(1, 12)]             # rising to 53/64 at 110 s
    scratch += [(120.0, v(54)), (130.0, v(55)), (140.0, v(58)), (150.0, v(58)),   # 55/64 < the band
                (160.0, v(57)), (170.0, v(58)), (180.0, v(57)), (190.0, v(59)), (200.0, v(57))]
    return {
        "probe": _seed(tmp_path, "probe", "probe", v(57), 68 / N_TEST, [(0.9, v(54)), (1.7, v(57)), (2.5, v(57))]),
        "lp-ft": _seed(tmp_path, "lp-ft", "lp-ft", v(57), 67 / N_TEST, [(20.0, v(56)), (40.0, v(57))]),
        "scratch": _seed(tmp_path, "scratch", "scratch", v(59), 66 / N_TEST, scratch, stop="plateau"),
    }


def test_the_issue_case_is_as_accurate_and_sooner_not_negative_transfer(tmp_path):
    runs = _issue_case(tmp_path)
    out = summarise(CompareConfig(data="digits", budget_seconds=60), runs, tmp_path)
    assert out["target_source"] == "baseline-plateau"
    assert out["target_accuracy"] == pytest.approx(58 / 64)
    assert out["baseline_plateau"]["seconds"] == 150.0               # the smoothed curve got there at 150 s
    assert out["noise"] == pytest.approx(0.0375, abs=1e-4)           # the noise the issue quotes (test)
    band = validation_band(58 / 64, N_VAL)
    assert out["val_noise"] == pytest.approx(band, abs=1e-4) and band == pytest.approx(0.0364, abs=1e-4)
    assert out["target_reached_at"] == pytest.approx(58 / 64 - band)
    arms = {a["name"]: a for a in out["arms"]}
    # one image below the plateau is inside its noise: the probe reached it at 1.7 s ...
    assert arms["probe"]["time_to_target_seconds"] == 1.7 and arms["lp-ft"]["time_to_target_seconds"] == 20.0
    # ... and scratch is read the same way, raw evaluations against the same band: its first
    # evaluation within the noise of its own plateau (140 s), not its smoothed 150 s
    scratch_rows = runs["scratch"][0]["rows"]
    assert arms["scratch"]["time_to_target_seconds"] == time_to_target(scratch_rows, out["target_reached_at"]) == 140.0
    assert out["verdict"] == "transfer helps" and out["best_arm"] == "probe"
    assert out["speedup"] == pytest.approx(round(140 / 1.7, 2))
    sentence = out["verdict_sentence"]
    assert sentence.startswith("As accurate, 82x sooner: probe came within the noise of scratch's 0.906 "
                               "validation accuracy (0.891, ±0.036 on 64 validation images)")
    assert "scratch took 140.0 s to come as close (82.3x faster" in sentence
    # the test figures are said as what they show: level within the test split's noise
    assert "on test 0.907 for probe vs 0.880 for scratch, within the noise (±3.8 points)" in sentence
    assert "Negative transfer" not in sentence and "plateaued at 0.906" in sentence
    # the records alone give the same verdict again
    again = judge(out["arms"], out["target_accuracy"], n_test=N_TEST)
    assert (again["verdict"], again["verdict_sentence"]) == (out["verdict"], sentence)


def test_a_users_target_is_read_exactly_and_a_miss_inside_the_noise_is_inconclusive(tmp_path):
    out = summarise(CompareConfig(data="digits", target=58 / 64), _issue_case(tmp_path), tmp_path)
    assert out["target_source"] == "user" and out["target_reached_at"] == pytest.approx(58 / 64)
    arms = {a["name"]: a for a in out["arms"]}
    assert arms["probe"]["time_to_target_seconds"] is None and arms["scratch"]["time_to_target_seconds"] == 140.0
    # no transfer arm got to 0.906, but 0.891 is one image short, inside the band: no negative transfer
    assert out["verdict"] == "inconclusive"
    assert out["verdict_sentence"].startswith(
        "Inconclusive: no transfer arm reached 0.906 validation accuracy, but probe ended within the noise of it "
        "(0.891, ±0.036 on 64 validation images); on test 0.907 for probe vs 0.880 for scratch, within the noise")


def arm(name, strategy, test, ttt, best_val=None, spread=0.0, val_size=None):
    return {"name": name, "strategy": strategy, "backbone": "b", "test_accuracy": test, "best_val_accuracy": best_val,
            "time_to_target_seconds": ttt, "test_accuracy_spread": spread, "baseline": strategy == "scratch",
            "val_size": val_size}


def test_a_clear_win_is_sooner_and_more_accurate():
    out = judge([arm("probe", "probe", 0.95, 4.0, 0.96, val_size=400),
                 arm("scratch", "scratch", 0.85, 120.0, 0.86, val_size=400)], 0.86, n_test=400)
    assert out["verdict"] == "transfer helps" and out["speedup"] == pytest.approx(30.0)
    assert out["verdict_sentence"].startswith("Transfer helps, 30x sooner: probe reached 0.860 validation accuracy "
                                              "in 4.0 s of training vs 120.0 s for scratch (30.0x faster, 97% less time)")
    assert "probe ends 10.0 points more accurate on test" in out["verdict_sentence"]


def test_reaching_the_target_itself_sooner_at_level_test_accuracy_is_a_plain_speed_up():
    out = judge([arm("probe", "probe", 0.86, 10.0, 0.87, val_size=200),
                 arm("scratch", "scratch", 0.87, 50.0, 0.87, val_size=200)], 0.87, n_test=200)
    assert out["verdict"] == "transfer helps"
    assert out["verdict_sentence"].startswith("Transfer helps, 5.0x sooner: probe reached 0.870")
    assert "within the noise (±2.4 points)" in out["verdict_sentence"]


def test_negative_transfer_only_beyond_the_noise():
    # scratch 6 points ahead on test with a noise of 1.5: negative transfer, said with its noise
    out = judge([arm("probe", "probe", 0.88, 2.0, 0.89, val_size=500),
                 arm("scratch", "scratch", 0.94, 90.0, 0.94, val_size=500)], 0.94, n_test=250)
    assert out["verdict"] == "negative transfer"
    assert "scratch (b) ends 6.0 points more accurate on test" in out["verdict_sentence"]
    assert "beyond the noise (±1.5 points)" in out["verdict_sentence"]
    # no transfer arm within the validation noise of the target, test level: negative transfer, and it says the band
    out = judge([arm("probe", "probe", 0.93, None, 0.85, val_size=500),
                 arm("scratch", "scratch", 0.94, 90.0, 0.94, val_size=500)], 0.94, n_test=250)
    assert out["verdict"] == "negative transfer"
    assert "no transfer arm came within the noise of it (±0.011 on 500 validation images)" in out["verdict_sentence"]
    # the same shortfall where transfer ends clearly ahead on test: the splits disagree, no verdict
    out = judge([arm("probe", "probe", 0.99, None, 0.85, val_size=500),
                 arm("scratch", "scratch", 0.94, 90.0, 0.94, val_size=500)], 0.94, n_test=250)
    assert out["verdict"] == "inconclusive" and "validation and test disagree" in out["verdict_sentence"]


def test_level_in_time_and_accuracy_is_inconclusive_and_says_the_noise():
    out = judge([arm("probe", "probe", 0.85, 10.0, 0.86, spread=0.03, val_size=300),
                 arm("scratch", "scratch", 0.86, 11.0, 0.86, spread=0.01, val_size=300)], 0.86, n_test=1000)
    assert out["verdict"] == "inconclusive" and out["noise"] == pytest.approx(0.03)
    assert out["verdict_sentence"].startswith("Inconclusive: transfer and scratch are within the noise of each other")
    assert "within the noise, ±3.0 points" in out["verdict_sentence"]


def test_the_validation_band_is_one_binomial_standard_error_and_none_without_a_size():
    assert validation_band(0.9, 100) == pytest.approx(0.03)
    assert validation_band(0.9, None) == 0.0 and validation_band(0.9, 0) == 0.0
    assert validation_band(1.0, 100) == pytest.approx(0.00316, abs=1e-5)  # clamped: a perfect target keeps a band
