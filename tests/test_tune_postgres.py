"""Two tune workers share one study on a throw-away PostgreSQL server: the trials are split
between them, the total is exactly --trials, and none is lost or run twice.

The server runs from Debian's postgresql binaries (`make install` installs postgresql-15 where
it runs as root) in a temporary folder, on a free port, as the `postgres` user when we are root
(initdb refuses root). Where no server binary exists the test is skipped, saying why.
"""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import make_blobs, write_image_folder
from headstart.cli import main

# end to end with a real server; `make test` runs it (nothing deselects slow tests), or skips saying why
pytestmark = pytest.mark.slow


def _server_binaries() -> Path | None:
    found = shutil.which("pg_config")
    if found:
        try:
            bindir = Path(subprocess.run([found, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip())
            if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
                return bindir
        except (OSError, subprocess.SubprocessError):
            pass
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):  # Debian keeps them off PATH
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A throw-away PostgreSQL server: its URL, and stop/start for the tests of a lost server."""

    def __init__(self, bindir: Path, folder: Path, as_user: list[str]):
        self.bindir, self.folder, self.as_user = bindir, folder, as_user
        self.data, self.port = folder / "data", _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
                       check=check, capture_output=True, timeout=120)

    def init(self) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth=trust", "--no-sync"], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._pg_ctl("-l", str(self.folder / "server.log"), "-w", "-t", "60", "-o",
                     f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, check: bool = True) -> None:
        self._pg_ctl("-m", "immediate", "stop", check=check)  # as a crash or a pulled cable: no goodbye to clients


@pytest.fixture
def postgres_server():
    bindir = _server_binaries()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine: `make install` installs "
                    "Debian's postgresql-15 when run as root; elsewhere install a PostgreSQL server")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="headstart-pg-"))  # under /tmp: pytest's own folders are root-only
    if os.geteuid() == 0:  # initdb refuses root: run the server as postgres
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            pytest.skip("running as root and there is no `postgres` user to run the PostgreSQL server as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else []
        if not as_user:
            shutil.rmtree(folder)
            pytest.skip("running as root without runuser: cannot start the PostgreSQL server as postgres")
    server = _Server(bindir, folder, as_user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop(check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    return postgres_server.url


@pytest.fixture(autouse=True)
def _short_heartbeat(monkeypatch):
    """Workers (spawned: they inherit it) look at the study every second, not every five: a worker
    whose last trial is done waits that long for the other's, at the end of every study here."""
    monkeypatch.setenv("HEADSTART_TUNE_HEARTBEAT_SECONDS", "1")


TINY = ["--strategies", "probe", "--candidates", "tf_efficientnet_lite0:32,tf_efficientnet_lite0:40",
        "--train-per-class", "8", "--max-eval", "30", "--extract-engine", "torch"]


def _stored(url: str, study: str):
    import optuna

    return optuna.load_study(study_name=study, storage=url.replace("postgresql://", "postgresql+psycopg://"))


def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(tmp_path, postgres_url):
    import optuna

    data = write_image_folder(tmp_path / "blobs", make_blobs())
    run = tmp_path / "run"
    trials = 4
    assert main(["tune", str(data), "--trials", str(trials), "--out", str(run), "--storage", postgres_url,
                 "--study", "shared", "--workers", "2", *TINY]) == 0
    stored = _stored(postgres_url, "shared")
    assert len(stored.trials) == trials  # exactly the total: none run twice, none extra
    assert {t.state.name for t in stored.trials} <= {"COMPLETE", "PRUNED"}  # none lost
    assert sorted(t.number for t in stored.trials) == list(range(trials))
    folders = [t.user_attrs["run_dir"] for t in stored.trials]
    assert len(set(folders)) == trials and all((Path(f) / "config.yaml").exists() for f in folders)
    assert len({t.user_attrs["worker"] for t in stored.trials}) == 2  # both workers ran some
    written = json.loads((run / "tune.json").read_text())
    assert written["counts"]["complete"] + written["counts"]["pruned"] == trials
    assert (run / "best.yaml").exists()


def test_a_lost_server_stops_every_worker_cleanly_and_the_study_resumes_once_it_is_back(tmp_path, postgres_server):
    data = write_image_folder(tmp_path / "blobs", make_blobs())
    run, trials = tmp_path / "run", 2  # one a worker: each has one to lose
    command = [sys.executable, "-m", "headstart.cli", "tune", str(data), "--trials", str(trials), "--out", str(run),
               "--storage", postgres_server.url, "--study", "lost", "--workers", "2", *TINY]
    tune = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not list((run / "trials").glob("*/config.yaml")):  # a trial has started its fit
            assert tune.poll() is None and time.time() < deadline, "tune ended before its first trial"
            time.sleep(0.1)
        postgres_server.stop()
        _, stderr = tune.communicate(timeout=180)  # every worker stops: nothing waits for a server that is gone
    finally:
        if tune.poll() is None:
            tune.kill()
    assert tune.returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    for index in (0, 1):  # each worker: exit 2 (the command says which stopped) with its one line
        said = [line for line in stderr.splitlines() if line.startswith(f"tune-worker-{index}: ")]
        assert len(said) == 1 and "lost the connection to the PostgreSQL server at 127.0.0.1:" in said[0], stderr
    assert "headstart: error: lost the connection to the PostgreSQL server" in stderr, stderr
    hints = [line for line in stderr.splitlines() if line.startswith("  hint: ")]
    assert len(hints) == 1 and "start the server again and run the same command" in hints[0], stderr  # said once

    postgres_server.start()
    # the same command again, in this process (nothing here is killed: a third interpreter start
    # would only cost time); its workers are processes of their own, as before
    assert main(command[3:]) == 0
    stored = _stored(postgres_server.url, "lost")
    states = [t.state.name for t in stored.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == trials, states  # none lost, none counted twice
    assert set(states) <= {"COMPLETE", "PRUNED", "FAIL"}, states  # nothing left running
    rows = json.loads((run / "tune.json").read_text())["trials"]
    failed = [r["number"] for r in rows if r["state"] == "FAIL"]
    assert failed, "the lost server cut no trial short: the test stopped it too late"
    retries = [r["retry_of"] for r in rows if r["retry_of"] is not None]
    assert sorted(retries) == sorted(failed), rows  # every lost trial retried exactly once
    by_number = {r["number"]: r for r in rows}
    for r in rows:
        if r["retry_of"] is not None:  # counted once, with the lost attempt's settings where it had drawn them
            lost = by_number[r["retry_of"]]["params"]  # (a worker stopped between creating a trial and drawing)
            assert r["state"] in ("COMPLETE", "PRUNED") and (not lost or r["params"] == lost), rows
    folders = [r["run_dir"] for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    assert all((Path(f) / "config.yaml").exists() for f in folders)
    assert sorted(p.name for p in (run / "trials").iterdir()) == sorted(Path(f).name for f in folders)
