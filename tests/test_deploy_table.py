"""The deploy table: what measure.py counts and times, how deploy.json keeps its rows, the row
every fit writes, and what the fit report says from the figures."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from torch import nn

from headstart.config import FitConfig
from headstart.engines import measure
from headstart.engines.measure import count_parameters, mflops, record_deploy_row, time_batches
from headstart.pipeline import fit
from headstart.records import read_json
from headstart.report import build_fit_report

from conftest import make_blobs, make_texts
from report_fixtures import make_fit_run, parse

DECK = ["model", "file", "size (MB)", "parameters", "MFLOPs", "latency, batch 1 (ms)", "latency, batch 32 (ms)",
        "throughput (examples/s)", "test accuracy"]


# -- measuring -------------------------------------------------------------------------------

def test_parameters_are_counted_exactly_and_shared_ones_once():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert count_parameters(net) == (4 * 3 + 3) + (3 * 2 + 2)
    tied = nn.Sequential(nn.Linear(5, 5, bias=False), nn.Linear(5, 5, bias=False))
    tied[1].weight = tied[0].weight
    assert count_parameters(tied) == 25


def test_mflops_of_a_linear_and_a_conv_are_two_per_multiply_add():
    assert mflops(nn.Linear(10, 3), torch.zeros(1, 10)) == pytest.approx(2 * 10 * 3 / 1e6)
    # 8 output channels x 8 x 8 positions, each a 3 x 3 x 3 window
    assert mflops(nn.Conv2d(3, 8, 3), torch.zeros(1, 3, 10, 10)) == pytest.approx(2 * 8 * 64 * 27 / 1e6)


def test_mflops_is_none_when_the_module_cannot_run():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("no")

    net = Broken().train()
    assert mflops(net, torch.zeros(1, 3)) is None
    assert net.training  # its mode is given back


def test_time_batches_warms_up_tiles_small_inputs_and_keeps_to_its_bound():
    seen = []

    def run_batch(batch):
        seen.append(batch.shape[0])
        time.sleep(0.002 * batch.shape[0] ** 0.5)

    started = time.perf_counter()
    timed = time_batches(run_batch, np.zeros((5, 4), dtype=np.float32), max_seconds=0.4)
    elapsed = time.perf_counter() - started
    assert set(seen) == {1, 32} and seen.count(1) >= 2 and seen.count(32) >= 2  # a warm-up and a timed call each
    assert 0 < timed["latency_ms_b1"] < timed["latency_ms_b32"]
    assert timed["throughput_per_s"] == pytest.approx(32 / (timed["latency_ms_b32"] / 1000), rel=1e-3)
    assert elapsed < 0.4 + 0.5  # the bound, plus scheduling slack on a busy machine


def test_time_batches_overruns_by_at_most_a_warm_up_and_one_call_per_size():
    calls = []
    timed = time_batches(lambda b: (calls.append(1), time.sleep(0.05)), np.zeros((2, 3)), max_seconds=0.01)
    assert len(calls) == 4 and timed["repeats_b1"] == timed["repeats_b32"] == 1


# -- deploy.json -----------------------------------------------------------------------------

def _row(name, **figures):
    return {"name": name, "engine": "onnxruntime", "precision": "fp32", "file": "model.onnx", "file_mb": 10.0,
            "params": 1000, "mflops": 5.0, "latency_ms_b1": 2.0, "latency_ms_b32": 20.0,
            "throughput_per_s": 1600.0, "test_accuracy": 0.9, **figures}


def test_a_row_of_the_same_name_replaces_the_old_one_in_its_place(tmp_path):
    record_deploy_row(tmp_path, _row("PyTorch fp32", engine="pytorch"))
    record_deploy_row(tmp_path, _row("ONNX Runtime fp32"))
    record_deploy_row(tmp_path, _row("PyTorch fp32", engine="pytorch", latency_ms_b1=1.5))
    deploy = read_json(tmp_path / "deploy.json")
    assert [r["name"] for r in deploy["rows"]] == ["PyTorch fp32", "ONNX Runtime fp32"]
    assert deploy["rows"][0]["latency_ms_b1"] == 1.5 and deploy["rows"][0]["measured"]
    assert {"cpu", "cores"} <= set(deploy["machine"])
    with pytest.raises(ValueError):
        record_deploy_row(tmp_path, {"engine": "pytorch"})


def test_a_failed_write_leaves_the_old_table_whole(tmp_path):
    record_deploy_row(tmp_path, _row("ONNX Runtime fp32"))
    before = (tmp_path / "deploy.json").read_text()
    with pytest.raises(TypeError):
        record_deploy_row(tmp_path, _row("ONNX Runtime int8", extra=object()))  # not JSON
    assert (tmp_path / "deploy.json").read_text() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_machine_reads_vnni_from_the_cpu_flags(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text("model name\t: Test CPU 9000\nflags\t\t: fpu sse avx2 fma\n\n"
                    "model name\t: Test CPU 9000\nflags\t\t: fpu sse avx2 fma\n")
    real_path = measure.Path
    monkeypatch.setattr(measure, "Path", lambda p, *a: fake if p == "/proc/cpuinfo" else real_path(p, *a))
    found = measure.machine()
    assert found["cpu"] == "Test CPU 9000" and found["avx2"] and found["vnni"] is False and found["vnni_flags"] == []
    fake.write_text("model name\t: Other\nflags\t\t: avx2 avx512f avx512_vnni\n")
    assert measure.machine()["vnni_flags"] == ["avx512_vnni"]


# -- every fit writes the PyTorch row --------------------------------------------------------

def _fit(tmp_path, **overrides):
    # eager extraction: the default (onnxruntime) first exports the backbone with torch.export, the
    # fit's slowest step here, and the deploy row measures the classifier whatever extracted its features
    settings = dict(data="blobs", backbone="tf_efficientnet_lite0", strategy="probe", image_size=32,
                    batch_size=16, extract_engine="torch", explain_examples=0, out=str(tmp_path / "run"))
    return fit(FitConfig(**{**settings, **overrides}), data=make_blobs(n_per_class=10))


@pytest.mark.slow
@pytest.mark.report
@pytest.mark.deploy
def test_a_fit_records_its_model_in_deploy_json_and_its_report_shows_the_table(tmp_path):
    result = _fit(tmp_path)
    deploy = read_json(result.run_dir / "deploy.json")
    (row,) = deploy["rows"]
    assert row["name"] == "PyTorch fp32" and row["engine"] == "pytorch" and row["precision"] == "fp32"
    assert row["params"] == count_parameters(result.classifier)
    assert row["file_mb"] == pytest.approx((result.run_dir / "model.safetensors").stat().st_size / 1e6, abs=1e-3)
    assert row["mflops"] > 1 and row["latency_ms_b1"] > 0 and row["latency_ms_b32"] > 0 and row["throughput_per_s"] > 0
    assert row["test_accuracy"] == pytest.approx(result.summary["test_accuracy"])
    summary = read_json(result.run_dir / "summary.json")
    assert 0 < summary["deploy_seconds"] < summary["wall_seconds"] + 10
    assert summary["train_seconds"] < summary["wall_seconds"]  # measured outside the training clock

    page = parse((result.run_dir / "report.html").read_text())
    assert "Deploy: size and speed" in page.sections
    table = page.table("model")
    assert table["headers"] == DECK
    assert [r[0] for r in table["rows"]] == ["PyTorch fp32"]
    assert table["rows"][0][2] == f"{row['file_mb']:.2f}"
    assert any("headstart export RUN --format onnx" in n for n in page.notes)


@pytest.mark.slow
@pytest.mark.report
@pytest.mark.deploy
def test_a_failed_measurement_costs_the_report_a_section_not_the_run(tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("timer exploded")

    monkeypatch.setattr(measure, "pytorch_row", broken)
    result = _fit(tmp_path)
    assert (result.run_dir / "model.safetensors").exists()
    assert result.summary["deploy_error"] == "RuntimeError: timer exploded"
    assert not (result.run_dir / "deploy.json").exists()
    page = parse((result.run_dir / "report.html").read_text())
    assert any("timer exploded" in n for n in page.notes)


@pytest.mark.deploy
def test_a_tfidf_run_is_measured_as_scikit_learn_with_its_coefficients(tmp_path):
    result = fit(FitConfig(data="topics", strategy="tfidf", out=str(tmp_path / "tfidf"), explain_examples=0),
                 data=make_texts())
    (row,) = read_json(result.run_dir / "deploy.json")["rows"]
    model = result.classifier
    assert row["name"] == "scikit-learn fp32" and row["mflops"] is None
    assert row["params"] == model.coef.size + model.intercept.size
    assert row["file"] == "model.safetensors + vocabulary.json" and row["latency_ms_b32"] > 0


# -- what the report says from the figures ---------------------------------------------------

def _run_with_table(tmp_path, rows, **machine):
    run = make_fit_run(tmp_path / "fit")
    deploy = {"machine": {"cpu": "Intel Xeon Test", "cores": 2, "avx2": True, "vnni": False, "vnni_flags": [],
                          "avx512_fp16": False, **machine}, "rows": rows}
    (run / "deploy.json").write_text(json.dumps(deploy))
    return parse(build_fit_report(run).read_text())


ROWS = [_row("PyTorch fp32", engine="pytorch", own_model=True, latency_ms_b1=3.0, file="model.safetensors"),
        _row("ONNX Runtime fp32")]


def test_the_report_says_when_int8_is_slower_than_fp32_and_why(tmp_path):
    int8 = _row("ONNX Runtime int8", precision="int8", file_mb=2.5, latency_ms_b1=3.0, latency_ms_b32=30.0)
    page = _run_with_table(tmp_path, ROWS + [int8])
    assert [r[0] for r in page.table("model")["rows"]] == ["PyTorch fp32", "ONNX Runtime fp32", "ONNX Runtime int8"]
    said = " ".join(page.warnings)
    assert ("ONNX Runtime int8 against ONNX Runtime fp32 on this machine: 1.50× slower at batch 1 (3 vs 2 ms) "
            "and 1.50× slower at batch 32 (30 vs 20 ms), with a 4.0× smaller file.") in said
    assert "Intel Xeon Test has AVX2 but no VNNI" in said and "not speed" in said
    assert not any("headstart export" in n for n in page.notes)  # the table already has its ONNX rows


def test_the_report_says_when_int8_is_faster_and_blames_nothing(tmp_path):
    int8 = _row("ONNX Runtime int8", precision="int8", file_mb=2.5, latency_ms_b1=1.0, latency_ms_b32=10.0)
    page = _run_with_table(tmp_path, ROWS + [int8], vnni=True, vnni_flags=["avx512_vnni"])
    said = " ".join(page.notes)
    assert not page.warnings[1:]  # the fixture's imbalance warning only
    assert "2.00× faster at batch 1" in said and "no VNNI" not in said


def test_a_difference_within_timing_noise_is_about_as_fast_and_no_warning(tmp_path):
    fp16 = _row("ONNX Runtime fp16", precision="fp16", file_mb=5.0, latency_ms_b1=2.04, latency_ms_b32=19.5)
    page = _run_with_table(tmp_path, ROWS + [fp16])
    assert len(page.warnings) == 1  # the fixture's imbalance warning only
    assert any("about as fast at batch 1 (2.04 vs 2 ms) and about as fast at batch 32" in n for n in page.notes)


def test_a_table_measured_on_a_busy_machine_says_its_latencies_are_inflated(tmp_path):
    quiet = _run_with_table(tmp_path / "quiet", [{**r, "load_1min": 1.2} for r in ROWS])
    assert not any("busy" in w for w in quiet.warnings)
    busy = _run_with_table(tmp_path / "busy", [ROWS[0], {**ROWS[1], "load_1min": 7.5}])
    assert any("load average up to 7.5 on 2 cores" in w for w in busy.warnings)


def test_recorded_rows_carry_the_load_they_were_measured_under(tmp_path):
    record_deploy_row(tmp_path, _row("ONNX Runtime fp32"))
    assert read_json(tmp_path / "deploy.json")["rows"][0]["load_1min"] >= 0


def test_a_report_without_deploy_json_has_no_deploy_section(tmp_path):
    page = parse(build_fit_report(make_fit_run(tmp_path / "fit")).read_text())
    assert "Deploy: size and speed" not in page.sections
