import json
import time

import pytest

from headstart.config import parse_duration
from headstart.errors import HeadstartError
from headstart.records import Recorder, atomic_write_text, read_metrics


def test_clock_excludes_paused_time(tmp_path):
    rec = Recorder(tmp_path, "probe")
    rec.resume()
    time.sleep(0.05)
    rec.pause()
    time.sleep(0.1)  # evaluation: must not count
    assert 0.04 < rec.train_seconds < 0.09
    assert rec.wall_seconds >= 0.15


def test_log_writes_one_json_row_per_evaluation_and_keeps_clock_running(tmp_path):
    rec = Recorder(tmp_path, "finetune")
    rec.resume()
    rec.step, rec.epoch = 5, 1.0
    rec.log("val", 0.75, 0.5, phase="finetune")
    assert rec._running_since is not None  # logging pauses only while it writes
    rows = read_metrics(tmp_path)
    assert len(rows) == 1
    row = rows[0]
    for key in ("strategy", "step", "epoch", "train_seconds", "wall_seconds", "split", "accuracy", "loss"):
        assert key in row
    assert row["split"] == "val" and row["accuracy"] == 0.75 and row["step"] == 5


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, json.dumps({"x": 1}))
    assert json.loads(target.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("5m", 300), ("1.5h", 5400), ("42", 42)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "-3m", "0"])
def test_parse_duration_rejects_nonsense(bad):
    with pytest.raises(HeadstartError):
        parse_duration(bad)


def test_a_failed_folder_write_leaves_the_old_folder_and_no_temporary(tmp_path):
    import pytest

    from headstart.files import atomic_dir

    target = tmp_path / "tokenizer"
    with atomic_dir(target) as folder:
        (folder / "vocab.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as folder:
            (folder / "vocab.txt").write_text("half")
            raise RuntimeError("killed mid-write")
    assert (target / "vocab.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer"]  # no temporary left behind
