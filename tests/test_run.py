"""Run: the one reader of a run directory. One refusal for "not a run", one for "not finished",
the kind of run without testing files, and a reload of the run's data that always carries the
labels it added (export's int8 calibration once calibrated without them)."""
from __future__ import annotations

import csv
import json

import pytest
import yaml

from headstart.errors import HeadstartError
from headstart.run import COMPARE, CONTINUED, FIT, PRETRAIN, PRUNED, STANDALONE, Run

from conftest import make_blobs, write_image_folder


def _write(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        name = name.replace("__", ".")
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


def test_what_is_not_a_run_is_refused_one_way(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.txt").write_text("not a run")
    for path, why in ((tmp_path / "nowhere", "no such folder"), (tmp_path / "photos", "none of config.yaml")):
        with pytest.raises(HeadstartError, match="is not a headstart run") as refused:
            Run.open(path)
        assert why in refused.value.message and "--out" in refused.value.hint


def test_an_interrupted_run_is_refused_as_unfinished_and_told_to_resume(tmp_path):
    run = Run.open(_write(tmp_path / "run", config__yaml="data: x\n", metrics__jsonl=""))
    assert not run.finished
    with pytest.raises(HeadstartError, match="unfinished run: it has no summary.json") as refused:
        run.require_finished()
    assert "--resume" in refused.value.hint
    compare = Run.open(_write(tmp_path / "cmp" / "arms" / "probe", config__yaml="data: x\n").parent.parent)
    with pytest.raises(HeadstartError, match="it has no comparison.json"):
        compare.require_finished()


@pytest.mark.parametrize("files, kind", [
    ({"config__yaml": "data: x\nstrategy: probe\n", "model__json": {"format": "headstart-image-classifier/1"}}, FIT),
    ({"config__yaml": "data: x\n", "model__json": {"format": "headstart-tfidf-logistic/2"}}, STANDALONE),
    ({"config__yaml": "data: x\nprune: {sparsity: 0.3}\n",
      "model__json": {"format": "headstart-image-classifier/1", "pruned": {"layers": {}}}}, PRUNED),
    ({"config__yaml": "data: x\nfrom_run: old\n", "continual__json": {"tasks": []}}, CONTINUED),
    ({"config__yaml": "data: x\ncommand: pretrain\n",
      "model__json": {"format": "headstart-pretrained-backbone/1"}}, PRETRAIN),
    ({"comparison__json": {"arms": []}}, COMPARE),
], ids=["fit", "standalone", "pruned", "continued", "pretrain", "compare"])
def test_the_kind_of_run_is_read_from_its_records(tmp_path, files, kind):
    assert Run.open(_write(tmp_path / "run", **files)).kind == kind


def test_records_are_parsed_once_into_their_types(tmp_path):
    folder = _write(tmp_path / "run", config__yaml=yaml.safe_dump({"data": "blobs", "seed": 3, "unknown_key": 1}),
                    splits__json={"seed": 3, "train": [0, 1], "val": [2], "test": [3]},
                    summary__json={"test_accuracy": 0.75, "tfidf_C": 2.0})
    (folder / "metrics.jsonl").write_text('{"split": "val", "accuracy": 0.5}\n{"split": "va')  # killed mid-write
    run = Run.open(folder).require_finished()
    assert run.config.data == "blobs" and run.config.seed == 3 and run.recorded_config["unknown_key"] == 1
    assert run.splits["train"] == [0, 1]
    assert run.summary.test_accuracy == 0.75 and run.summary.extras == {"tfidf_C": 2.0}
    assert run.metrics == [{"split": "val", "accuracy": 0.5}]  # the half-written row is skipped
    with pytest.raises(HeadstartError, match="not a headstart run"):
        Run(_write(tmp_path / "bad", summary__json="[1, 2]")).summary


def test_a_run_without_its_split_says_so_instead_of_failing_on_the_file(tmp_path):
    run = Run.open(_write(tmp_path / "run", config__yaml="data: x\n", summary__json={}))
    with pytest.raises(HeadstartError, match="has no splits.json"):
        run.splits


@pytest.fixture(scope="module")
def run_with_added_labels(tmp_path_factory):
    from headstart.config import FitConfig
    from headstart.pipeline import fit

    root = tmp_path_factory.mktemp("added")
    data = write_image_folder(root / "data", make_blobs(n_per_class=12))
    extra = write_image_folder(root / "new", make_blobs(n_per_class=2, seed=7))
    with (root / "labelled.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for image in sorted(extra.rglob("*.png")):
            writer.writerow([str(image), image.parent.name])
    config = FitConfig(data=str(data), strategy="probe", image_size=32, explain_examples=0,
                       add_labels=str(root / "labelled.csv"), out=str(root / "run"))
    fit(config)
    return root / "run"


def test_every_reload_of_a_run_carries_the_labels_it_added(run_with_added_labels):
    run = Run.open(run_with_added_labels).require_finished()
    reloaded = run.reload_data()
    assert reloaded.added_labels["added"] == 6
    assert len(reloaded.splits.train) == run.summary.sizes["train"] == len(run.splits["train"]) + 6
    assert len(reloaded.splits.test) == run.summary.sizes["test"]


def test_export_calibrates_int8_on_the_training_set_the_model_was_fitted_on(run_with_added_labels, monkeypatch):
    from headstart.deploy import onnx_export

    run = Run.open(run_with_added_labels)
    monkeypatch.setattr(onnx_export, "CALIBRATION_SIZE", 10_000)  # every training example
    train, test = onnx_export._run_parts(run, run.model(), calibrate=True)
    assert len(train) == run.summary.sizes["train"]  # the added labels included
    assert len(test) == run.summary.sizes["test"]


def test_reload_refuses_with_why_when_the_data_is_gone(run_with_added_labels, tmp_path):
    import shutil

    moved = shutil.copytree(run_with_added_labels, tmp_path / "moved")
    config = yaml.safe_load((moved / "config.yaml").read_text())
    (moved / "config.yaml").write_text(yaml.safe_dump({**config, "data": str(tmp_path / "gone")}))
    (moved / "manifest.json").unlink()  # edited on purpose: read unverified (an edited file is otherwise damage)
    with pytest.raises(HeadstartError, match="export checks the test split, and .*gone.* could not be loaded") as e:
        Run.open(moved).reload_data("export checks the test split")
    assert "where the run's data is" in e.value.hint
