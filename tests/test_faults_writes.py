"""Every write failure is a clear error (files.py): a full disk injected at a write of a tiny fit
ends in one paragraph and exit 2, leaves no temporary file, and `--resume` after space is freed
completes the run; a cache that cannot be written only warns."""
import errno
import os

import numpy as np
import pytest

from headstart import files, run_lock
from headstart.cli import main
from headstart.data.cache import save_arrays
from headstart.embed import save_cached_features
from headstart.run import Run

from conftest import make_blobs, write_image_folder

FIT = ["--strategy", "probe", "--image-size", "32", "--explain-examples", "0"]


def _full_disk_at(monkeypatch, at: int | None) -> list[int]:
    """files._sync (every write's last step) fails with ENOSPC at its `at`-th call; returns the count."""
    calls = [0]
    real = files._sync

    def sync(fd):
        calls[0] += 1
        if calls[0] == at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)
    monkeypatch.setattr(files, "_sync", sync)
    return calls


def test_a_refused_write_names_the_path_what_the_space_needed_and_left_and_leaves_nothing(tmp_path, monkeypatch):
    _full_disk_at(monkeypatch, 1)
    with pytest.raises(files.WriteFailed) as refused:
        files.write_json(tmp_path / "summary.json", {"a": 1})
    said = str(refused.value)
    assert f"could not write the run's summary to {tmp_path / 'summary.json'}: there is no space left" in said
    assert "it needed 13 B" in said and " free there" in said and "--resume" in said
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary twin


@pytest.mark.parametrize("code,says", [(errno.EROFS, "read-only"), (errno.ENAMETOOLONG, "too long"),
                                       (errno.EDQUOT, "quota")])
def test_each_refusal_says_why(tmp_path, monkeypatch, code, says):
    monkeypatch.setattr(files, "_sync", lambda fd: (_ for _ in ()).throw(OSError(code, os.strerror(code))))
    with pytest.raises(files.WriteFailed, match=says):
        files.atomic_write_text(tmp_path / "x.yaml", "a: 1\n")


def test_a_cache_that_cannot_be_written_only_warns(tmp_path, monkeypatch):
    _full_disk_at(monkeypatch, 1)
    with pytest.warns(UserWarning, match="could not write its cache file"):
        assert save_arrays(tmp_path / "a.npz", x=np.zeros(3)) is False
    _full_disk_at(monkeypatch, 1)
    with pytest.warns(UserWarning, match="could not write its cache file"):
        assert save_cached_features(tmp_path / "f.npy", np.zeros((2, 2))) is False


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "data", make_blobs(n_per_class=12))


def test_a_full_disk_at_a_write_of_a_fit_is_one_paragraph_and_resume_completes(folder, tmp_path, monkeypatch, capsys):
    assert main(["fit", str(folder), "--out", str(tmp_path / "warm"), *FIT]) == 0  # its feature cache written
    writes = _full_disk_at(monkeypatch, None)
    assert main(["fit", str(folder), "--out", str(tmp_path / "clean"), *FIT]) == 0
    total = writes[0]  # the run's own writes (a cache that fails only warns: not counted here)
    assert total >= 5
    for at in sorted({1, total // 2, total}):  # the config, a write in the middle, the last
        out = tmp_path / f"full-at-{at}"
        _full_disk_at(monkeypatch, at)
        capsys.readouterr()
        assert main(["fit", str(folder), "--out", str(out), *FIT]) == 2
        err = capsys.readouterr().err
        assert "no space left" in err and "Traceback" not in err and len(err.strip().splitlines()) == 2
        assert not [p for p in out.rglob("*.tmp")]
        monkeypatch.setattr(files, "_sync", os.fsync)  # space freed
        resumed = ["--resume"] if (out / "config.yaml").exists() else []
        assert main(["fit", str(folder), "--out", str(out), *FIT, *resumed]) == 0, at
        assert Run.open(out).require_finished().summary.to_dict()["test_accuracy"] is not None


def test_a_real_full_file_system_when_this_machine_can_mount_one(folder, tmp_path, capsys):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=300k tmpfs {mount} 2>/dev/null") != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount)")
    try:
        out = mount / "run"
        code = main(["fit", str(folder), "--out", str(out), *FIT, "--strategy", "scratch", "--scratch-model",
                     "resnet9", "--epochs", "1"])
        err = capsys.readouterr().err
        assert code == 2 and "no space left" in err and "Traceback" not in err, err
        assert not [p for p in out.rglob("*.tmp")]
        assert os.system(f"mount -o remount,size=64m {mount}") == 0  # space freed
        assert main(["fit", str(folder), "--out", str(out), *FIT, "--strategy", "scratch", "--scratch-model",
                     "resnet9", "--epochs", "1", "--resume"]) == 0
        assert Run.open(out).require_finished().finished
    finally:
        for _ in range(2):  # this process owns the run (start_run, then its first write): let the file system go
            run_lock.release(mount / "run")
        os.system(f"umount {mount} || umount -l {mount}")
