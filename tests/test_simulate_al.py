"""simulate-al: the loop on hidden labels, judged against random."""
from __future__ import annotations

from html import unescape

import numpy as np
import pytest

from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.label.simulate import judge_against_random, labels_to_reach, simulate, start_set
from headstart.records import read_json

from conftest import make_blobs, write_image_folder


def overlapping(n=300, seed=0):
    """Three Gaussian classes in 5-d, close enough that the head keeps learning for a while."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 5)) + np.eye(5)[y] * 1.5
    return x, y


def test_every_method_starts_from_the_same_labels_and_curves_have_one_point_per_round():
    x, y = overlapping()
    result = simulate(x[:240], y[:240], x[240:], y[240:], 3, methods=["margin", "coreset", "random"], start=6, k=5,
                      rounds=3, seeds=2)
    assert result["labels"] == [6, 11, 16, 21]
    starts = {name: [seed[0] for seed in m["per_seed"]] for name, m in result["methods"].items()}
    assert starts["margin"] == starts["coreset"] == starts["random"]  # round 0: the same start set per seed
    for m in result["methods"].values():
        assert len(m["median"]) == 4 and all(lo <= med <= hi for lo, med, hi in zip(m["low"], m["median"], m["high"]))
    assert set(result["verdicts"]) == {"margin", "coreset"}
    assert "random" in result["sentence"]


def test_start_set_holds_every_class_once_at_least():
    y = np.array([0] * 50 + [1] * 3 + [2] * 47)
    chosen = start_set(y, 5, 3, seed=0)
    assert len(set(chosen.tolist())) == 5 and set(y[chosen]) == {0, 1, 2}


def test_the_verdict_names_a_method_that_beats_random_and_says_when_none_does():
    base = {"labels": [10, 20, 30, 40], "methods": {
        "random": {"median": [0.5, 0.6, 0.65, 0.7]},
        "good": {"median": [0.5, 0.7, 0.72, 0.75]},   # reaches 0.70 at 20 labels: 50% of random's
        "flat": {"median": [0.5, 0.58, 0.64, 0.69]}}}
    verdicts = judge_against_random(base)
    assert verdicts["good"]["beats_random"] and verdicts["good"]["labels_to_random_final"] == 20
    assert verdicts["good"]["share_of_random_labels"] == 0.5
    assert not verdicts["flat"]["beats_random"] and verdicts["flat"]["labels_to_random_final"] is None
    assert labels_to_reach([10, 20], [0.4, 0.5], 0.6) is None


def test_a_plan_bigger_than_the_pool_is_refused_before_any_work():
    x, y = overlapping(60)
    with pytest.raises(HeadstartError, match="need 70 items"):
        simulate(x[:50], y[:50], x[50:], y[50:], 3, methods=["random"], start=10, k=20, rounds=3, seeds=1)


def test_simulate_al_end_to_end_writes_curves_and_report(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data", make_blobs(n_per_class=20))
    out = tmp_path / "study"
    assert main(["simulate-al", str(data), "--start", "6", "--k", "4", "--rounds", "2", "--seeds", "2",
                 "--methods", "margin", "--image-size", "32", "--out", str(out)]) == 0
    study = read_json(out / "simulate_al.json")
    assert set(study["methods"]) == {"margin", "random"}  # random always runs, as the baseline
    assert study["labels"] == [6, 10, 14] and study["pool_size"] + study["test_size"] < 60
    html = unescape((out / "report.html").read_text())
    assert "al_curves.png" in html and (out / "al_curves.png").stat().st_size > 1000
    assert study["sentence"] in html
    assert "test accuracy by labels used" in capsys.readouterr().out
