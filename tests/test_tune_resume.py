"""`tune` keeps its count: a study killed with SIGKILL and run again retries the lost trial once,
with its settings, counts it once, and never draws an earlier trial's settings again."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import kill_once_it_starts, make_blobs, write_image_folder
from headstart.choose.tune import _sampler_seed
from headstart.cli import main

# probe trials draw only their candidate: four of them, so that two trials can differ by chance and the
# resumed study's new trial is the sampler's own draw (before the fix it redrew trial 0's: always the same)
TINY = ["--strategies", "probe", "--candidates", ",".join(f"tf_efficientnet_lite0:{px}" for px in (32, 40, 48, 56)),
        "--train-per-class", "8", "--max-eval", "30", "--extract-engine", "torch"]


def test_a_resumed_study_seeds_its_sampler_apart_from_its_start():
    assert _sampler_seed(7, 0, 0) == 7 and _sampler_seed(7, 1, 0) == 8  # uninterrupted: the seeds it always had
    resumed = {_sampler_seed(7, index, existing) for index in (0, 1) for existing in (1, 2, 5)}
    assert len(resumed) == 6 and not resumed & {7, 8}
    assert _sampler_seed(7, 0, 3) == _sampler_seed(7, 0, 3)  # reproducible


@pytest.mark.slow
def test_a_killed_tune_resumes_with_distinct_settings_for_every_counted_trial(tmp_path):
    import optuna

    data = write_image_folder(tmp_path / "blobs", make_blobs())
    run, trials = tmp_path / "run", 2
    command = ["tune", str(data), "--trials", str(trials), "--out", str(run), *TINY]
    worker = subprocess.Popen([sys.executable, "-c", "import sys; from headstart.cli import main; "
                               "sys.exit(main(sys.argv[1:]))", *command],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_once_it_starts(worker, run / "trials" / "0000" / "config.yaml")  # trial 0 has started its fit
    study = optuna.load_study(study_name=f"tune-{data.name}", storage=f"sqlite:///{run / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["RUNNING"]

    assert main(command) == 0
    rows = json.loads((run / "tune.json").read_text())["trials"]
    counted = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    assert len(counted) == trials  # the right count: the lost attempt is not counted, its retry is
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE", "COMPLETE"]
    settings = [json.dumps(r["params"], sort_keys=True) for r in counted]
    assert len(set(settings)) == trials, settings  # no counted trial ran another's settings
    retries = [r for r in rows if r["retry_of"] is not None]
    assert [(r["number"], r["retry_of"]) for r in retries] == [(1, 0)] and retries[0]["params"] == rows[0]["params"]
