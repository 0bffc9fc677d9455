"""`Run`: the one reader of a run directory.

    run = Run.open(path).require_finished()
    run.kind, run.config, run.splits, run.summary, run.model_info, run.metrics, run.model()
    run.reload_data()  # its labelled data and split as it trained, with the labels it added

Every command that reads a run (predict, export, prune, explain, select, report, track, zoo
add, fit --from, fit --resume) goes through here, so "not a run" and "not finished" are said
one way, config.yaml is parsed once, and reloading a run's data cannot drift between commands.

This module sits at the bottom of the package and imports no torch: `predict --engine
onnxruntime` and `serve` read runs where PyTorch is not installed. What needs more is
registered from above, as model formats register with model_io: `.model()` loads through
model_io's formats (the modalities and the zoo register them), and `.reload_data()` through the
reloader the pipeline registers (`register_data_reloader`), since decoding data at the size
the run's model eats takes the modalities, the zoo and the strategies.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import HeadstartError
from .manifest import MANIFEST, verify
from .records import METRICS, read_metrics
from .run_lock import holder
from .summary import FitSummary, Summary, read_summary

CONFIG = "config.yaml"
SPLITS = "splits.json"
SUMMARY = "summary.json"
MODEL_INFO = "model.json"
WEIGHTS = "model.safetensors"
COMPARISON = "comparison.json"
LINEAGE = "continual.json"   # fit --from: the tasks a continued run learned (adapt/lineage.py)
ARMS = "arms"                # compare: one fit run per arm and seed

# What a run directory can be. The fit kinds hold a classifier, config.yaml and splits.json.
FIT, CONTINUED, PRUNED, STANDALONE = "fit", "continued", "pruned", "standalone"
PRETRAIN, COMPARE = "pretrain", "compare"
FIT_KINDS = (FIT, CONTINUED, PRUNED, STANDALONE)
_MARKERS = (CONFIG, SUMMARY, MODEL_INFO, METRICS, COMPARISON, ARMS)
_PRETRAINED_FORMAT = "headstart-pretrained-backbone"  # adapt/pretrain.py: a backbone, no head
_UNVERIFIED_HINT = ("copy the run again from where it was made, or re-run it: an unfinished run continues with "
                    "`--resume`, a finished one is made again with `headstart fit ... --out NEW`")
_DAMAGED_HINT = _UNVERIFIED_HINT + "; a file you edited on purpose: delete the run's manifest.json to read it unverified"
_OPEN_HINT = "pass a run folder: the --out of `headstart fit`, `compare`, `prune` or `pretrain`"


@dataclass
class RunData:
    """A run's labelled data reloaded as it trained: the data, its split (train with the labels
    the run added), and the --add-labels record (None when it added none)."""

    data: Any
    splits: Any
    added_labels: dict | None = None


_reloaders: list[Callable[["Run"], RunData]] = []


def register_data_reloader(reload: Callable[["Run"], RunData]) -> None:
    """The pipeline registers how a run's data is reloaded (its `load` and `add_labels` stages)."""
    _reloaders[:] = [reload]


class Run:
    """A run directory, read lazily and each file once. `Run(path)` reads whatever is there
    (a report of a half-written run still renders); `Run.open(path)` first checks it is a run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The run at `path`, or the one "not a run" refusal, whatever the command."""
        run = cls(path)
        if not run.path.is_dir():
            raise run._not_a_run("no such folder")
        if not any((run.path / marker).exists() for marker in _MARKERS):
            raise run._not_a_run(f"none of {', '.join(_MARKERS[:-1])} in it")
        return run

    def require_finished(self) -> Run:
        """This run, or the one "not finished" refusal: its closing record was never written.
        The closing record is parsed whole here (a damaged one is refused by name), so no
        command reads on from a run that only looks finished because the file is there."""
        closing = COMPARISON if self.kind == COMPARE else SUMMARY
        self._verified(closing)  # recorded, then lost or changed: damage, not an unfinished run
        if not self.finished:
            if (writer := holder(self.path)) is not None:  # run_lock: a live process writes it now
                raise HeadstartError(f"{self.path} is still being written: {writer} holds it",
                                     hint="wait for it to finish, then run this again")
            raise HeadstartError(f"{self.path} is an unfinished run: it has no {closing} (it was interrupted, or is "
                                 f"still running)",
                                 hint=f"`--resume` with `--out {self.path}` continues it; or pass a finished run")
        return self.require_intact(closing)

    def require_intact(self, *names: str) -> Run:
        """This run, or the one refusal naming the first of `names` (its records: config.yaml,
        splits.json, summary.json, metrics.jsonl, comparison.json) that is missing or does not
        parse whole. For the commands that draw on a finished run's records (report, zoo add):
        the manifest catches any change by checksum; without one (a run of an earlier version,
        or its manifest deleted) the parse is the check, so a damaged record is never drawn
        from half-read. metrics.jsonl is complete here: a torn last row is damage once the
        run has finished (a live run's torn row is skipped by `metrics`)."""
        for name in names:
            if not self._verified(name).is_file():
                raise HeadstartError(f"{self.path / name} is missing ({_RECORDS.get(name, 'a record of the run')})",
                                     hint=self._damaged_hint)
            _WHOLE.get(name, Run._json_object)(self, name)
        return self

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # -- what it is ----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Whether the run wrote its closing record (written last: the model is saved before it)."""
        return (self.path / (COMPARISON if self.kind == COMPARE else SUMMARY)).is_file()

    @property
    def started_at(self) -> float | None:
        """When it started (epoch seconds): its config.yaml is written before any training."""
        path = self.path / CONFIG
        return path.stat().st_mtime if path.is_file() else None

    @property
    def finished_at(self) -> float | None:
        """When it finished (epoch seconds): when its closing record was written."""
        path = self.path / (COMPARISON if self.kind == COMPARE else SUMMARY)
        return path.stat().st_mtime if path.is_file() else None

    @cached_property
    def kind(self) -> str:
        """compare, pretrain, standalone (a model with no backbone apart from its head, TF-IDF),
        pruned, continued (fit --from) or fit; an unfinished run is judged by what it wrote."""
        if (self.path / COMPARISON).exists() or ((self.path / ARMS).is_dir() and not (self.path / CONFIG).exists()):
            return COMPARE
        info = self._json_or_empty(MODEL_INFO)
        model_format = str(info.get("format", "")).split("/")[0]
        if self.recorded_config.get("command") == PRETRAIN or model_format == _PRETRAINED_FORMAT:
            return PRETRAIN
        if model_format and not model_format.endswith("-classifier"):
            return STANDALONE
        if info.get("pruned") or "prune" in self.recorded_config:
            return PRUNED
        if (self.path / LINEAGE).exists() or self.recorded_config.get("from_run"):
            return CONTINUED
        return FIT

    @property
    def name(self) -> str:
        return self.path.name

    # -- its records ---------------------------------------------------------------------------
    @cached_property
    def config(self):
        """The FitConfig the run trained with (a resumed or re-run fit starts from it)."""
        from .config import FitConfig

        if not (self.path / CONFIG).is_file():
            raise self._lacks(CONFIG, "the settings it trained with")
        self.require_intact(CONFIG)  # a cut that still parses would train or export with defaults
        return FitConfig.from_dict(self.recorded_config)

    @cached_property
    def recorded_config(self) -> dict:
        """config.yaml as written, every key (prune's and pretrain's own records too); {} if none."""
        try:
            recorded = yaml.safe_load(self.config_text or "")
        except yaml.YAMLError as e:
            raise self._damaged(CONFIG, f"it is not YAML: {_first_line(e)}") from e
        return recorded if isinstance(recorded, dict) else {}

    @cached_property
    def config_text(self) -> str | None:
        """config.yaml's text, as the report shows it; None if there is none."""
        path = self._verified(CONFIG)
        return path.read_text(errors="replace") if path.is_file() else None

    @cached_property
    def splits(self) -> dict:
        """splits.json: the seed and the train/val/test indices into the run's data."""
        if not (self.path / SPLITS).is_file():
            raise self._lacks(SPLITS, "the split it trained on")
        return self._json(SPLITS)

    @cached_property
    def summary(self) -> Summary:
        """summary.json in its schema; an empty FitSummary while the run has none (unfinished)."""
        if not (self.path / SUMMARY).is_file():
            return FitSummary()
        recorded = self._json(SUMMARY)
        if not isinstance(recorded, dict):
            raise self._not_a_run(f"its {SUMMARY} is not a JSON object")
        return read_summary(recorded)

    @cached_property
    def model_info(self) -> dict:
        """model.json (model_io's record of the model); refuses a run without its model files."""
        from .model_io import read_model_meta

        return read_model_meta(self.path)

    @cached_property
    def comparison(self) -> dict:
        """comparison.json of a compare run; {} where there is none."""
        return self._json_or_empty(COMPARISON)

    @property
    def metrics(self) -> list[dict]:
        """metrics.jsonl's rows (records.read_metrics); read each time, as a live run appends
        (verified once its closing record has recorded it)."""
        self._verified(METRICS)
        return read_metrics(self.path)

    def arms(self) -> list[Run]:
        """A compare run's arms (one fit run per arm and seed), in folder order."""
        return [Run(d) for d in sorted((self.path / ARMS).glob("*")) if d.is_dir()]

    # -- what it made --------------------------------------------------------------------------
    def model(self):
        """The trained model, rebuilt from model.json and model.safetensors (never a pickle).
        Imports torch: the formats are registered by headstart.modalities and headstart.zoo."""
        from .model_io import load_model

        return load_model(self.path, self.model_info)[0]

    def reload_data(self, why: str = "this command reads the run's data") -> RunData:
        """The run's labelled data and split, reloaded as it trained, always with the labels it
        added (--add-labels). `why` opens the refusal when the data is not where config.yaml says."""
        if not _reloaders:
            raise RuntimeError("no data reloader registered: import headstart.pipeline before Run.reload_data()")
        config, splits = self.config, self.splits  # a run without them is refused as such, not as missing data
        try:
            return _reloaders[0](self)
        except (HeadstartError, OSError, KeyError, ValueError) as e:
            raise HeadstartError(f"{why}, and {config.data} (the run's data) could not be loaded: {e}",
                                 hint=f"run this where the run's data is (its {CONFIG} names it)") from e

    # -- reading -------------------------------------------------------------------------------
    def _verified(self, name: str) -> Path:
        """RUN/name, refused by name if it is missing or damaged since the run recorded it (manifest.py)."""
        verify(self.path, name, hint=_DAMAGED_HINT)
        return self.path / name

    def _json(self, name: str) -> Any:
        try:
            return json.loads(self._verified(name).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise self._damaged(name, f"it is not JSON: {_first_line(e)}") from e

    def _json_object(self, name: str) -> None:
        if not isinstance(self._json(name), dict):
            raise self._damaged(name, "it is not a JSON object")

    def _whole_config(self, name: str) -> None:
        text = self._text(name)
        try:  # yaml.safe_dump ends every file with a newline: a file cut short usually lacks it
            recorded = yaml.safe_load(text) if text.endswith("\n") else None
        except yaml.YAMLError as e:
            raise self._damaged(name, f"it is not YAML: {_first_line(e)}") from e
        if not isinstance(recorded, dict):
            raise self._damaged(name, "it is not the settings headstart writes (cut short, or not YAML)")

    def _whole_metrics(self, name: str) -> None:
        text = self._text(name)
        lines = text.splitlines()
        torn = next((n for n, line in enumerate(lines, 1) if not _is_json_object(line)), None)
        if torn is not None or not lines or not text.endswith("\n"):
            where = f"row {torn} is not a JSON object" if torn else "its last row is cut short" if lines else "no rows"
            raise self._damaged(name, f"{where}, in a finished run")

    def _text(self, name: str) -> str:
        try:
            return self._verified(name).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise self._damaged(name, f"it is not text: {_first_line(e)}") from e

    @property
    def _damaged_hint(self) -> str:
        return _DAMAGED_HINT if (self.path / MANIFEST).is_file() else _UNVERIFIED_HINT

    def _damaged(self, name: str, why: str) -> HeadstartError:
        return HeadstartError(f"{self.path / name} is damaged ({why})", hint=self._damaged_hint)

    def _json_or_empty(self, name: str) -> dict:
        """A record that may be missing or damaged, for deciding what the run is."""
        try:
            found = self._json(name) if (self.path / name).is_file() else {}
        except HeadstartError:
            return {}
        return found if isinstance(found, dict) else {}

    def _not_a_run(self, why: str) -> HeadstartError:
        return HeadstartError(f"{self.path} is not a headstart run ({why})", hint=_OPEN_HINT)

    def _lacks(self, name: str, what: str) -> HeadstartError:
        return HeadstartError(f"{self.path} has no {name} ({what}): it is a {self.kind} run, not a fit",
                              hint="pass the --out folder of a `headstart fit` run") if self.kind not in FIT_KINDS \
            else HeadstartError(f"{self.path} has no {name} ({what}): the run is damaged",
                                hint="pass a finished run; `headstart fit ... --out NEW` makes one")


# What each record is, for "RUN/NAME is missing (...)", and how Run.require_intact reads it whole.
_RECORDS = {CONFIG: "the settings it ran with", SPLITS: "the split it trained on", SUMMARY: "its closing record",
            METRICS: "its evaluations", COMPARISON: "the comparison's closing record"}
_WHOLE: dict[str, Callable[[Run, str], None]] = {CONFIG: Run._whole_config, METRICS: Run._whole_metrics}


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]
