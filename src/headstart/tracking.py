"""Experiment tracking: a finished run directory, logged to TensorBoard or MLflow.

Trackers read the run directory once the run is written, never the training loop: config.yaml
-> params; metrics.jsonl's validation rows -> the curve (val_accuracy, val_loss, train_seconds
by step, and val_accuracy_vs_train_ms stepped by training milliseconds, as a probe's
evaluations share step 0); summary.json -> final metrics; report.html and the files it shows
-> artifacts; the model files -> the model artifact. So `headstart track RUN` logs any finished
run again, and a tracking failure loses nothing. A backend is one `@register_tracker` class
whose library is imported only when asked. A comparison is a parent run opened before its
arms; each arm, an ordinary fit, nests under it through the settings `arm_settings` gives it.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import time
import weakref
from unittest import mock
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote

from .errors import HeadstartError
from .files import read_json, write_json
from .log import is_main_process, say
from .records import METRICS
from .run import COMPARE, COMPARISON, CONFIG, SUMMARY, Run
from .registry import Registry

INSTALL_HINT = "pip install 'headstart[track]'"
COMPARISON_METRICS = ("target_accuracy", "speedup", "time_saved_pct", "noise", "decode_seconds")
ARM_METRICS = ("best_val_accuracy", "test_accuracy", "train_seconds", "time_to_target_seconds")
# what `predict` reads back (model_io's formats): the model artifact
MODEL_FILES = ("model.json", "model.safetensors", "vocabulary.json", "tokenizer")
RECORD_FILES = (CONFIG, SUMMARY, METRICS, COMPARISON)  # the run's records, logged as artifacts

TRACKERS: Registry[type[Tracker]] = Registry("tracker")


def register_tracker(name: str):
    def add(cls):
        cls.name = name
        return TRACKERS.add(name, cls)
    return add


@dataclass
class RunRecord:
    """What a finished run directory says, in the terms every tracker logs."""

    dir: Path
    name: str
    params: dict[str, str | int | float | bool]
    tags: dict[str, str]
    final: dict[str, float]
    curve: list[dict] = field(default_factory=list)   # metrics.jsonl's validation rows
    final_step: int = 0
    started: float = 0.0                              # epoch seconds
    ended: float = 0.0
    artifacts: list[tuple[Path, str]] = field(default_factory=list)  # (file, folder in the artifact store)

    @classmethod
    def of_fit(cls, run_dir: str | Path) -> RunRecord:
        run = Run.open(run_dir).require_finished()
        run_dir, summary, rows = run.path, run.summary, run.metrics
        ended = run.finished_at
        tags = {"strategy": summary.strategy, "backbone": summary.backbone, "weights": summary.weights,
                "data": summary.data, "modality": summary.modality}
        final = {"test_accuracy": summary.test_accuracy, "macro_f1": summary.macro_f1,
                 "balanced_accuracy": summary.balanced_accuracy, "best_val_accuracy": summary.best_val_accuracy,
                 "train_seconds": summary.train_seconds, "wall_seconds": summary.wall_seconds}
        model = [(p, "model") for name in MODEL_FILES if (p := run_dir / name).exists()]
        return cls(dir=run_dir, name=run_dir.name, params=flatten(run.recorded_config),
                   tags={**{k: str(v) for k, v in tags.items() if v}, "headstart.kind": "fit"},
                   final={k: float(v) for k, v in final.items() if v is not None},
                   curve=[r for r in rows if r["split"] == "val"],
                   final_step=max((r["step"] for r in rows), default=0),
                   started=ended - float(summary.wall_seconds or 0), ended=ended,
                   artifacts=_report_files(run_dir) + model)

    @classmethod
    def of_comparison(cls, run_dir: str | Path) -> RunRecord:
        run = Run.open(run_dir).require_finished()
        run_dir, c = run.path, run.comparison
        final = {k: float(c[k]) for k in COMPARISON_METRICS if c.get(k) is not None}
        final.update({f"{arm['name'].replace(':', '-')}.{k}": float(arm[k]) for arm in c["arms"]
                      for k in ARM_METRICS if arm.get(k) is not None})
        params = {"data": c["data"], "arms": ",".join(a["name"] for a in c["arms"]),
                  **{k: c.get(k) for k in ("seeds", "budget_seconds_per_arm", "target_source", "baseline_arm",
                                           "best_arm")}, **flatten(c.get("machine", {}), "machine.")}
        tags = {"headstart.kind": "comparison", "data": str(c["data"]),
                **{k: str(c[k]) for k in ("verdict", "verdict_sentence", "best_arm") if c.get(k)}}
        ended = run.finished_at
        starts = [t for arm in run.arms() if (t := arm.started_at) is not None]
        return cls(dir=run_dir, name=run_dir.name, params=flatten(params), tags=tags, final=final,
                   started=min(starts, default=ended), ended=ended, artifacts=_report_files(run_dir))


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts -> 'a.b' keys; values a tracker can hold (lists as JSON, None as 'None')."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(list(value)) if isinstance(value, (list, tuple)) else \
                value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def _report_files(run_dir: Path) -> list[tuple[Path, str]]:
    """The run's records, its figures, report.html and every file the page shows (explanations),
    each with its folder relative to the run directory, so the page still finds them."""
    run = run_dir.resolve()
    found = [run / name for name in (*RECORD_FILES, "report.html")] + sorted(run.glob("*.png"))
    if (run / "report.html").exists():
        found += [(run / unquote(ref)).resolve() for ref in
                  re.findall(r'(?:src|href)="([^":#?]+)"', (run / "report.html").read_text(errors="replace"))]
    found = [p for p in dict.fromkeys(found) if p.is_file() and p.is_relative_to(run)]
    return [(p, "" if p.parent == run else p.parent.relative_to(run).as_posix()) for p in found]


class Tracker:
    """One backend. uri: where its logs go (None: its default beside `home`, the run directory);
    parent: the id of the run this one nests under (a backend without runs ignores it)."""

    name = ""
    module = ""  # the library it needs, imported on first use

    def __init__(self, uri: str | None, experiment: str, parent: str | None, home: Path):
        self.uri, self.experiment, self.parent, self.home = uri, experiment or "headstart", parent, Path(home)

    def library(self):
        try:
            return importlib.import_module(self.module)
        except ImportError as e:
            raise HeadstartError(f"--track {self.name} needs the {self.module} package ({e})",
                                 hint=f"{INSTALL_HINT} (or pip install {self.module})") from None

    def check(self) -> None:
        """Before training: the library imports and the destination answers."""
        self.library()

    # nest(name) -> dict: open a comparison's parent run; returns the FitConfig settings its arms take
    # log(record) -> dict: log a finished run (into the parent nest opened, if any); where it went
    # and how to open it (kept in RUN/tracking.json)


def tracker_for(settings, home: str | Path) -> Tracker:
    """The tracker a config's track settings name (track, track_uri, track_experiment, track_parent)."""
    return TRACKERS.get(settings.track)(settings.track_uri, settings.track_experiment, settings.track_parent, home)


def check_tracking(config) -> None:
    """At the start of a fit: a missing library or an unreachable server fails before training."""
    if config.track and is_main_process():
        tracker_for(config, config.out or ".").check()


def track_run(config, run_dir: str | Path) -> dict | None:
    """At the end of a fit (the run directory is written): log it where config.track says."""
    if not config.track or not is_main_process():
        return None
    return _logged(tracker_for(config, run_dir), lambda: RunRecord.of_fit(run_dir), Path(run_dir))


def _logged(tracker: Tracker, record, run_dir: Path) -> dict:
    try:
        logged = tracker.log(record())
    except Exception as e:  # noqa: BLE001  (the run is on disk: say so, and how to log it again)
        cause = e.message if isinstance(e, HeadstartError) else f"{type(e).__name__}: {e}"
        uri = f" --uri {tracker.uri}" if tracker.uri else ""
        raise HeadstartError(f"{run_dir} is complete, but logging it to {tracker.name} failed: {cause}",
                             hint=f"fix the cause, then log it again with `headstart track {run_dir} "
                                  f"--to {tracker.name}{uri}`") from e
    done = read_json(run_dir / "tracking.json") if (run_dir / "tracking.json").exists() else {}
    write_json(run_dir / "tracking.json", {**done, tracker.name: logged})
    say(f"logged to {tracker.name}: " + ", ".join(f"{k} {v}" for k, v in logged.items() if k != "files"))
    return logged


class Comparison:
    """The tracked run of a comparison, opened before its arms so that they nest under it."""

    def __init__(self, tracker: Tracker | None, run_dir: Path):
        self.tracker, self.run_dir = tracker, Path(run_dir)
        self.arm_settings: dict = {}
        if tracker is not None:
            tracker.check()
            try:
                self.arm_settings = tracker.nest(self.run_dir.name)
            except Exception as e:  # noqa: BLE001  (nothing has trained yet)
                raise HeadstartError(f"could not start the comparison's {tracker.name} run: {type(e).__name__}: {e}",
                                     hint="check --track-uri, or run without --track") from e

    def finish(self) -> dict | None:
        """After comparison.json and the report are written: log the comparison itself."""
        return self.tracker and _logged(self.tracker, lambda: RunRecord.of_comparison(self.run_dir), self.run_dir)


def start_comparison(config, run_dir: str | Path) -> Comparison:
    """config: the comparison's shared FitConfig; no tracking asked -> a comparison that logs nothing."""
    tracked = config.track and is_main_process()
    return Comparison(tracker_for(config, run_dir) if tracked else None, Path(run_dir))


def track_existing(run_dir: str | Path, to: str, uri: str | None = None, experiment: str | None = None) -> list[dict]:
    """`headstart track RUN`: log a finished fit, or a comparison with its arms nested under it."""
    from .config import FitConfig

    run = Run.open(run_dir).require_finished()
    settings = FitConfig(data="", track=to, track_uri=uri, track_experiment=experiment or "headstart")
    if run.kind == COMPARE:
        comparison = Comparison(tracker_for(settings, run.path), run.path)
        logged = [track_run(replace(settings, **comparison.arm_settings), arm.path) for arm in run.arms()
                  if arm.finished]
        return [*logged, comparison.finish()]
    tracker_for(settings, run.path).check()
    return [track_run(settings, run.path)]


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _end_run(uri: str, run_id: str, status: str) -> None:
    """A run that failed, or a parent its comparison never finished, ends FAILED: one quick try,
    so that a server gone away does not hold the process for minutes of retries."""
    try:
        from mlflow.tracking import MlflowClient
        with mock.patch.dict(os.environ, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
            MlflowClient(tracking_uri=uri).set_terminated(run_id, status)
    except Exception:  # noqa: BLE001  (best effort)
        pass


@register_tracker("mlflow")
class MLflowTracker(Tracker):
    """An MLflow store: a local folder (an SQLite database and an artifacts folder in it; MLflow 3
    refuses its old file store), any tracking URI (sqlite:///x.db, postgresql://...) or a
    tracking server's http(s) URL, passed through. Default: RUN/../mlruns."""

    module = "mlflow"

    def __init__(self, uri, experiment, parent, home):
        super().__init__(uri, experiment, parent, home)
        if uri is None or not re.match(r"^[A-Za-z][\w+.-]*:|^databricks$", uri):
            path = Path(uri) if uri else self.home.absolute().parent / "mlruns"
            self.uri = f"sqlite:///{(path if path.suffix == '.db' else path / 'mlflow.db').absolute()}"
        # a local store's folder: its database and (for new experiments) its artifacts
        local = self.uri.startswith("sqlite:///")
        self.folder = Path(self.uri.removeprefix("sqlite:///")).absolute().parent if local else None
        self.run_id: str | None = None  # the parent run `nest` opened
        self._unfinished = None

    def check(self) -> None:
        self.library()
        if self.uri.startswith(("http://", "https://")):
            import urllib.error
            import urllib.request
            try:
                urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=10).close()
            except urllib.error.HTTPError:
                pass  # it answers (a proxy may not know /health)
            except OSError as e:  # URLError is one
                raise HeadstartError(f"cannot reach the MLflow server at {self.uri}: {getattr(e, 'reason', e)}",
                                     hint="start it (mlflow server --port 5000), or check --track-uri") from None

    def _client(self):
        self.library()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        from mlflow.tracking import MlflowClient
        return MlflowClient(tracking_uri=self.uri)

    def _experiment(self, client) -> str:
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        # a local store keeps its artifacts beside its database (MLflow's own default is ./mlruns)
        where = (self.folder / "artifacts").as_uri() if self.folder is not None else None
        return client.create_experiment(self.experiment, artifact_location=where)

    def _create(self, client, name: str, tags: dict, start: float) -> str:
        tags = {**tags, **({"mlflow.parentRunId": self.parent} if self.parent else {})}
        return client.create_run(self._experiment(client), run_name=name, tags=tags,
                                 start_time=_ms(start)).info.run_id

    def nest(self, name: str) -> dict:
        self.run_id = self._create(self._client(), name, {"headstart.kind": "comparison"}, time.time())
        self._unfinished = weakref.finalize(self, _end_run, self.uri, self.run_id, "FAILED")
        return {"track_uri": self.uri, "track_experiment": self.experiment, "track_parent": self.run_id}

    def log(self, record: RunRecord) -> dict:
        from mlflow.entities import Metric, Param, RunTag

        client = self._client()
        run_id = self.run_id or self._create(client, record.name, record.tags, record.started)
        try:
            params = [Param(k, str(v)[:6000]) for k, v in record.params.items()]
            for i in range(0, len(params), 100):
                client.log_batch(run_id, params=params[i:i + 100])
            client.log_batch(run_id, tags=[RunTag(k, v[:8000]) for k, v in record.tags.items()])
            metrics = [Metric(key, float(value), _ms(record.started + row["wall_seconds"]), step)
                       for row in record.curve for key, value, step in _curve_points(row) if value is not None]
            metrics += [Metric(k, v, _ms(record.ended), record.final_step) for k, v in record.final.items()]
            for i in range(0, len(metrics), 1000):
                client.log_batch(run_id, metrics=metrics[i:i + 1000])
            for path, folder in record.artifacts:
                if path.is_dir():
                    client.log_artifacts(run_id, str(path), artifact_path=f"{folder}/{path.name}".lstrip("/"))
                else:
                    client.log_artifact(run_id, str(path), artifact_path=folder or None)
        except BaseException:
            _end_run(self.uri, run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED", end_time=_ms(record.ended) if not self.run_id else None)
        if self._unfinished is not None:
            self._unfinished.detach()
        return {"run_id": run_id, "experiment": self.experiment, "uri": self.uri,
                **({"parent_run_id": self.parent} if self.parent else {}),
                **({"open": f"mlflow ui --backend-store-uri {self.uri}"} if self.folder else {})}


def _curve_points(row: dict):  # (metric, value, step) of one validation row
    yield "val_accuracy", row["accuracy"], row["step"]
    yield "val_loss", row.get("loss"), row["step"]
    yield "train_seconds", row["train_seconds"], row["step"]
    yield "val_accuracy_vs_train_ms", row["accuracy"], _ms(row["train_seconds"])


@register_tracker("tensorboard")
class TensorBoardTracker(Tracker):
    """A TensorBoard log folder (default RUN/tensorboard); each run writes <logdir>/<run name>.
    TensorBoard keeps no files, so the report and the model are copied (hard-linked where the
    disk allows) into <logdir>/<run name>/files, and a text entry says so."""

    module = "tensorboard"

    def __init__(self, uri, experiment, parent, home):
        super().__init__(uri, experiment, parent, home)
        self.logdir = Path(uri) if uri else self.home / "tensorboard"

    def nest(self, name: str) -> dict:
        # arms write <logdir>/<comparison>/<arm>: side by side, beside the comparison's own scalars
        return {"track_uri": str(self.logdir / name)}

    def log(self, record: RunRecord) -> dict:
        self.library()
        import numpy as np
        from PIL import Image
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        folder = self.logdir / record.name
        files = folder / "files"
        with SummaryWriter(log_dir=str(folder)) as writer:
            table = "\n".join(f"| {k} | {v} |" for k, v in {**record.tags, **record.params}.items())
            writer.add_text("params", "| setting | value |\n|---|---|\n" + table, record.final_step, record.ended)
            for row in record.curve:
                for key, value, step in _curve_points(row):
                    if value is not None:
                        writer.add_scalar(key, value, step, walltime=record.started + row["wall_seconds"])
            for key, value in record.final.items():
                writer.add_scalar(key, value, record.final_step, walltime=record.ended)
            for png in sorted(record.dir.glob("*.png")):  # the report's figures
                image = np.asarray(Image.open(png).convert("RGB"))
                writer.add_image(f"figures/{png.stem}", image, record.final_step, walltime=record.ended,
                                 dataformats="HWC")
            copied = [_link_or_copy(path, files / folder_ / path.name) for path, folder_ in record.artifacts]
            writer.add_text("files", f"TensorBoard keeps no files: the report and the model are copied to "
                                     f"`{files}`: " + ", ".join(f"`{p.relative_to(files)}`" for p in copied),
                            record.final_step, record.ended)
            if record.final:  # the HPARAMS tab: settings beside the final metrics logged above, run by run
                chosen = {k: v for k, v in record.params.items() if len(str(v)) <= 200}
                for entry in hparams(chosen, record.final):
                    writer._get_file_writer().add_summary(entry, record.final_step)
        return {"logdir": str(folder), "files": str(files), "open": f"tensorboard --logdir {self.logdir}"}


def _link_or_copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    return target
