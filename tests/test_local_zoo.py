"""The local zoo: a finished run's backbone, added by name, is a backbone like any other (its
features are the source run's), is listed, removed, and every bad add is refused with nothing
written."""
from __future__ import annotations

import errno
import json
import shutil
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from headstart.api import fit, zoo_add, zoo_remove
from headstart.cli import main
from headstart.config import FitConfig
from headstart.errors import HeadstartError
from headstart import manifest
from headstart.heads import ImageClassifier
from headstart.model_io import load_model
from headstart.pipeline import fit as pipeline_fit
from headstart.zoo import get_backbone, local, resolve_backbone

from conftest import make_blobs, make_texts, make_tiny_bert, write_image_folder

SIZE = 16  # px: resnet9 at 16 px trains in seconds on 2 cores
NAME = "blobs-resnet9"


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A resnet9 trained from scratch on one tiny dataset: the backbone to reuse."""
    root = tmp_path_factory.mktemp("source")
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: the autouse cache fixture is not active yet
        mp.setenv("HEADSTART_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        data = write_image_folder(root / "colours", make_blobs(n_per_class=20, size=SIZE))
        fit(str(data), strategy="scratch", backbone="resnet9", image_size=SIZE, epochs=3, seed=0,
            explain_examples=0, extract_engine="torch", out=str(root / "run"))
    return root / "run"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HEADSTART_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "zoo"


@pytest.fixture
def other_data(tmp_path) -> Path:
    """Another tiny dataset: four classes (chance is 0.25), another seed."""
    return write_image_folder(tmp_path / "other", make_blobs(n_per_class=16, size=SIZE, classes=("a", "b", "c", "d"),
                                                             seed=1))


def _images(n: int = 12, seed: int = 7) -> torch.Tensor:
    return torch.from_numpy(make_blobs(n_per_class=n // 3, size=SIZE, seed=seed).images).permute(0, 3, 1, 2)


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir()) if home.exists() else []


def test_an_added_run_is_a_backbone_whose_features_are_the_source_runs(source_run, home, other_data, tmp_path):
    entry = zoo_add(source_run, NAME)
    assert Path(entry["folder"]) == home / NAME

    out = tmp_path / "probe"
    fit(str(other_data), backbone=NAME, strategy="probe", explain_examples=0, extract_engine="torch", out=str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["weights"] == f"zoo:{NAME}" and summary["backbone"] == NAME
    assert summary["test_accuracy"] >= 0.6  # chance is 0.25

    # The probe froze the backbone: its features are the source run's, bit for bit, and so
    # are those of the backbone built from the name alone.
    source, _ = load_model(source_run)
    probed, meta = load_model(out)
    assert meta["backbone"]["weights"] == f"zoo:{NAME}" and meta["backbone"]["architecture"] == "resnet9"
    x = _images()
    with torch.no_grad():
        expected = source.features(x)
        assert torch.equal(probed.features(x), expected)
        built = ImageClassifier(get_backbone(NAME), 2).eval()
        assert torch.equal(built.features(x), expected)
        # the entry's file is a plain backbone state_dict: --weights FILE takes it too
        as_file = get_backbone("resnet9", weights=str(home / NAME / local.WEIGHTS_FILE), image_size=SIZE)
        assert torch.equal(ImageClassifier(as_file, 2).eval().features(x), expected)

    # A run trained on NAME records its source architecture: it predicts without the entry.
    zoo_remove(NAME)
    with torch.no_grad():
        assert torch.equal(load_model(out)[0].features(x), expected)


def test_spec_json_records_the_architecture_and_where_it_came_from(source_run, home):
    zoo_add(source_run, NAME)
    spec = json.loads((home / NAME / local.SPEC_FILE).read_text())
    model_json = json.loads((source_run / "model.json").read_text())
    summary = json.loads((source_run / "summary.json").read_text())
    assert spec["name"] == NAME and spec["modality"] == "image" and spec["architecture"] == "resnet9"
    assert spec["preprocessing"] == model_json["backbone"]["preprocessing"]
    assert spec["preprocessing"]["input_size"] == SIZE
    assert spec["feature_dim"] == model_json["backbone"]["feature_dim"]
    assert spec["source_run"] == str(source_run.resolve())
    assert spec["data"] == str(source_run.parent / "colours")
    assert spec["classes"] == model_json["classes"] and spec["strategy"] == "scratch"
    assert spec["source_weights"] == "random"  # what the scratch run started from
    assert spec["test_accuracy"] == summary["test_accuracy"]
    assert spec["headstart_version"] == version("headstart")
    assert datetime.fromisoformat(spec["created"]).tzinfo is not None

    # Only the backbone's tensors, named as its own state_dict names them: no head.
    saved = load_file(str(home / NAME / local.WEIGHTS_FILE))
    run_tensors = load_file(str(source_run / "model.safetensors"))
    assert set(saved) == {k.removeprefix("backbone.") for k in run_tensors if k.startswith("backbone.")}
    assert set(saved) == set(get_backbone("resnet9", pretrained=False, image_size=SIZE).state_dict())
    assert all(torch.equal(saved[k], run_tensors[f"backbone.{k}"]) for k in saved)

    resolved = resolve_backbone(NAME)
    assert (resolved.has_pretrained, resolved.pretrained_offline, resolved.input_size) == (True, True, SIZE)
    assert not resolved.sized_to_input and "resnet9" in resolved.description
    assert local.local_names("image") == [NAME] and local.local_names("text") == []


def test_zoo_lists_local_backbones_in_their_own_section(source_run, home, capsys):
    assert main(["zoo"]) == 0
    assert "No local backbones" in capsys.readouterr().out
    assert main(["zoo", "add", str(source_run), "--name", NAME]) == 0
    capsys.readouterr()
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("local backbone"):]
    row = next(line for line in section.splitlines() if line.startswith(NAME))
    accuracy = json.loads((source_run / "summary.json").read_text())["test_accuracy"]
    assert str(source_run.resolve()) in row and f"{accuracy:.3f}" in row and "image" in row
    assert "tf_efficientnet_lite0" in out[:out.index("local backbone")]  # the registered ones still listed


def test_remove_deletes_the_entry_and_its_name(source_run, home, capsys):
    zoo_add(source_run, NAME)
    assert main(["zoo", "remove", NAME]) == 0
    assert _leftovers(home) == []
    with pytest.raises(HeadstartError, match="unknown backbone"):
        resolve_backbone(NAME)
    with pytest.raises(HeadstartError, match="has no") as err:
        zoo_remove(NAME)
    assert "headstart zoo" in err.value.hint


def test_an_existing_name_is_refused_unless_forced(source_run, home):
    zoo_add(source_run, NAME)
    before = (home / NAME / local.SPEC_FILE).read_text()
    with pytest.raises(HeadstartError, match="already has") as err:
        zoo_add(source_run, NAME)
    assert "--force" in err.value.hint
    assert (home / NAME / local.SPEC_FILE).read_text() == before
    assert zoo_add(source_run, NAME, force=True)["created"] >= json.loads(before)["created"]
    assert _leftovers(home) == [NAME]


def _unfinished(run: Path, tmp: Path) -> Path:
    copy = shutil.copytree(run, tmp / "unfinished")
    (copy / "summary.json").unlink()
    (copy / "manifest.json").unlink()  # as an interrupted run: its summary never written, so never recorded
    return copy


def _foreign(run: Path, tmp: Path) -> Path:
    (tmp / "photos").mkdir()
    (tmp / "photos" / "holiday.txt").write_text("not a run")
    return tmp / "photos"


def _pruned(run: Path, tmp: Path) -> Path:
    copy = shutil.copytree(run, tmp / "pruned")
    meta = json.loads((copy / "model.json").read_text())
    meta["pruned"] = {"layers": {"backbone.model.stem.0": {"kind": "conv", "out_channels": 8}}, "feature_dim": 128}
    (copy / "model.json").write_text(json.dumps(meta))
    manifest.record(copy, "model.json")  # as prune writes it: recorded (an unrecorded edit is damage)
    return copy


def _tfidf(run: Path, tmp: Path) -> Path:
    config = FitConfig(data="topics", strategy="tfidf", explain_examples=0, out=str(tmp / "tfidf"))
    return pipeline_fit(config, data=make_texts()).run_dir


@pytest.mark.parametrize("make_run, says", [
    (_unfinished, "unfinished run: it has no summary.json"),
    (_foreign, "is not a headstart run"),
    (_pruned, "pruned run"),
    (_tfidf, "standalone model"),
    (lambda run, tmp: tmp / "nowhere", "is not a headstart run \\(no such folder\\)"),
], ids=["unfinished", "foreign", "pruned", "tfidf", "missing"])
def test_runs_that_cannot_give_a_backbone_are_refused_with_nothing_written(source_run, home, tmp_path, make_run,
                                                                          says):
    with pytest.raises(HeadstartError, match=says) as err:
        zoo_add(make_run(source_run, tmp_path), NAME)
    assert err.value.hint
    assert _leftovers(home) == []


@pytest.mark.parametrize("name, says", [
    ("a/b", "cannot name"), ("x@block4", "cannot name"), ("m:32", "cannot name"), (".hidden", "cannot name"),
    ("", "cannot name"), ("auto", "cannot name"),
    ("resnet9", "registered backbone"), ("resnet18", "registered backbone"), ("convnext_nano", "timm"),
    ("resnet18.no_such_tag", "timm"), ("all-MiniLM-L6-v2", "registered backbone"),
])
def test_names_that_are_invalid_or_taken_elsewhere_are_refused(source_run, home, name, says):
    with pytest.raises(HeadstartError, match=says) as err:
        zoo_add(source_run, name)
    assert err.value.hint
    assert _leftovers(home) == []


def test_a_write_that_fails_midway_leaves_no_entry(source_run, home, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local, "write_json", full_disk)  # spec.json is written after the weights
    with pytest.raises(HeadstartError, match="no space left"):  # files.WriteFailed: one clear refusal
        zoo_add(source_run, NAME)
    assert _leftovers(home) == []  # neither the entry nor its temporary folder
    assert local.local_names("image") == []


def test_a_sized_architecture_refuses_another_image_size(source_run, home):
    zoo_add(source_run, NAME)
    with pytest.raises(HeadstartError, match=f"trained at {SIZE} px") as err:
        get_backbone(NAME, image_size=2 * SIZE)
    assert "--image-size" in err.value.hint
    assert get_backbone(NAME, image_size=SIZE).preprocessing.input_size == SIZE


def test_fine_tuning_trains_a_local_backbone_and_the_run_reloads(source_run, home, other_data, tmp_path):
    # lp-ft takes the same path (a head on cached features, then every layer from the built backbone)
    zoo_add(source_run, NAME)
    result = fit(str(other_data), backbone=NAME, strategy="finetune", epochs=1, explain_examples=0,
                 extract_engine="torch", out=str(tmp_path / "finetune"))
    assert result.summary["weights"] == f"zoo:{NAME}" and result.summary["epochs_run"] >= 1
    reloaded, _ = load_model(result.run_dir)
    x = _images()
    with torch.no_grad():
        assert torch.allclose(reloaded(x), result.classifier.cpu().eval()(x), atol=1e-5)


def test_rank_takes_local_backbones_as_candidates(source_run, home):
    from headstart.choose.candidates import Candidate, default_candidates
    from headstart.choose.rank import rank_candidates

    zoo_add(source_run, NAME)
    assert Candidate(NAME) in default_candidates("image")
    ranked = rank_candidates(make_blobs(n_per_class=10, size=SIZE, seed=2), [NAME], extract_engine="torch")
    assert ranked["candidates"][0]["weights"] == f"zoo:{NAME}"


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("text-source")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADSTART_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        bert = make_tiny_bert(root / "tiny-bert")
        config = FitConfig(data="topics", backbone=bert, strategy="probe", explain_examples=0, extract_engine="torch",
                           out=str(root / "run"))
        pipeline_fit(config, data=make_texts())
    return root / "run"


def test_a_text_run_is_added_with_its_tokenizer_and_embeds_as_the_source(text_run, home, tmp_path):
    zoo_add(text_run, "topics-bert")
    assert (home / "topics-bert" / local.TOKENIZER_FOLDER / "tokenizer_config.json").is_file()
    assert local.local_names("text") == ["topics-bert"]
    texts = make_texts(n_per_class=4, seed=3)
    result = pipeline_fit(FitConfig(data="topics", backbone="topics-bert", strategy="probe", explain_examples=0,
                                    extract_engine="torch", out=str(tmp_path / "probe")), data=make_texts(seed=5))
    assert result.summary["weights"] == "zoo:topics-bert"
    source, _ = load_model(text_run)
    probed, _ = load_model(result.run_dir)
    ids = torch.from_numpy(source.prepare(texts).inputs)
    with torch.no_grad():
        assert torch.allclose(probed.features(ids), source.features(ids), atol=1e-6)
        assert not np.allclose(source.features(ids).numpy(), 0)
