"""Where a tune study lives: SQLite in the run folder, or a PostgreSQL server that workers on
several machines share (Optuna's RDBStorage over SQLAlchemy and psycopg 3). No scheduler of
our own: every worker asks the database for its next trial.

Lost trials: a worker records a heartbeat every HEARTBEAT_SECONDS while a trial runs; a RUNNING
trial whose heartbeat is older than GRACE_SECONDS belongs to a killed worker, and is marked FAIL
and its parameters enqueued again (Optuna's RetryHeartbeatStaleTrialCallback), so no trial is
lost. An SQLite study belongs to one command (tune refuses several workers on it), so a RUNNING
trial found when it starts was left by a killed run and is recovered at once; on a shared
study, so is a RUNNING trial whose worker ran on this machine and is gone (no need to wait out
the grace period after a crash or a lost server).

A lost trial is retried once on purpose, with its own settings, and counted once: its first
attempt stays in the study as FAIL (never counted) and the retry, which names it
(`failed_trial`), is the one that counts. Not retrying it would lose the settings the sampler
chose; running it as a fresh draw would not be reproducible.

A shared study's server that goes away mid-study (stopped, restarted, unreachable) stops every
worker with one clear message (`guard`): the trials that were running are then lost trials, and
the same command, run again once the server is back, retries them and continues the count.
"""
from __future__ import annotations

import hashlib
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import HeadstartError

# also how long a worker with nothing to start waits before it looks at the study again; the tests of
# a shared study shorten it (HEADSTART_TUNE_HEARTBEAT_SECONDS) so as not to pay that wait at each end
HEARTBEAT_SECONDS = float(os.environ.get("HEADSTART_TUNE_HEARTBEAT_SECONDS") or 5)
GRACE_SECONDS = 20
MAX_RETRY = 2  # a trial that kills its worker twice is not tried a third time
CONNECT_TIMEOUT_SECONDS = 3
_SCHEMES = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
            "postgresql+psycopg": "postgresql+psycopg", "sqlite": "sqlite"}


def storage_url(storage: str | None, run_dir: Path) -> str:
    """The SQLAlchemy URL: RUN/study.db by default; postgresql:// is read as psycopg 3's."""
    if not storage:
        return f"sqlite:///{(Path(run_dir) / 'study.db').absolute()}"
    scheme, sep, rest = storage.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise HeadstartError(f"cannot use the storage '{storage}'",
                             hint="give postgresql://USER@HOST:PORT/DB (several workers share one study), or "
                                  "leave --storage out for SQLite in the run folder")
    return f"{_SCHEMES[scheme]}://{rest}"


def is_shared(url: str) -> bool:
    return not url.startswith("sqlite")


def _conninfo(url: str) -> tuple[str, str]:
    """(psycopg's conninfo, "host:port" in words) of a PostgreSQL SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host") or "localhost"
    where = f"{host}:{parsed.port or parsed.query.get('port') or 5432}"
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False), where


def check_server(url: str) -> None:
    """Connect once, briefly, before anything is created: an unreachable server is a clear
    error naming where it looked, not a traceback from inside SQLAlchemy minutes later."""
    if not is_shared(url):
        return
    import psycopg

    conninfo, where = _conninfo(url)
    try:
        psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS).close()
    except psycopg.Error as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise HeadstartError(f"cannot reach the PostgreSQL server at {where}: {reason}",
                             hint="start one (Debian: apt-get install postgresql-15 && pg_ctlcluster 15 main start; "
                                  "or docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres), create "
                                  "the database, and check USER@HOST:PORT/DB in --storage") from None


def lost_connection(error: BaseException) -> bool:
    """Whether `error`, or an error it arose from, is the database connection failing (Optuna
    re-raises a failed write from inside its own clean-up, so the cause can be a few links down)."""
    import psycopg
    from sqlalchemy.exc import InterfaceError, OperationalError

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


@contextmanager
def guard(url: str) -> Iterator[None]:
    """A shared study's server lost mid-study is a HeadstartError that says what to do, not a
    traceback from inside SQLAlchemy."""
    try:
        yield
    except HeadstartError:
        raise
    except Exception as e:
        if not (is_shared(url) and lost_connection(e)):
            raise
        where = _conninfo(url)[1]
        raise HeadstartError(
            f"lost the connection to the PostgreSQL server at {where}: {_reason(e)}; the study stopped",
            hint="start the server again and run the same command (same --storage and --study): the study "
                 "continues its count, and a trial cut short is retried once with its settings") from None


def _reason(error: BaseException) -> str:
    while error.__cause__ or error.__context__:
        if lost_connection(error) and not lost_connection(error.__cause__ or error.__context__):
            break
        error = error.__cause__ or error.__context__
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def _storage_class():
    from optuna.storages import RDBStorage

    class Storage(RDBStorage):
        def record_heartbeat(self, trial_id: int) -> None:
            # runs in Optuna's heartbeat thread: a lost server must not print that thread's
            # traceback; the trial's next write stops the worker with a clear message, and a
            # missed heartbeat only marks the trial lost sooner (which it is)
            try:
                super().record_heartbeat(trial_id)
            except Exception as e:
                if not lost_connection(e):
                    raise

    return Storage


def open_storage(url: str):
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    engine = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS}} \
        if is_shared(url) else {}
    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # headstart says what matters itself
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9; we rely on them knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _storage_class()(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                          grace_period=GRACE_SECONDS,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))


def recover_lost_trials(study, url: str) -> list[int]:
    """Mark the trials killed workers left RUNNING as FAIL and enqueue their parameters again,
    once. Shared storage: those whose heartbeat is stale, and those of a worker on this machine
    that is gone. SQLite: every RUNNING one (this command is the study's only user). Returns
    the numbers recovered."""
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    before = {t.number for t in running}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if is_shared(url):
            fail_stale_trials(study)
            lost = [t for t in running if _gone_from_here(t.user_attrs.get("worker"))]
        else:
            lost = running
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        for trial in lost:
            # no public call fails a trial by number; the storage's own call is what
            # fail_stale_trials uses. A trial failed meanwhile (by fail_stale_trials, or by
            # another worker) is left as it is: it is retried once, not twice.
            try:
                failed = study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                failed = False
            if failed:
                retry(study, trial)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(before - after)


def _gone_from_here(worker: str | None) -> bool:
    """Whether a trial's worker ("host/pid") ran on this machine and has ended."""
    host, _, pid = (worker or "").rpartition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, someone else's
        return False
    return False


class Reservation:
    """Held while a worker counts the study's trials and starts the next: two workers counting at
    once would both see room for the last trial, and the study would run one too many. On
    PostgreSQL a session advisory lock; an SQLite study has one worker, so nothing to hold.
    The trial releases it as soon as it exists (it then counts for everyone)."""

    def __init__(self, url: str, study_name: str):
        self.url, self.conn = url, None
        self.key = int.from_bytes(hashlib.sha1(f"headstart-tune:{study_name}".encode()).digest()[:8], "big",
                                  signed=True)

    def acquire(self) -> None:
        if is_shared(self.url) and self.conn is None:
            import psycopg

            self.conn = psycopg.connect(_conninfo(self.url)[0], autocommit=True,
                                        connect_timeout=CONNECT_TIMEOUT_SECONDS)
            self.conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            finally:
                self.conn.close()
                self.conn = None

    @contextmanager
    def held(self) -> Iterator["Reservation"]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()
