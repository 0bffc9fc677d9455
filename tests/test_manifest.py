"""RUN/manifest.json: what a commit point records, and what a reader refuses by name."""
from __future__ import annotations

import json

import pytest

from headstart import manifest
from headstart.errors import HeadstartError


def _run(tmp_path):
    (tmp_path / "summary.json").write_text('{"test_accuracy": 0.9}')
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer.json").write_text("{}")
    manifest.record(tmp_path, "summary.json", "tokenizer")
    return tmp_path


def test_a_commit_records_each_file_and_every_file_of_a_folder(tmp_path):
    recorded = json.loads((_run(tmp_path) / manifest.MANIFEST).read_text())["files"]
    assert set(recorded) == {"summary.json", "tokenizer/tokenizer.json"}
    assert recorded["summary.json"]["size"] == len('{"test_accuracy": 0.9}')
    manifest.verify(tmp_path, "summary.json", "tokenizer")  # as written: passes


@pytest.mark.parametrize("damage, says", [
    (lambda p: p.unlink(), "summary.json is missing"),
    (lambda p: p.write_text('{"test_accuracy": 0.1}'), "summary.json is damaged (its checksum"),
    (lambda p: p.write_text("{"), "summary.json is damaged (it holds 1 bytes"),
])
def test_a_missing_or_changed_file_is_refused_by_name(tmp_path, damage, says):
    damage(_run(tmp_path) / "summary.json")
    with pytest.raises(HeadstartError, match=says.replace("(", r"\(")) as e:
        manifest.verify(tmp_path, "summary.json", hint="re-run it")
    assert e.value.hint == "re-run it"


def test_a_file_in_a_recorded_folder_is_checked_too(tmp_path):
    (_run(tmp_path) / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(HeadstartError, match="tokenizer.json is missing"):
        manifest.verify(tmp_path, "tokenizer")


def test_without_a_manifest_or_an_entry_nothing_is_verified(tmp_path):
    (tmp_path / "summary.json").write_text("anything")
    manifest.verify(tmp_path, "summary.json")  # a run of an earlier version: read as before
    _run(tmp_path)
    manifest.verify(tmp_path, "metrics.jsonl")  # not recorded by any commit point


def test_a_damaged_manifest_is_refused_and_a_new_commit_starts_it_afresh(tmp_path):
    (_run(tmp_path) / manifest.MANIFEST).write_bytes(b"\x00garbage")
    with pytest.raises(HeadstartError, match="manifest.json is damaged") as e:
        manifest.verify(tmp_path, "summary.json")
    assert "delete" in e.value.hint
    manifest.record(tmp_path, "summary.json")
    manifest.verify(tmp_path, "summary.json")


def test_a_name_that_is_gone_leaves_the_manifest(tmp_path):
    (_run(tmp_path) / "summary.json").unlink()
    manifest.record(tmp_path, "summary.json")
    assert "summary.json" not in json.loads((tmp_path / manifest.MANIFEST).read_text())["files"]
