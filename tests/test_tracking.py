"""Experiment tracking: `--track` on fit and compare, and `headstart track`, read back with
MLflow's and TensorBoard's own readers. One MLflow store serves the module (creating one costs
seconds)."""
import os
import shutil
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from headstart.cli import main
from headstart.config import FitConfig
from headstart.errors import HeadstartError
from headstart.records import read_json, read_metrics
from headstart.tracking import MLflowTracker, track_run

from conftest import make_blobs, write_image_folder

pytest.importorskip("mlflow", reason="the track extra is not installed (pip install 'headstart[track]')")
pytest.importorskip("tensorboard", reason="the track extra is not installed (pip install 'headstart[track]')")

# the report travels with every tracked run
pytestmark = pytest.mark.report

# report explanations cost seconds that tracking does not need
QUIET_REPORT = ["--explain-examples", "0"] if "explain_examples" in {f.name for f in fields(FitConfig)} else []
FAST = ["--image-size", "32", "--batch-size", "16", *QUIET_REPORT]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "data", make_blobs(n_per_class=14))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """In memory where the machine has /dev/shm: creating MLflow's SQLite tables on disk costs
    seconds of fsync (about 8 s here, 2 s in memory)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp("tracking") / "mlruns"
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="headstart-test-mlruns-"))
    yield folder / "mlruns"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def mlflow_reads(store, monkeypatch):
    """mlflow's own reading functions, pointed at the module's store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    import mlflow
    from mlflow.tracking import MlflowClient
    return mlflow, MlflowClient()


@pytest.fixture(scope="module")
def mlflow_run(folder, store, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "probe-run"
    argv = ["fit", str(folder), "--strategy", "probe", "--out", str(out), "--track", "mlflow", "--track-uri", str(store)]
    assert main([*argv, *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def comparison(folder, store, tmp_path_factory):
    out = tmp_path_factory.mktemp("compares") / "cmp"
    argv = ["compare", str(folder), "--arms", "probe,scratch", "--epochs", "1", "--out", str(out),
            "--track", "mlflow", "--track-uri", str(store)]
    assert main([*argv, *FAST]) == 0
    return out


def _artifacts(client, run_id, path=None) -> set[str]:
    found = set()
    for f in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, f.path) if f.is_dir else {f.path}
    return found


def test_fit_logs_params_curve_metrics_report_and_model_to_mlflow(mlflow_run, mlflow_reads):
    mlflow, client = mlflow_reads
    runs = mlflow.search_runs(experiment_names=["headstart"], filter_string="tags.mlflow.runName = 'probe-run'")
    assert len(runs) == 1
    run = runs.iloc[0]
    summary = read_json(mlflow_run / "summary.json")
    assert run["status"] == "FINISHED"
    assert run["params.strategy"] == "probe" and run["params.image_size"] == "32"
    assert run["tags.strategy"] == "probe" and run["tags.backbone"] == summary["backbone"]
    for name in ("test_accuracy", "macro_f1", "balanced_accuracy", "best_val_accuracy", "wall_seconds"):
        assert run[f"metrics.{name}"] == pytest.approx(summary[name])
    assert read_json(mlflow_run / "tracking.json")["mlflow"]["run_id"] == run["run_id"]

    val = [r for r in read_metrics(mlflow_run) if r["split"] == "val"]
    history = sorted(client.get_metric_history(run["run_id"], "val_accuracy"), key=lambda m: m.timestamp)
    assert [(m.step, m.value) for m in history] == [(r["step"], pytest.approx(r["accuracy"])) for r in val]
    by_time = client.get_metric_history(run["run_id"], "val_accuracy_vs_train_ms")
    assert sorted(m.step for m in by_time) == [round(r["train_seconds"] * 1000) for r in val]

    artifacts = _artifacts(client, run["run_id"])
    assert {"report.html", "config.yaml", "model/model.safetensors", "model/model.json"} <= artifacts
    assert any(a.endswith(".png") for a in artifacts)  # the report's figures travel with it


def test_fit_logs_to_tensorboard(folder, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb-run"
    assert main(["fit", str(folder), "--strategy", "probe", "--out", str(out), "--track", "tensorboard", *FAST]) == 0
    logdir = out / "tensorboard" / "tb-run"  # the default: RUN/tensorboard/<run name>
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    val = [r for r in read_metrics(out) if r["split"] == "val"]
    assert [(e.step, e.value) for e in events.Scalars("val_accuracy")] == \
        [(r["step"], pytest.approx(r["accuracy"])) for r in val]
    assert [e.step for e in events.Scalars("val_accuracy_vs_train_ms")] == [round(r["train_seconds"] * 1000) for r in val]
    assert events.Scalars("test_accuracy")[-1].value == pytest.approx(read_json(out / "summary.json")["test_accuracy"])
    assert "figures/confusion_matrix" in events.Tags()["images"]
    assert {"params/text_summary", "files/text_summary"} <= set(events.Tags()["tensors"])
    # TensorBoard keeps no files: the report and the model are copied beside the events
    assert (logdir / "files" / "report.html").exists() and (logdir / "files" / "model" / "model.safetensors").exists()


def test_compare_logs_a_parent_run_with_each_arm_nested(comparison, mlflow_reads):
    mlflow, client = mlflow_reads
    c = read_json(comparison / "comparison.json")
    parents = mlflow.search_runs(experiment_names=["headstart"], filter_string="tags.mlflow.runName = 'cmp'")
    assert len(parents) == 1
    parent = parents.iloc[0]
    assert parent["status"] == "FINISHED" and parent["tags.verdict"] == c["verdict"]
    assert parent["metrics.target_accuracy"] == pytest.approx(c["target_accuracy"])
    assert parent["params.arms"] == "probe,scratch"
    probe = next(a for a in c["arms"] if a["name"] == "probe")
    assert parent["metrics.probe.test_accuracy"] == pytest.approx(probe["test_accuracy"])
    assert {"report.html", "comparison.json"} <= _artifacts(client, parent["run_id"])

    children = mlflow.search_runs(experiment_names=["headstart"],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent['run_id']}'")
    assert sorted(children["tags.mlflow.runName"]) == ["probe", "scratch"]
    assert set(children["params.strategy"]) == {"probe", "scratch"}
    assert (children["status"] == "FINISHED").all()


def test_track_command_logs_a_comparison_to_tensorboard_side_by_side(comparison, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["track", str(comparison), "--to", "tensorboard", "--uri", str(tmp_path / "tb")]) == 0
    c = read_json(comparison / "comparison.json")
    own = EventAccumulator(str(tmp_path / "tb" / "cmp"))
    own.Reload()
    assert own.Scalars("target_accuracy")[0].value == pytest.approx(c["target_accuracy"])
    for arm in ("probe", "scratch"):
        events = EventAccumulator(str(tmp_path / "tb" / "cmp" / arm))
        events.Reload()
        summary = read_json(comparison / "arms" / arm / "summary.json")
        assert events.Scalars("test_accuracy")[0].value == pytest.approx(summary["test_accuracy"])


@pytest.mark.parametrize("tracker,module", [("mlflow", "mlflow"), ("tensorboard", "tensorboard")])
def test_a_missing_library_is_named_before_training(tracker, module, folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    out = tmp_path / "run"
    assert main(["fit", str(folder), "--out", str(out), "--track", tracker, *FAST]) == 2
    assert "pip install 'headstart[track]'" in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists()


def test_an_unreachable_server_fails_before_training(folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", str(folder), "--out", str(out), "--track", "mlflow",
                 "--track-uri", "http://127.0.0.1:9", *FAST]) == 2
    assert "cannot reach the MLflow server" in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists()


def test_a_failure_after_the_run_keeps_the_run_and_says_how_to_log_it_again(mlflow_run, monkeypatch):
    def fail(self, record):
        raise ConnectionError("the server went away")

    monkeypatch.setattr(MLflowTracker, "log", fail)
    config = FitConfig.from_dict(yaml.safe_load((mlflow_run / "config.yaml").read_text()))
    with pytest.raises(HeadstartError) as caught:
        track_run(config, mlflow_run)
    assert "is complete" in caught.value.message and "the server went away" in caught.value.message
    assert f"headstart track {mlflow_run} --to mlflow" in caught.value.hint
    assert (mlflow_run / "summary.json").exists() and (mlflow_run / "model.safetensors").exists()

