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
import tempfile
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


@pytest.fixture
def postgres_url():
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
    data, port = folder / "data", _free_port()
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "--no-sync"], check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w",
                        "-t", "60", "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                        "start"], check=True, capture_output=True, timeout=120)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(tmp_path, postgres_url):
    import optuna

    data = write_image_folder(tmp_path / "blobs", make_blobs())
    run = tmp_path / "run"
    trials = 4
    assert main(["tune", str(data), "--trials", str(trials), "--out", str(run), "--storage", postgres_url,
                 "--study", "shared", "--workers", "2", "--strategies", "probe",
                 "--candidates", "tf_efficientnet_lite0:32,tf_efficientnet_lite0:40", "--train-per-class", "8",
                 "--max-eval", "30", "--extract-engine", "torch"]) == 0
    stored = optuna.load_study(study_name="shared", storage=postgres_url.replace("postgresql://",
                                                                                  "postgresql+psycopg://"))
    assert len(stored.trials) == trials  # exactly the total: none run twice, none extra
    assert {t.state.name for t in stored.trials} <= {"COMPLETE", "PRUNED"}  # none lost
    assert sorted(t.number for t in stored.trials) == list(range(trials))
    folders = [t.user_attrs["run_dir"] for t in stored.trials]
    assert len(set(folders)) == trials and all((Path(f) / "config.yaml").exists() for f in folders)
    assert len({t.user_attrs["worker"] for t in stored.trials}) == 2  # both workers ran some
    written = json.loads((run / "tune.json").read_text())
    assert written["counts"]["complete"] + written["counts"]["pruned"] == trials
    assert (run / "best.yaml").exists()
