"""summary.json, declared: what a finished run says about itself, field by field.

Why a schema: the pipeline, the strategies, adapt/, prune and compare used to merge whatever
they had into one dict, and cli, report, tracking and compare read it back by string keys, so
a misspelt key read as "absent" instead of failing. Here every figure the code reads is a
declared, typed field; a figure only one strategy or modality records (probe_C, tfidf_vocabulary,
truncated_texts, ...) lives in `extras`, a mapping kept flat on disk.

On disk nothing moves: `to_dict()` writes the same flat keys as before plus `schema_version`.
A field that is None is left out, as a section nobody recorded always was ("balance" only when
balancing), except the figures every fit writes (`always`), which stay even when None. Old
summaries (no version) parse into the schema: unknown keys are kept in `extras`, missing ones
take their defaults, and `schema_version` says 0.

Inside the package, code reads attributes (`summary.test_accuracy`). A summary is also a
read-only Mapping of its on-disk keys, for the Python API's users and scripts that have always
read `result.summary["test_accuracy"]`; that view is exactly what `to_dict()` writes.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterator, Union

SCHEMA_VERSION = 1

JSONValue = Union[None, bool, int, float, str, list, dict]

# keys of the on-disk form that are not fields of the record
_BOOKKEEPING = ("schema_version", "extras")


def _always(default=None, factory=None, key: str | None = None):
    """A figure every run of this kind writes, even when it is None (readers index it). `key`:
    its name on disk, where that name would shadow a Mapping method ("items")."""
    meta = {"always": True, **({"key": key} if key else {})}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _key(f) -> str:
    return f.metadata.get("key", f.name)


@dataclass
class _Record(Mapping):
    """What every summary shares: the version, the extras, the on-disk form and the Mapping view."""

    schema_version: int = SCHEMA_VERSION  # of the summary as read (0: written before versions)
    extras: dict[str, JSONValue] = field(default_factory=dict)  # figures the schema does not declare

    kind: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, recorded: Mapping | None):
        """Parse a summary.json object: declared keys into fields, the rest into extras."""
        recorded = dict(recorded or {})
        names = cls._field_names()
        known = {names[k]: v for k, v in recorded.items() if k in names}
        extras = {k: v for k, v in recorded.items() if k not in names and k != "schema_version"}
        version = recorded.get("schema_version", 0)
        return cls(**known, schema_version=version if isinstance(version, int) else 0, extras=extras)

    @classmethod
    def _field_names(cls) -> dict[str, str]:
        """On-disk key -> field name, for the declared figures."""
        return {_key(f): f.name for f in fields(cls) if f.name not in _BOOKKEEPING}

    def to_dict(self) -> dict[str, JSONValue]:
        """The on-disk form: flat keys, this schema's version, None sections left out."""
        out: dict[str, JSONValue] = {"schema_version": SCHEMA_VERSION}
        for f in fields(self):
            if f.name in _BOOKKEEPING:
                continue
            value = getattr(self, f.name)
            if value is not None or f.metadata.get("always"):
                out[_key(f)] = value
        out.update(self.extras)
        return out

    def add(self, figures: Mapping[str, Any]) -> None:
        """Merge figures in: declared ones set their field, the others join `extras` (what a
        strategy, a modality or a post-fit step returns is a plain mapping)."""
        names = self._field_names()
        for key, value in figures.items():
            if key in names:
                setattr(self, names[key], value)
            elif key != "schema_version":
                self.extras[key] = value

    # -- the read-only Mapping of the on-disk keys --------------------------------------------
    def __getitem__(self, key: str) -> JSONValue:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()


@dataclass
class FitSummary(_Record):
    """A fit run's summary (fit, compare's arms, prune, fit --from, fit --adapt)."""

    kind: ClassVar[str] = "fit"

    # what ran
    strategy: str | None = _always()
    backbone: str | None = _always()
    weights: str | None = _always()
    input_size: int | None = _always()    # px or tokens: `words["input_unit"]` says which
    data: str | None = _always()
    classes: list[str] = _always(factory=list)
    modality: str | None = None
    words: dict[str, str] | None = None     # the modality's words for the report ("px", "image")
    device: str | None = _always()
    processes: int | None = _always()

    # how well: the test split, once, after training
    test_accuracy: float | None = _always()
    macro_f1: float | None = _always()
    balanced_accuracy: float | None = _always()
    test_loss: float | None = _always()
    best_val_accuracy: float | None = _always()
    delivered: str | None = None          # which model the run delivers: refit on train+val or not (--refit)
    per_class: dict[str, dict] = _always(factory=dict)   # class -> precision, recall, f1, support
    confusion_matrix: list[list[int]] = _always(factory=list)
    misclassified: list[dict] = _always(factory=list)

    # how long (seconds) and how much memory
    train_seconds: float | None = _always()   # the training clock: evaluation excluded
    wall_seconds: float | None = _always()
    decode_seconds: float | None = _always()
    peak_rss_mb: float | None = _always()

    # the data as it trained
    sizes: dict[str, int] = _always(factory=dict)       # train, val, test
    skipped_files: int | None = _always()
    train_imbalance: dict = _always(factory=dict)        # class_counts, imbalance_ratio
    data_notes: list[str] | None = None

    # how training ended (every strategy reports these; a probe has no epochs)
    stop_reason: str | None = None
    epochs_run: float | None = None
    best_epoch: float | None = None

    # sections that options add, each the record its writer documents
    added_labels: dict | None = None     # --add-labels (label/added.py)
    auto: dict | None = None             # --backbone auto / --strategy auto (choose/auto.py)
    balance: dict | None = None          # --balance (imbalance/balance.py)
    synthetic: dict | None = None        # --synthesize (imbalance/synthesize.py)
    adaptation: dict | None = None       # fit --adapt (adapt/domain.py)
    continual: dict | None = None        # fit --from (adapt/continual.py)
    pruning: dict | None = None          # headstart prune (deploy/prune.py): before/after figures
    pruned_from: str | None = None
    sparsity: float | None = None

    # what the post-fit steps measured (post_fit.py); an error costs a report section, not the run
    explain_method: str | None = None
    explain_seconds: float | None = None
    features_from: str | None = None
    explanations_error: str | None = None
    deploy_seconds: float | None = None
    deploy_error: str | None = None

    @property
    def input_unit(self) -> str:
        """"px" or "tokens": runs written before summaries carried words were all image runs."""
        return (self.words or {}).get("input_unit", "px")


@dataclass
class PretrainSummary(_Record):
    """A `headstart pretrain` run's summary: a backbone trained without labels, no test split."""

    kind: ClassVar[str] = "pretrain"

    command: str = _always("pretrain")   # how a pretrain summary is told from a fit's
    data: str | None = _always()
    pool: str | None = _always()
    modality: str | None = _always()
    method: str | None = _always()
    method_summary: str | None = _always()
    strategy: str | None = _always()     # "pretrain:METHOD"
    backbone: str | None = _always()
    architecture: str | None = _always()
    started_from: str | None = _always()
    input_size: int | None = _always()
    item_count: int | None = _always(key="items")
    labels_set_aside: bool | None = _always()
    batch_size: int | None = _always()
    planned_epochs: int | None = _always()
    budget_seconds: float | None = _always()
    lr: float | None = _always()
    seed: int | None = _always()
    classes: list[str] = _always(factory=list)
    test_accuracy: float | None = _always()   # None: nothing is tested (the zoo reads it)
    name: str | None = _always()              # the local zoo entry
    entry: str | None = None             # set once the entry is written
    # the loop's outcome (adapt/pretrain_loop.py)
    epochs: int | None = _always()
    steps: int | None = _always()
    train_seconds: float | None = _always()
    stop_reason: str | None = _always()
    epoch_losses: list[float] = _always(factory=list)
    first_loss: float | None = _always()
    final_loss: float | None = _always()
    resumed_from_epoch: int | None = _always()


Summary = Union[FitSummary, PretrainSummary]


def fit_summary(recorded: Mapping) -> FitSummary:
    """A fit summary as its schema, whether it is one already or its on-disk form (a dict)."""
    return recorded if isinstance(recorded, FitSummary) else FitSummary.from_dict(recorded)


def read_summary(recorded: Mapping | None) -> Summary:
    """A summary.json object as its schema: pretrain's says so ("command"), every other is a fit's."""
    recorded = recorded or {}
    if recorded.get("command") == PretrainSummary.kind:
        return PretrainSummary.from_dict(recorded)
    return FitSummary.from_dict(recorded)
