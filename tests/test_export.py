"""ONNX export (fp32, int8, fp16), its checks, and the PyTorch-free onnxruntime predictor."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from headstart import run_lock
from headstart.cli import main
from headstart.deploy import onnx_export
from headstart.deploy.onnx_predict import OnnxClassifier
from headstart.errors import HeadstartError

from conftest import tiny_image_folder
from tiny_runs import fit_image_probe, fit_minilm_probe, quick_deploy_rows, write_text_csv

# predict with onnxruntime needs neither PyTorch nor the onnx package (its start: BENCHMARKS 18.1)
NO_TORCH = ("import sys; sys.modules['torch'] = sys.modules['onnx'] = None; from headstart.cli import main; "
            "sys.exit(main(sys.argv[1:]))")


@pytest.fixture(autouse=True)
def _short_measurements(monkeypatch):
    monkeypatch.setattr(onnx_export, "MEASURE_SECONDS", 0.2)  # the deploy row's timing: a glance is enough here


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return tiny_image_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def image_run(image_folder, tmp_path_factory):
    return fit_image_probe(image_folder, tmp_path_factory.mktemp("runs") / "image")


@pytest.fixture(scope="module")
def image_export(image_run):
    import headstart

    with quick_deploy_rows():  # a module fixture is made before the tests' own _short_measurements
        return headstart.export(image_run)


@pytest.fixture(scope="module")
def text_csv(tmp_path_factory):
    return write_text_csv(tmp_path_factory.mktemp("texts") / "texts.csv")


@pytest.fixture(scope="module")
def text_run(text_csv):
    return fit_minilm_probe(text_csv, text_csv.parent / "run")


def _torch_predictions(run, inputs):
    from headstart.prediction import predict_inputs

    return [(p.label, round(p.probability, 4)) for p in predict_inputs(run, inputs)]


def _cli_rows(stdout: str) -> list[tuple[str, float]]:
    return [(line.split("\t")[1], float(line.split("\t")[2])) for line in stdout.strip().splitlines()]


def _agree(onnx_rows, torch_rows) -> bool:
    """The same labels, and probabilities within the 4 digits printed: both sides are rounded, so
    a probability near a rounding boundary may print one last digit apart (0.8681 against 0.868)."""
    return [label for label, _ in onnx_rows] == [label for label, _ in torch_rows] and all(
        abs(a - b) <= 1e-4 + 1e-9 for (_, a), (_, b) in zip(onnx_rows, torch_rows))


# --------------------------------------------------------------------------- image runs

def test_image_export_matches_pytorch_and_carries_its_metadata(image_run, image_export):
    target = image_run / "model.onnx"
    assert Path(image_export["file"]) == target and target.is_file()
    sample = image_export["checks"]["fp32_sample"]
    assert sample["max_abs_diff"] <= sample["allowed_abs_diff"] == pytest.approx(1e-4 * max(1, sample["max_abs_logit"]))
    assert sample["same_class"] == 1.0
    assert image_export["checks"]["onnx_test_accuracy"] == image_export["checks"]["torch_test_accuracy"]
    assert json.loads((image_run / "model.onnx.json").read_text())["checks"] == image_export["checks"]

    model = onnx.load(str(target))
    props = {p.key: p.value for p in model.metadata_props}
    meta = json.loads((image_run / "model.json").read_text())
    assert props["headstart_format"] == "headstart-onnx/1" and props["kind"] == "image"
    assert props["precision"] == "fp32" and json.loads(props["classes"]) == meta["classes"]
    assert json.loads(props["preprocessing"]) == meta["backbone"]["preprocessing"]
    assert Path(props["source_run"]) == image_run.absolute()
    graph_input = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert graph_input.name == "pixels" and dims[1:] == [64, 64, 3] and isinstance(dims[0], str)  # dynamic batch
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8

    rows = {r["name"]: r for r in json.loads((image_run / "deploy.json").read_text())["rows"]}
    row = rows["ONNX Runtime fp32"]
    assert row["engine"] == "onnxruntime" and row["file"] == "model.onnx" and row["latency_ms_b1"] > 0
    assert row["test_accuracy"] == image_export["checks"]["onnx_test_accuracy"] and row["params"] > 3_000_000


def test_onnxruntime_predictor_runs_without_torch_and_agrees_with_pytorch(image_run, image_export, image_folder,
                                                                           tmp_path):
    inputs = [str(image_folder / name) for name in ("red", "green", "blue")]
    done = subprocess.run([sys.executable, "-c", NO_TORCH, "predict", str(image_run), *inputs, "--engine",
                           "onnxruntime", "--csv", str(tmp_path / "p.csv")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _agree(_cli_rows(done.stdout), _torch_predictions(image_run, inputs))
    assert len(list(csv.reader(open(tmp_path / "p.csv")))) == 61  # the header and the 60 images


def test_the_predictor_reads_images_exactly_as_training_does(image_folder):
    from headstart.data.sources import decode_image
    from headstart.deploy import onnx_predict

    for path in sorted((image_folder / "red").iterdir())[:3]:
        for size in (64, 20):  # larger and smaller than the files' 48 px
            assert np.array_equal(onnx_predict.decode_image(path, size), decode_image(path, size))


def test_cli_export_int8_writes_the_model_its_checks_and_a_deploy_row(image_run, image_export, monkeypatch, capsys):
    # the fresh fp32 graph quantized here is the one the image export checked (torch.export of the
    # same model, the same call: a copy saves its ~10 s); calibration, quantization, checks are real
    monkeypatch.setattr(onnx_export, "torch_to_onnx", lambda module, inputs, path, **_: shutil.copy(
        image_run / "model.onnx", path))
    assert main(["export", str(image_run), "--format", "onnx", "--quantize", "int8"]) == 0
    shown = capsys.readouterr().out
    target = image_run / "model.int8.onnx"
    record = json.loads((image_run / "model.int8.onnx.json").read_text())
    checks = record["checks"]
    assert target.is_file() and record["precision"] == "int8" and str(target) in shown
    train_size = json.loads((image_run / "summary.json").read_text())["sizes"]["train"]
    assert checks["calibration_examples"] == min(256, train_size)
    assert checks["accuracy_points_lost"] <= 1.0 and checks["tolerance_points"] == 1.0
    assert checks["onnx_test_accuracy"] == pytest.approx(checks["torch_test_accuracy"] - checks["accuracy_points_lost"]
                                                         / 100)
    assert record["file_mb"] < 0.5 * (image_run / "model.safetensors").stat().st_size / 1e6  # int8 weights
    assert OnnxClassifier(target).precision == "int8"
    rows = {r["name"] for r in json.loads((image_run / "deploy.json").read_text())["rows"]}
    assert "ONNX Runtime int8" in rows
    # no work files left behind (the run's own advisory lock, run_lock.LOCK, is not the export's)
    assert not [p for p in image_run.iterdir() if p.name.startswith(".") and p.name != run_lock.LOCK]


def test_a_quantized_model_that_loses_accuracy_is_refused_and_nothing_is_written(image_run, image_export,
                                                                                  monkeypatch):
    # the fresh fp32 export is the one already checked above (a copy saves a minute); the fp16
    # conversion and both accuracy measurements are real. A negative tolerance refuses even no loss.
    monkeypatch.setattr(onnx_export, "torch_to_onnx", lambda module, inputs, path, **_: shutil.copy(
        image_run / "model.onnx", path))
    before = sorted(p.name for p in image_run.iterdir())
    with pytest.raises(HeadstartError, match=r"fp16 model's test accuracy is [\d.]+ against PyTorch's [\d.]+") as e:
        onnx_export.export_onnx(image_run, quantize="fp16", tolerance=-1.0)
    assert "--force" in e.value.hint
    assert sorted(p.name for p in image_run.iterdir()) == before

    forced = onnx_export.export_onnx(image_run, quantize="fp16", tolerance=-1.0, force=True)
    assert forced["checks"]["forced"] and (image_run / "model.fp16.onnx").is_file()


@pytest.mark.parametrize("args, message", [
    (["--quantize", "int4"], "unknown --quantize 'int4'"),
    (["--format", "tflite"], "unknown export format 'tflite'"),
])
def test_export_refuses_bad_options_before_any_work(image_run, args, message, capsys):
    assert main(["export", str(image_run), *args]) == 2
    assert message in capsys.readouterr().err


def test_export_refuses_what_is_not_a_run(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "is not a headstart run" in capsys.readouterr().err


def test_predict_onnxruntime_asks_for_an_export_first(tmp_path, capsys):
    (tmp_path / "model.json").write_text("{}")
    assert main(["predict", str(tmp_path), "x.png", "--engine", "onnxruntime"]) == 2
    assert f"headstart export {tmp_path} --format onnx" in capsys.readouterr().err


# --------------------------------------------------------------------------- text runs

def test_text_export_has_dynamic_axes_ships_its_tokenizer_and_agrees_without_torch(text_run, tmp_path):
    target = tmp_path / "elsewhere" / "topics.onnx"
    record = onnx_export.export_onnx(text_run, out=target)
    sample = record["checks"]["fp32_sample"]
    low, high = sample["lengths"]
    assert low < high  # texts of different lengths in the one checked batch
    assert sample["max_abs_diff"] <= sample["allowed_abs_diff"] and sample["same_class"] == 1.0
    assert (target.parent / "tokenizer" / "tokenizer.json").is_file()  # copied beside a model written elsewhere
    for graph_input in onnx.load(str(target)).graph.input:
        dims = [d.dim_param for d in graph_input.type.tensor_type.shape.dim]
        assert graph_input.name in ("input_ids", "attention_mask") and all(dims), dims  # batch and sequence

    texts = ["rain", "the striker scored a goal in the cup match and the coach was happy with the team",
             "shares and stocks fell as the bank raised rates", "sunny"]
    model = OnnxClassifier(target)
    from headstart.model_io import load_model
    from headstart.zoo.tokens import tokenize

    torch_model, _ = load_model(text_run)
    ids, truncated = tokenize(torch_model.backbone.tokenizer, texts, 12)
    assert truncated == 1 and np.array_equal(model.token_ids(texts), ids)  # the same ids, truncation included
    done = subprocess.run([sys.executable, "-c", NO_TORCH, "predict", str(target), *texts, "--engine",
                           "onnxruntime"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _agree(_cli_rows(done.stdout), _torch_predictions(text_run, texts))



def test_tfidf_runs_export_through_their_own_graph_and_predict_without_torch(text_csv):
    out = text_csv.parent / "tfidf"
    assert main(["-q", "fit", str(text_csv), "--strategy", "tfidf", "--out", str(out), "--explain-examples", "0"]) == 0
    record = onnx_export.export_onnx(out)
    assert record["kind"] == "tfidf" and record["checks"]["fp32_sample"]["same_class"] == 1.0
    assert [i.name for i in onnx.load(record["file"]).graph.input] == ["text"]
    texts = ["rain and snow", "the striker scored a goal", "bank shares"]
    done = subprocess.run([sys.executable, "-c", NO_TORCH, "predict", str(out), *texts, "--engine", "onnxruntime"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _agree(_cli_rows(done.stdout), _torch_predictions(out, texts))


def test_int8_quantization_works_with_a_relative_output_path(tmp_path, monkeypatch):
    """quantize_int8 works inside a scratch folder (chdir): a relative --out must still land."""
    import torch

    from headstart.engines.onnx_graph import ort_session, quantize_int8, torch_to_onnx

    monkeypatch.chdir(tmp_path)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    torch_to_onnx(model, (torch.zeros(2, 8),), Path("fp32.onnx"), input_names=["x"], output_names=["y"],
                  dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    feeds = [{"x": np.random.default_rng(i).normal(size=(4, 8)).astype(np.float32)} for i in range(4)]
    quantize_int8(Path("fp32.onnx"), Path("out") / "model.int8.onnx", feeds)
    out = ort_session(Path("out") / "model.int8.onnx").run(None, feeds[0])[0]
    assert out.shape == (4, 4) and sorted(p.name for p in Path("out").iterdir()) == ["model.int8.onnx"]


def test_int8_is_computed_right_on_cpus_without_vnni(tmp_path):
    """The int8 file must give the same numbers on every x86 CPU. Signed weights are multiplied
    with VPMADDUBSW without VNNI (AVX2), whose 16-bit pair sums saturate on large activations
    times large weights -- exactly this 1x1 convolution's. onnxruntime's fused kernels must then
    agree with the exact QDQ arithmetic (graph optimisations off), and the weights be unsigned
    (U8U8), which is what keeps a VNNI machine's export right on an AVX2 one."""
    import onnxruntime as ort
    import torch
    from onnx import TensorProto

    from headstart.engines.onnx_graph import ort_session, quantize_int8, torch_to_onnx

    model = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 1)).eval()
    with torch.no_grad():
        for conv in (model[0], model[2]):
            conv.weight.copy_(torch.rand_like(conv.weight) + 0.5)  # all positive: the pair sums add up
    torch_to_onnx(model, (torch.zeros(2, 16, 4, 4),), tmp_path / "fp32.onnx", input_names=["x"], output_names=["y"],
                  dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.uniform(0, 10, size=(4, 16, 4, 4)).astype(np.float32)} for _ in range(4)]
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", feeds, keep_head_float=False)
    exact_options = ort.SessionOptions()
    exact_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    exact = ort.InferenceSession(str(tmp_path / "int8.onnx"), exact_options, providers=["CPUExecutionProvider"])
    fused = ort_session(tmp_path / "int8.onnx").run(None, feeds[0])[0]
    expected = exact.run(None, feeds[0])[0]
    assert np.abs(fused - expected).max() <= 0.01 * np.abs(expected).max()
    weights = [t for t in onnx.load(str(tmp_path / "int8.onnx")).graph.initializer if t.name.endswith("weight_quantized")]
    assert weights and all(t.data_type == TensorProto.UINT8 for t in weights)
