"""Evaluation sized to --budget (eval_budget.py): a held-out part whose full pass would take more than
its share of the budget becomes a stratified sample of the size that fits, the run records and says
what it kept, and nothing is cut without a budget or when the passes fit."""
import time

import numpy as np
import pytest

from headstart import eval_budget, pipeline
from headstart.config import FitConfig
from headstart.data.dataset import TextData
from headstart.eval_budget import EVAL_SHARE, MIN_PER_CLASS, items_that_fit, size_to_budget

from conftest import make_blobs


class SlowModel:
    """A stand-in classifier whose inference takes `per_item` seconds an item."""

    def __init__(self, per_item: float):
        self.per_item, self.timed = per_item, 0

    def warm_up(self, data) -> None:
        pass

    def logits(self, data, **_):
        self.timed += len(data)
        time.sleep(self.per_item * len(data))
        return np.zeros((len(data), 2))


def _texts(n: int, shares=(0.6, 0.3, 0.1)) -> TextData:
    labels = np.concatenate([np.full(int(n * s), k) for k, s in enumerate(shares)])
    return TextData(texts=[f"t{i}" for i in range(len(labels))], labels=labels, classes=["a", "b", "c"], name="t")


def test_a_part_too_slow_for_its_share_becomes_a_stratified_sample_of_the_size_that_fits():
    train, val, test = _texts(100), _texts(200), _texts(400)
    parts, sizing = size_to_budget(SlowModel(0.005), (train, val, test), budget_seconds=2.0, seed=0)
    most = items_that_fit(2.0, sizing.seconds_per_item, 3)
    assert sizing.seconds_per_item == pytest.approx(0.005, rel=0.5)
    assert 20 <= most < 200  # 0.25 x 2 s at ~5 ms an item: ~100 items
    assert parts[0] is train  # training is never cut
    for name, part, whole in (("val", parts[1], val), ("test", parts[2], test)):
        assert len(part) == most and sizing.kept[name] == (most, len(whole))
        # every class in its proportion (within one item), items taken from the part itself
        for k, share in enumerate((0.6, 0.3, 0.1)):
            assert abs(np.sum(part.labels == k) - share * most) <= 1.5
        assert set(part.texts) <= set(whole.texts) and len(set(part.texts)) == most
    figures = sizing.figures()["evaluation_sized"]
    assert figures["val"] == {"kept": most, "of": 200} and figures["share"] == EVAL_SHARE
    assert f"test on {most} of 400" in sizing.sentence() and "--budget" in sizing.sentence()


def test_nothing_is_cut_without_a_budget_or_when_the_passes_fit():
    parts = (_texts(10), _texts(30), _texts(30))
    model = SlowModel(0.001)
    assert size_to_budget(model, parts, None, seed=0) == (parts, None)
    assert model.timed == 0  # no budget: not even timed
    kept, sizing = size_to_budget(model, parts, budget_seconds=60.0, seed=0)
    assert kept == parts and sizing.kept == {} and sizing.figures() == {} and sizing.sentence() is None


def test_the_floor_keeps_a_few_items_of_every_class_however_slow():
    parts = (_texts(10), _texts(200), _texts(200))
    kept, sizing = size_to_budget(SlowModel(0.05), parts, budget_seconds=0.5, seed=0)
    assert len(kept[1]) == len(kept[2]) == MIN_PER_CLASS * 3
    assert set(np.unique(kept[2].labels)) == {0, 1, 2}


def test_only_the_parts_named_are_cut_and_the_seed_decides_which_items(monkeypatch):
    monkeypatch.setattr(eval_budget, "seconds_per_item", lambda model, part: 0.005)
    parts = (_texts(10), _texts(200), _texts(400))
    kept, sizing = size_to_budget(None, parts, budget_seconds=2.0, seed=3, names=("test",))
    assert kept[1] is parts[1] and set(sizing.kept) == {"test"}
    assert size_to_budget(None, parts, budget_seconds=2.0, seed=3, names=("test",))[0][2].texts == kept[2].texts
    assert size_to_budget(None, parts, budget_seconds=2.0, seed=4, names=("test",))[0][2].texts != kept[2].texts


def test_a_budgeted_fit_records_and_says_the_evaluation_it_kept(monkeypatch, tmp_path):
    """A fit whose backbone is measured slow (faked) tests on a stratified sample, writes what it kept
    in its summary and its sizes, and says so; splits.json keeps the whole split."""
    monkeypatch.setattr(eval_budget, "seconds_per_item", lambda model, part: 1.0)
    said = []
    monkeypatch.setattr(eval_budget, "say", said.append)  # what it says, whatever the logging state
    config = FitConfig(data="blobs", strategy="probe", image_size=32, budget_seconds=30.0, explain_examples=0,
                       out=str(tmp_path / "run"))
    summary = pipeline.fit(config, data=make_blobs(n_per_class=40)).summary
    most = items_that_fit(30.0, 1.0, 3)
    sized = summary["evaluation_sized"]
    assert sized["test"]["kept"] == most < sized["test"]["of"]
    assert summary["sizes"]["test"] == most and summary["sizes"]["val"] <= most
    assert sum(summary["per_class"][c]["support"] for c in summary["classes"]) == most  # scored on the sample
    from headstart.records import read_json
    assert len(read_json(tmp_path / "run" / "splits.json")["test"]) == sized["test"]["of"]
    assert any(f"test on {most} of {sized['test']['of']}" in line for line in said), said


@pytest.mark.report
def test_the_report_and_the_printed_summary_say_what_was_sampled(monkeypatch, tmp_path, capsys):
    from headstart.cli_print import print_fit_summary

    monkeypatch.setattr(eval_budget, "seconds_per_item", lambda model, part: 1.0)
    result = pipeline.fit(FitConfig(data="blobs", strategy="probe", image_size=32, budget_seconds=30.0,
                                    explain_examples=0, out=str(tmp_path / "run")), data=make_blobs(n_per_class=40))
    sized = result.summary["evaluation_sized"]["test"]
    print_fit_summary(result)
    assert f"evaluated: " in capsys.readouterr().out
    page = (tmp_path / "run" / "report.html").read_text()
    assert f"(test: a stratified {sized['kept']} of {sized['of']}, to keep --budget)" in page


def test_the_share_is_of_the_commands_budget_not_of_what_a_choice_before_training_left(monkeypatch, tmp_path):
    """auto hands complete_fit a config whose budget is what its race left (a few seconds): the test
    pass is still sized to a quarter of the command's --budget (the race reserved its time)."""
    from dataclasses import replace

    monkeypatch.setattr(eval_budget, "seconds_per_item", lambda model, part: 0.2)
    config = FitConfig(data="blobs", strategy="probe", image_size=32, budget_seconds=30.0, explain_examples=0,
                       out=str(tmp_path / "run"))
    start = pipeline.begin_fit(config, data=make_blobs(n_per_class=100))
    summary = pipeline.complete_fit(start, replace(config, budget_seconds=2.0)).summary
    assert summary["evaluation_sized"]["test"]["kept"] == items_that_fit(30.0, 0.2, 3) > items_that_fit(2.0, 0.2, 3)
