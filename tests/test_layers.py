"""Intermediate layers as backbones (`ARCH@blockK`, `ARCH@concat`) and the source (ImageNet) head."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from headstart.config import FitConfig
from headstart.errors import HeadstartError
from headstart.model_io import load_model
from headstart.modalities import get_modality, modalities
from headstart.pipeline import fit
from headstart.zoo import load_packaged_imagenet_model, resolve_backbone
from headstart.zoo.source_head import source_head

from conftest import make_blobs, write_image_folder
from tiny_runs import quick_deploy_rows

LITE0 = "tf_efficientnet_lite0"
SIZE = 64


def _images(n: int = 4, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """Normalised-looking inputs: what a backbone's forward receives."""
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32))


@pytest.fixture(scope="module")
def imagenet_lite0():
    return load_packaged_imagenet_model(LITE0)


def _pooled_maps(model, x) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Independently of the layer code: every block's output, pooled, via forward hooks on the
    whole model, and its pooled pre-logit features."""
    outputs = []
    hooks = [block.register_forward_hook(lambda m, i, out: outputs.append(out.mean((2, 3)))) for block in model.blocks]
    try:
        with torch.no_grad():
            final = model.forward_head(model.forward_features(x), pre_logits=True)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs, final


# -- features ------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 4, 6])
def test_a_block_backbone_returns_that_blocks_pooled_map_of_the_whole_model(k, imagenet_lite0):
    backbone = resolve_backbone(f"{LITE0}@block{k}").build(image_size=SIZE).eval()
    x = _images()
    blocks, _ = _pooled_maps(imagenet_lite0, x)
    with torch.no_grad():
        features = backbone(x)
    assert features.shape == (len(x), backbone.feature_dim) == blocks[k].shape
    torch.testing.assert_close(features, blocks[k], rtol=1e-4, atol=1e-5)
    # the packaged ImageNet weights were loaded before the cut, and are labelled as usual
    assert backbone.weights.startswith("packaged:")


def test_concat_joins_three_late_blocks_and_the_final_features(imagenet_lite0):
    backbone = resolve_backbone(f"{LITE0}@concat").build(image_size=SIZE).eval()
    x = _images()
    blocks, final = _pooled_maps(imagenet_lite0, x)
    expected = torch.cat([blocks[3], blocks[4], blocks[5], final], 1)
    with torch.no_grad():
        features = backbone(x)
    assert backbone.feature_dim == 80 + 112 + 192 + 1280 == features.shape[1] < 2500
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-5)


def test_other_families_cut_at_their_own_blocks():
    """ResNet's stem tap is not a block: block 0 is layer1. Random weights (offline)."""
    backbone = resolve_backbone("resnet18@block1").build(pretrained=False, image_size=SIZE).eval()
    whole = timm.create_model("resnet18", num_classes=0).eval()
    # the same weights where the cut model has them; what it lacks is exactly the blocks after the cut
    loaded = whole.load_state_dict({k.removeprefix("model.net."): v for k, v in backbone.state_dict().items()},
                                   strict=False)
    assert not loaded.unexpected_keys
    assert loaded.missing_keys and all(k.startswith(("layer3.", "layer4.")) for k in loaded.missing_keys)
    x = _images(2)
    with torch.no_grad():
        _, (layer2,) = whole.forward_intermediates(x, indices=[2])
        torch.testing.assert_close(backbone(x), layer2.mean((2, 3)), rtol=1e-4, atol=1e-5)
    assert backbone.feature_dim == 128 and "layer2" in backbone.feature_source()


def test_a_cut_block_holds_and_computes_less_than_the_whole_network():
    from torch.utils.flop_counter import FlopCounterMode

    def cost(name):
        backbone = resolve_backbone(name).build(pretrained=False, image_size=SIZE).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            backbone(_images(1))
        return sum(p.numel() for p in backbone.parameters()), counter.get_total_flops()

    params = {name: cost(name) for name in (f"{LITE0}@block3", f"{LITE0}@block5", LITE0)}
    (p3, f3), (p5, f5), (p_all, f_all) = params.values()
    assert p3 < p5 < p_all and f3 < f5 < f_all


def test_a_layer_backbone_keeps_its_name_groups_and_preprocessing():
    whole = resolve_backbone(LITE0).build(pretrained=False, image_size=SIZE)
    backbone = resolve_backbone(f"{LITE0}@block4").build(pretrained=False, image_size=SIZE)
    assert backbone.name == backbone.architecture == f"{LITE0}@block4"
    assert backbone.describe()["architecture"] == f"{LITE0}@block4"  # what a finished run rebuilds from
    assert backbone.preprocessing == whole.preprocessing
    groups = backbone.param_groups()
    flat = [p for group in groups for p in group]
    assert len(flat) == len({id(p) for p in flat}) == len(list(backbone.parameters()))
    stem = dict(backbone.named_parameters())["model.net.conv_stem.weight"]
    assert any(p is stem for p in groups[0])
    assert "block 4" in backbone.feature_source() and "blocks.4" in backbone.feature_source()


# -- names -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, words", [
    (f"{LITE0}@block7", "blocks 0..6"),        # out of range: the valid blocks are listed
    (f"{LITE0}@layer2", "@blockK"),
    (f"{LITE0}@block", "@blockK"),
    ("no_such_net@block2", "not a timm image architecture"),
    ("resnet9@block1", "not a timm image architecture"),  # headstart's own small CNN, not timm's
])
def test_bad_layer_names_say_what_would_work(name, words):
    with pytest.raises(HeadstartError) as caught:
        resolve_backbone(name)
    assert words in str(caught.value)


def test_an_architecture_without_intermediate_features_is_refused(monkeypatch):
    from headstart.zoo import layers

    monkeypatch.setattr(layers, "_blocks_for", lambda arch: None)
    with pytest.raises(HeadstartError, match="intermediate features"):
        resolve_backbone("resnet18@block1")


def test_plain_names_still_resolve_as_before():
    assert resolve_backbone(LITE0).name == LITE0
    assert resolve_backbone("resnet9").sized_to_input  # the small CNN, not a timm network
    assert resolve_backbone("all-MiniLM-L6-v2").modality == "text"
    assert resolve_backbone("resnet18").build(pretrained=False, image_size=SIZE).feature_dim == 512


@pytest.mark.parametrize("modality", [m.name for m in modalities()])
def test_each_modality_s_default_layers_are_resolvable_layers_of_its_own(modality):
    names = get_modality(modality).default_layers
    assert all("@" in n and resolve_backbone(n).modality == modality for n in names)
    assert all(resolve_backbone(n).pretrained_offline for n in names)  # rankable with no network


def test_image_ranks_layers_of_its_default_backbone_and_text_none():
    # a sentence-transformer's middle layers are not pooled sentence vectors
    assert get_modality("image").default_layers and get_modality("text").default_layers == ()
    assert all(n.startswith(get_modality("image").default_backbone + "@") for n in get_modality("image").default_layers)


# -- a run on a layer ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def layer_run(tmp_path_factory):
    folder = write_image_folder(tmp_path_factory.mktemp("imgs") / "blobs", make_blobs(n_per_class=10))
    config = FitConfig(data=str(folder), backbone=f"{LITE0}@block4", strategy="probe", image_size=32, extract_engine="torch",
                       explain_examples=0, out=str(tmp_path_factory.mktemp("runs") / "block4"))
    return fit(config)


def test_a_probe_on_a_layer_runs_and_its_saved_run_predicts_the_same(layer_run):
    from headstart.prediction import predict_inputs

    assert layer_run.classifier.backbone.feature_dim == 112
    loaded, meta = load_model(layer_run.run_dir)
    assert meta["backbone"]["architecture"] == f"{LITE0}@block4"
    loaded.to(next(layer_run.classifier.parameters()).device)
    unseen = make_blobs(n_per_class=3, size=40, seed=7)
    trained = layer_run.classifier.logits(layer_run.classifier.prepare(unseen))
    torch.testing.assert_close(loaded.logits(loaded.prepare(unseen)), trained, atol=1e-5, rtol=0)
    # it learnt from block 4 (the folder's classes are sorted by name: compare names, not indices)
    named = [meta["classes"][i] for i in trained.argmax(1).tolist()]
    assert np.mean([p == unseen.classes[t] for p, t in zip(named, unseen.labels)]) >= 0.8
    # the CLI's path: files in, labels out
    folder = write_image_folder(layer_run.run_dir.parent / "unseen", unseen)
    predicted = predict_inputs(layer_run.run_dir, [str(folder)])
    assert len(predicted) == len(unseen)
    assert np.mean([p.label == Path(p.path).parent.name for p in predicted]) >= 0.8  # folder = true class


def test_a_layer_run_exports_to_onnx_with_the_same_predictions(layer_run):
    import headstart

    with quick_deploy_rows():  # the deploy table's timings are not what this test reads
        exported = headstart.export(layer_run.run_dir)  # refuses (raises) when ONNX Runtime disagrees
    checks = exported["checks"]
    assert checks["fp32_sample"]["max_abs_diff"] <= checks["fp32_sample"]["allowed_abs_diff"]
    assert checks["test_same_class"] == 1.0
    assert checks["onnx_test_accuracy"] == checks["torch_test_accuracy"]


# -- the source head -------------------------------------------------------------------------------

def test_source_head_turns_features_into_the_imagenet_logits(imagenet_lite0):
    backbone = resolve_backbone(LITE0).build(image_size=SIZE).eval()
    head = source_head(backbone)
    assert head is not None
    weight, bias = head
    assert weight.shape == (1000, backbone.feature_dim) and bias.shape == (1000,)
    x = _images(3, seed=1)
    with torch.no_grad():
        features = backbone(x).numpy()
        logits = imagenet_lite0(x).numpy()
    np.testing.assert_allclose(features @ weight.T + bias, logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())


@pytest.mark.parametrize("name, options", [
    (LITE0, {"pretrained": False}),            # random weights
    (f"{LITE0}@block4", {}),                   # a layer: the head never saw these features
    (f"{LITE0}@concat", {}),
    ("resnet9", {"pretrained": False}),        # no source task at all
])
def test_source_head_is_none_where_no_source_classifier_fits(name, options):
    backbone = resolve_backbone(name).build(image_size=SIZE, **options)
    assert source_head(backbone) is None


def test_source_head_is_none_for_weights_from_a_file(tmp_path):
    import safetensors.torch

    whole = resolve_backbone(LITE0).build(image_size=SIZE)
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(whole.model.state_dict(), str(path))
    from_file = resolve_backbone(LITE0).build(weights=str(path), image_size=SIZE)
    assert from_file.weights.startswith("file:") and source_head(from_file) is None
