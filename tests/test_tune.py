"""headstart tune: trials are ordinary runs on cached features, the study resumes, a killed worker's
trial is retried, pruning stops a fit cleanly, bad input fails before anything is created, and
`fit --config best.yaml` re-runs the best trial."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import kill_once_it_starts, make_blobs, write_image_folder
from headstart.cli import main
from headstart.errors import HeadstartError

# tiny: probe trials on one 32 px candidate, few examples, plain PyTorch extraction
TINY = ["--strategies", "probe", "--candidates", "tf_efficientnet_lite0:32,tf_efficientnet_lite0:40",
        "--train-per-class", "8", "--max-eval", "30", "--extract-engine", "torch"]


@pytest.fixture
def blobs_folder(tmp_path):
    return write_image_folder(tmp_path / "blobs", make_blobs())


def _study(run: Path) -> dict:
    return json.loads((run / "tune.json").read_text())


def test_study_runs_trials_writes_best_reruns_it_and_continues(tmp_path, blobs_folder, capsys):
    run = tmp_path / "run"
    assert main(["tune", str(blobs_folder), "--trials", "2", "--out", str(run), *TINY]) == 0
    study = _study(run)
    trials = study["trials"]
    assert [t["number"] for t in trials] == [0, 1]
    assert {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    for t in trials:  # each trial an ordinary run folder of its own, a probe drawing only its candidate
        assert Path(t["run_dir"]) == run / "trials" / f"{t['number']:04d}"
        assert (Path(t["run_dir"]) / "config.yaml").exists()
        assert set(t["params"]) == {"strategy", "candidate"}
        assert not (Path(t["run_dir"]) / "checkpoint").exists()
    for t in (t for t in trials if t["state"] == "COMPLETE"):
        summary = json.loads((Path(t["run_dir"]) / "summary.json").read_text())
        assert t["value"] == pytest.approx(summary["best_val_accuracy"])  # validation, never test
        assert t["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    best = study["best"]
    assert best["value"] == max(t["value"] for t in trials if t["state"] == "COMPLETE")
    best_yaml = yaml.safe_load((run / "best.yaml").read_text())
    trial_config = yaml.safe_load((Path(best["run_dir"]) / "config.yaml").read_text())
    assert best_yaml == {k: v for k, v in trial_config.items() if k not in ("out", "resume")}
    page = (run / "report.html").read_text()
    assert "tune_history.png" in page and (run / "tune_history.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert f"headstart fit --config {run / 'best.yaml'}" in printed and "2 complete" in printed

    # fit --config: the file's settings as defaults (DATA included), flags given win
    refit = tmp_path / "refit"
    assert main(["fit", "--config", str(run / "best.yaml"), "--out", str(refit), "--batch-size", "8"]) == 0
    again = yaml.safe_load((refit / "config.yaml").read_text())
    assert again["batch_size"] == 8
    assert {k: v for k, v in again.items() if k not in ("out", "resume", "batch_size")} == \
        {k: v for k, v in best_yaml.items() if k != "batch_size"}
    summary = json.loads((refit / "summary.json").read_text())
    assert summary["best_val_accuracy"] == pytest.approx(best["value"])  # the same probe, the same accuracy

    # the same command again continues the study up to the new total
    assert main(["tune", str(blobs_folder), "--trials", "3", "--out", str(run), *TINY]) == 0
    assert [t["number"] for t in _study(run)["trials"]] == [0, 1, 2]


def test_a_pruned_trial_stops_its_fit_cleanly_and_keeps_its_run_folder(tmp_path, blobs_folder):
    import optuna

    from headstart.choose.tune import _Reporter
    from headstart.config import FitConfig
    from headstart.pipeline import fit
    from headstart.records import observe_evaluations

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    earlier = study.ask()
    for step in range(5):
        earlier.report(1.5, step)  # above any accuracy: the next trial is below the median at once
    study.tell(earlier, 1.5)
    trial = study.ask()
    out = tmp_path / "pruned"
    config = FitConfig(data=str(blobs_folder), backbone="tf_efficientnet_lite0", image_size=32, train_per_class=8,
                       max_eval=30, extract_engine="torch", explain_examples=0, out=str(out))
    with pytest.raises(optuna.TrialPruned), observe_evaluations(_Reporter(trial)):
        fit(config)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in rows] == ["val"]  # stopped at its first evaluation, which is written
    assert (out / "config.yaml").exists() and not (out / "summary.json").exists()
    assert trial.should_prune()


def test_the_space_draws_what_each_strategy_uses():
    import optuna

    from headstart.choose.candidates import Candidate
    from headstart.choose.tune_space import BackboneFacts, Space, sample_config
    from headstart.config import FitConfig
    from headstart.modalities import get_modality
    from headstart.strategies import get_strategy

    image = get_modality("image")
    space = Space(FitConfig(data="x", image_size=48), image, ["probe", "lp-ft", "finetune", "scratch"],
                  [Candidate("tf_efficientnet_lite0", 32), Candidate("tf_efficientnet_lite1")],
                  lambda name: BackboneFacts(groups=8, attention=False))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        config = sample_config(trial, space)
        strategy = get_strategy(config.strategy)
        seen.add(config.strategy)
        names = {k.split("/", 1)[1] for k in trial.params if "/" in k}
        if config.strategy == "probe":
            assert names == {"candidate"} and config.lr is None
        if config.strategy == "scratch":  # its own architecture: no candidate drawn
            assert "candidate" not in names and config.scratch_model == image.default_scratch_model
        if strategy.pretrained:
            assert (config.backbone, config.image_size) in {("tf_efficientnet_lite0", 32), ("tf_efficientnet_lite1", 48)}
        if config.strategy in ("lp-ft", "finetune"):
            default = strategy.default("lr", image)
            assert default * 0.1 <= config.lr <= default * 3
            assert 0 <= config.freeze_depth < 8 and 0.5 <= config.layer_decay <= 1.0
            assert config.augment in ("none", "light", "strong") and config.epochs >= 1
        study.tell(trial, 0.5)
    assert seen == {"probe", "lp-ft", "finetune", "scratch"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_input_fails_before_anything_is_created(tmp_path, blobs_folder):
    from headstart.api import tune

    out = tmp_path / "never"
    port = _free_port()  # nothing listens there
    with pytest.raises(HeadstartError, match=f"127.0.0.1:{port}") as e:
        tune(str(blobs_folder), trials=2, out=str(out), storage=f"postgresql://me@127.0.0.1:{port}/db")
    assert "start one" in e.value.hint
    with pytest.raises(HeadstartError, match="unknown strategy"):
        tune(str(blobs_folder), trials=2, out=str(out), strategies="probe,finetuned")
    with pytest.raises(HeadstartError, match="unknown backbone"):
        tune(str(blobs_folder), trials=2, out=str(out), candidates="tf_efficientnet_lite9")
    with pytest.raises(HeadstartError, match="at least 1"):
        tune(str(blobs_folder), trials=0, out=str(out))
    with pytest.raises(HeadstartError, match="the minimum is 30s"):
        tune(str(blobs_folder), trials=2, out=str(out), budget="10s")
    with pytest.raises(HeadstartError, match="SQLite cannot"):
        tune(str(blobs_folder), trials=2, out=str(out), workers=2)
    assert not out.exists()


def _tune_command(data: Path, run: Path, trials: int) -> list[str]:
    return [sys.executable, "-c", "import sys; from headstart.cli import main; sys.exit(main(sys.argv[1:]))",
            "tune", str(data), "--trials", str(trials), "--out", str(run), *TINY]


def test_a_trial_killed_mid_run_is_retried_with_its_settings(tmp_path, blobs_folder):
    import optuna

    run = tmp_path / "run"
    # one trial: the killed one, whose retry is the one trial that counts (test_tune_resume continues a
    # killed study past its retry)
    worker = subprocess.Popen(_tune_command(blobs_folder, run, 1), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    kill_once_it_starts(worker, run / "trials" / "0000" / "config.yaml")  # trial 0 has started its fit
    left = optuna.load_study(study_name=f"tune-{blobs_folder.name}", storage=f"sqlite:///{run / 'study.db'}")
    assert [t.state.name for t in left.trials] == ["RUNNING"]  # killed mid-trial

    assert main(_tune_command(blobs_folder, run, 1)[3:]) == 0
    trials = _study(run)["trials"]
    assert [t["state"] for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1]["retry_of"] == 0 and trials[1]["params"] == trials[0]["params"]  # no trial lost
    assert not (run / "trials" / "0000").exists()  # the half-written run is gone, replaced by trial 1's
    assert (run / "trials" / "0001" / "summary.json").exists()
