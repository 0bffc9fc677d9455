"""End-to-end: each command through the real CLI entry point, on tiny data."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headstart.cli import main
from headstart.compare import judge
from headstart.records import read_json

from conftest import make_blobs, write_image_folder

# the module's shared fit is read for its report.html (and its report rebuilt)
pytestmark = pytest.mark.report

FAST = ["--image-size", "32", "--batch-size", "16"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "data", make_blobs(n_per_class=20))


@pytest.fixture(scope="module")
def probe_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "probe"
    assert main(["fit", str(folder), "--strategy", "probe", "--out", str(out), *FAST]) == 0
    return out


def test_fit_writes_the_run_directory(probe_run, capsys):
    summary = read_json(probe_run / "summary.json")
    assert summary["test_accuracy"] > 0.9
    assert summary["weights"].startswith("packaged:efficientnet-lite0")
    assert (probe_run / "report.html").exists()
    # EfficientNet-Lite0 is explained by Grad-CAM; the probe says which layer it reads
    assert summary["explain_method"] == "gradcam" and "bn2: 1280 channels" in summary["features_from"]


def test_predict_answers_per_file_and_writes_csv(probe_run, folder, tmp_path, capsys):
    csv_path = tmp_path / "pred.csv"
    files = [str(next((folder / c).iterdir())) for c in ("red", "green", "blue")]
    assert main(["predict", str(probe_run), *files, "--csv", str(csv_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["red", "green", "blue"]
    assert csv_path.read_text().splitlines()[0] == "path,label,probability,error"


def test_predict_skips_an_unreadable_file_but_answers_the_rest(probe_run, folder, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    good = next((folder / "red").iterdir())
    assert main(["predict", str(probe_run), str(bad), str(good)]) == 0
    out = capsys.readouterr().out
    assert "unreadable image" in out and "\tred\t" in out


def test_report_rebuilds_from_the_run_directory(probe_run, capsys):
    (probe_run / "report.html").unlink()
    assert main(["report", str(probe_run)]) == 0
    assert (probe_run / "report.html").exists()


def test_zoo_lists_offline_backbones(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("tf_efficientnet_lite0 "))
    assert "yes" in line and "resnet9" in out


def test_datasets_lists_builtins(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("fashion-mnist", "digits", "mnist-5k", "elpv"):
        assert name in out


@pytest.mark.parametrize("argv,needle", [
    (["fit", "/no/such/folder"], "neither an existing file or folder"),
    (["fit", "digits", "--backbone", "tf_efficientnet_lit0"], "tf_efficientnet_lite0"),
    (["fit", "digits", "--backbone", "resnet18"], "offline"),
    (["fit", "digits", "--budget", "soon"], "duration"),
    (["predict", "/no/such/run", "x.png"], "not a headstart run"),  # the Run object's one message
])
def test_bad_input_gives_a_message_and_exit_2_without_traceback(argv, needle, capsys, tmp_path):
    assert main([*argv, *(["--out", str(tmp_path / "r")] if argv[0] == "fit" else [])]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def summary_of(out, arm):
    return read_json(out / "arms" / arm / "summary.json")


def test_compare_writes_comparison_and_report(folder, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(folder), "--arms", "probe,scratch", "--epochs", "3", "--out", str(out), *FAST]) == 0
    comparison = read_json(out / "comparison.json")
    for key in ("target_accuracy", "target_source", "arms", "speedup", "time_saved_pct", "verdict", "machine"):
        assert key in comparison
    assert {a["name"] for a in comparison["arms"]} == {"probe", "scratch"}
    # the recorded verdict is the one the recorded figures give, and the sentence says it
    expected = judge(comparison["arms"], comparison["target_accuracy"], n_test=summary_of(out, "probe")["sizes"]["test"])
    assert comparison["verdict"] == expected["verdict"] and comparison["speedup"] == expected["speedup"]
    assert comparison["verdict_sentence"] == expected["verdict_sentence"]
    # the target is where the scratch baseline plateaued (its smoothed curve's top: one lucky
    # evaluation on a small validation set is not a level it holds), never above its best
    (scratch,) = [a for a in comparison["arms"] if a["baseline"]]
    assert comparison["target_source"] == "baseline-plateau"
    assert comparison["target_accuracy"] == scratch["plateau"]["accuracy"] <= scratch["best_val_accuracy"]
    for arm in comparison["arms"]:
        assert (out / arm["run_dir"] / "summary.json").exists()
        for key in ("strategy", "backbone", "best_val_accuracy", "test_accuracy", "train_seconds",
                    "time_to_target_seconds"):
            assert key in arm
    page = (out / "report.html").read_text()
    # the best arm's explanations, its images linked from the comparison's folder
    best_dir = next(a["run_dir"] for a in comparison["arms"] if a["name"] == comparison["best_arm"])
    explained = read_json(out / best_dir / "explanations" / "explanations.json")
    assert f"Best arm ({comparison['best_arm']}): why the model decided" in page
    first = explained["items"][0]["explanations"][0]["image"]
    assert f'src="{best_dir}/explanations/{first}"' in page and (out / best_dir / "explanations" / first).exists()
    printed = capsys.readouterr().out
    assert comparison["verdict_sentence"].split(":")[0] in printed


def test_console_script_runs_in_a_fresh_process(probe_run, folder):
    exe = Path(sys.executable).with_name("headstart")
    img = next((folder / "blue").iterdir())
    done = subprocess.run([str(exe), "predict", str(probe_run), str(img)], capture_output=True, text=True,
                          env={**os.environ, "HEADSTART_QUIET": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "\tblue\t" in done.stdout


def test_demo_compares_on_elpv_and_writes_a_report(tmp_path, capsys, monkeypatch):
    # the real demo takes ~4 minutes; the same command on a sliver of elpv: 12 training images a class at
    # 32 px, 40 validation and 40 test images, eager extraction (no ONNX export), scratch capped at 5 x 5 s
    monkeypatch.setenv("HEADSTART_DEMO_MAX_EVAL", "40")
    monkeypatch.setenv("HEADSTART_DEMO_EXTRACT_ENGINE", "torch")
    out = tmp_path / "demo"
    assert main(["demo", "--train-per-class", "12", "--image-size", "32", "--budget", "5s", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    comparison = read_json(out / "comparison.json")
    assert comparison["data"] == "elpv" and {a["name"] for a in comparison["arms"]} == {"probe", "scratch"}
    assert next(a for a in comparison["arms"] if a["name"] == "probe")["weights"].startswith("packaged:")
    assert "CC BY-NC-SA" in printed and str(out / "report.html") in printed
    assert (out / "report.html").is_file()
    assert {read_json(out / "arms" / arm / "summary.json")["sizes"]["test"] for arm in ("probe", "scratch")} == {40}
