"""Explanations: sanity on constructed data whose evidence is known, the model-randomisation
check, the explain command end to end, and explanations in fit and compare reports."""
from __future__ import annotations

import json

import numpy as np
import pytest

from headstart.report import build_report
import torch

from headstart.cli import main
from headstart.config import FitConfig
from headstart.data import ImageData
from headstart.data.dataset import TextData
from headstart.errors import HeadstartError
from headstart.explain import Item, explain_items
from headstart.explain.image import feature_maps, heat_mass_in
from headstart.explain.registry import choose_method
from headstart.explain.text import top_words
from headstart.pipeline import fit

from conftest import FILLER, TOPICS, make_blobs, make_tiny_bert, write_image_folder

# A quarter of the image, in its top-right corner, carries the label as a colour; the rest is
# grey noise that says nothing.
SIDE, PATCH = 48, 24
PATCH_BOX = (0, SIDE - PATCH, PATCH, SIDE)
COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 220, 30)}


def make_patches(n: int = 240, seed: int = 0) -> ImageData:
    rng = np.random.default_rng(seed)
    images = rng.integers(60, 190, size=(n, SIDE, SIDE, 1)).repeat(3, -1).astype(np.uint8)
    labels = np.arange(n) % len(COLOURS)
    top, left, bottom, right = PATCH_BOX
    images[:, top:bottom, left:right] = np.array(list(COLOURS.values()), np.uint8)[labels][:, None, None, :]
    return ImageData(images=images, labels=labels, classes=list(COLOURS), name="patches")


@pytest.fixture(scope="module")
def patch_model(tmp_path_factory):
    data = make_patches()
    out = tmp_path_factory.mktemp("patch") / "run"
    # at the images' own size (the scratch default caps at 32 px): PATCH_BOX is in its pixels
    result = fit(FitConfig(data="patches", strategy="scratch", scratch_model="resnet9", epochs=3, seed=0,
                           image_size=SIDE, out=str(out)), data=data)
    assert result.summary["test_accuracy"] > 0.95  # the sanity check needs a model that learnt the patch
    model = result.classifier
    return model, model.prepare(data), data.labels, out


def _maps(model, data, labels, method: str, n: int = 8) -> list[np.ndarray]:
    return choose_method(model, "image", method).explain(model, data, [(i, int(labels[i])) for i in range(n)])


@pytest.mark.parametrize("method", ["gradcam", "ig", "occlusion"])
def test_the_heat_map_falls_on_the_patch_that_decides_the_label(patch_model, method):
    model, data, labels, _ = patch_model
    masses = [heat_mass_in(h, PATCH_BOX) for h in _maps(model, data, labels, method)]
    # the patch is a quarter of the image: a map blind to it would put ~25% of its mass there
    assert np.median(masses) >= 0.7, masses


@pytest.mark.parametrize("method", ["gradcam", "ig", "occlusion"])
def test_randomising_the_backbone_changes_the_map(patch_model, method):
    """Adebayo et al. (2018): a map that survives randomising the weights explains the input,
    not the model. With random weights the maps move (by 0.15-0.25 per pixel on [0, 1] maps,
    measured) and stop finding the patch; Grad-CAM's keep some of the patch's outline, since a
    random CNN still responds to a high-contrast edge, so the test asks for change, not for
    zero rank correlation."""
    model, data, labels, _ = patch_model
    trained = _maps(model, data, labels, method, n=4)
    shuffled = _maps(_rebuilt_with_random_backbone(model), data, labels, method, n=4)
    changes = [float(np.abs(a - b).mean()) for a, b in zip(trained, shuffled)]
    assert min(changes) >= 0.1, changes
    assert np.median([heat_mass_in(h, PATCH_BOX) for h in shuffled]) < 0.6


def _rebuilt_with_random_backbone(model):
    import copy

    randomised = copy.deepcopy(model)
    torch.manual_seed(123)
    for module in randomised.backbone.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    randomised._headstart_feature_maps = None
    return randomised


@pytest.mark.parametrize("method", ["gradcam", "ig", "occlusion"])
def test_grey_images_are_explained_by_a_colour_model(patch_model, method):
    """Grey data (ELPV, digits) enters with one channel and is repeated inside the model; the
    methods' baselines must follow."""
    import dataclasses

    model, data, labels, _ = patch_model
    grey = dataclasses.replace(data, images=data.images.mean(-1, keepdims=True).astype(np.uint8))
    (heat,) = choose_method(model, "image", method).explain(model, grey, [(0, int(labels[0]))])
    assert heat.shape == (SIDE, SIDE) and 0 <= heat.min() and heat.max() <= 1


def test_gradcam_refuses_a_model_without_feature_maps_and_auto_falls_back(patch_model):
    model, data, labels, _ = patch_model
    import copy

    tokens_only = copy.deepcopy(model)
    tokens_only._headstart_feature_maps = {"last": None, "localisable": None}  # what a ViT looks like
    with pytest.raises(HeadstartError, match="attention-only") as caught:
        choose_method(tokens_only, "image", "gradcam")
    assert "--method ig or occlusion" in str(caught.value)
    assert choose_method(tokens_only, "image", "auto").name == "ig"
    assert choose_method(model, "image", "auto").name == "gradcam"


def test_feature_maps_are_found_in_a_vit_and_a_cnn():
    from headstart.zoo import resolve_backbone
    from headstart.modalities import get_modality

    image = get_modality("image")
    vit = image.build_classifier(resolve_backbone("vit_tiny_patch16_224").build(pretrained=False, image_size=32), 2)
    assert feature_maps(vit)["last"] is None  # linear layers over tokens follow the patch embedding
    cnn = image.build_classifier(resolve_backbone("resnet9").build(pretrained=False, image_size=32), 2)
    name, _, shape = feature_maps(cnn)["last"]
    assert name.startswith("stages.") and len(shape) == 4


# -- texts -------------------------------------------------------------------------------------

KEYWORDS = {"weather": "storm", "sport": "goal"}  # the one word that decides each label


def make_keyword_texts(n_per_class: int = 40, seed: int = 0) -> TextData:
    rng = np.random.default_rng(seed)
    distractors = TOPICS["money"].split()
    texts, labels = [], []
    for k, keyword in enumerate(KEYWORDS.values()):
        for _ in range(n_per_class):
            words = list(rng.choice(FILLER, int(rng.integers(4, 9)))) + list(rng.choice(distractors, 3)) + [keyword]
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(k)
    return TextData(texts=texts, labels=np.array(labels), classes=list(KEYWORDS), name="keywords")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.mark.parametrize("strategy,scratch_model,epochs,lr", [("finetune", None, 8, 1e-3),
                                                            ("scratch", "embedding-bag", 20, None)])
def test_the_keyword_gets_the_top_attribution(tmp_path, tiny_bert, strategy, scratch_model, epochs, lr):
    """A transformer (the tiny BERT, fine-tuned) and the embedding bag both point at the word."""
    data = make_keyword_texts()
    result = fit(FitConfig(data="keywords", backbone=tiny_bert, strategy=strategy, scratch_model=scratch_model,
                           epochs=epochs, lr=lr, seed=0, explain_examples=0, out=str(tmp_path / "run")), data=data)
    assert result.summary["test_accuracy"] >= 0.9
    model = result.classifier
    prepared = model.prepare(data)
    picks = [0, 1, 2, 40, 41, 42]  # three texts of each class
    segments = choose_method(model, "text", "ig").explain(model, prepared, [(i, int(data.labels[i])) for i in picks])
    for i, pieces in zip(picks, segments):
        assert "".join(p for p, _ in pieces) == data.texts[i]  # the whole text, as written
        assert top_words(pieces, 1) == [KEYWORDS[data.classes[data.labels[i]]]], pieces


def test_tfidf_attributions_are_its_linear_weights(tmp_path):
    data = make_keyword_texts()
    result = fit(FitConfig(data="keywords", strategy="tfidf", seed=0, out=str(tmp_path / "run")), data=data)
    model = result.classifier
    method = choose_method(model, "text", "auto")
    assert method.name == "linear"
    (pieces,) = method.explain(model, data, [(0, int(data.labels[0]))])
    assert top_words(pieces, 1) == ["storm"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["explain_method"] == "linear"


# -- the command and the reports -----------------------------------------------------------------

@pytest.fixture(scope="module")
def blob_folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("blobs") / "data", make_blobs(n_per_class=16, size=48))


@pytest.mark.report
def test_fit_report_explains_mistakes_and_one_correct_example_per_class(patch_model):
    _, _, _, run = patch_model
    build_report(run)  # the module's fit ran with the report off (conftest): render it as `headstart report` does
    explained = json.loads((run / "explanations" / "explanations.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    correct = [i for i in explained["items"] if i["kind"] == "correct"]
    assert sorted(i["true"] for i in correct) == sorted(COLOURS)  # one per class
    assert all(i["predicted"] == i["true"] for i in correct)
    assert explained["method"] == summary["explain_method"] == "gradcam"
    assert "stages." in summary["features_from"]  # which layer the head reads
    page = (run / "report.html").read_text()
    for item in explained["items"]:
        for e in item["explanations"]:
            assert (run / "explanations" / e["image"]).is_file()
            assert f'src="explanations/{e["image"]}"' in page
    assert summary["features_from"] in page


def test_explain_command_on_images_with_a_true_class(blob_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", str(blob_folder), "--strategy", "scratch", "--scratch-model", "resnet9", "--epochs", "2",
                 "--image-size", "48", "--explain-examples", "0", "--out", str(run)]) == 0
    assert not (run / "explanations").exists()
    red = sorted((blob_folder / "red").iterdir())[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    out = tmp_path / "why"
    assert main(["explain", str(run), str(red), str(broken), "--true", "blue", "red", "green",
                 "--out", str(out)]) == 2  # three classes for two inputs
    assert "--true names 3 classes for 2 inputs" in capsys.readouterr().err
    assert main(["explain", str(run), str(red), str(broken), "--true", "blue", "--method", "occlusion",
                 "--out", str(out)]) == 0  # one class for every input
    explained = json.loads((out / "explanations.json").read_text())
    (item,) = explained["items"]
    roles = {e["role"]: e["class"] for e in item["explanations"]}
    assert roles["true"] == "blue" and roles["predicted"] != "blue"
    assert explained["unreadable"][0]["name"] == str(broken)
    page = (out / "report.html").read_text()
    assert 'src="0-predicted.png"' in page and "broken.png" in page
    assert main(["explain", str(run), str(red), "--true", "purple"]) == 2
    assert "classes the run does not know: purple" in capsys.readouterr().err


@pytest.mark.report
def test_explain_command_on_text_highlights_words(tmp_path, tiny_bert, capsys):
    data = make_keyword_texts(n_per_class=20)
    csv = tmp_path / "kw.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{data.classes[y]}\n" for t, y in zip(data.texts, data.labels)))
    run = tmp_path / "run"
    assert main(["fit", str(csv), "--backbone", tiny_bert, "--strategy", "probe", "--out", str(run)]) == 0
    explained = json.loads((run / "explanations" / "explanations.json").read_text())
    assert explained["method"] == "ig" and "last hidden layer" in explained["features_from"]
    assert "<span style=\"background: rgba(" in (run / "report.html").read_text()
    out = tmp_path / "why"
    text = "the storm was at the bank <b>"
    assert main(["explain", str(run), text, "--out", str(out)]) == 0
    (item,) = json.loads((out / "explanations.json").read_text())["items"]
    assert "".join(p for p, _ in item["explanations"][0]["segments"]) == text
    page = (out / "report.html").read_text()
    highlighted = page.split('<p class="highlighted">')[1].split("</p>")[0]
    assert "&lt;" in highlighted and "<b>" not in highlighted  # the text is escaped, never markup


@pytest.mark.report
def test_a_failing_explanation_costs_the_report_a_section_not_the_run(blob_folder, tmp_path, monkeypatch):
    import headstart.explain as explain

    def broken(*args, **kwargs):
        raise RuntimeError("no gradients today")

    monkeypatch.setattr(explain, "explain_for_report", broken)
    run = tmp_path / "run"
    assert main(["fit", str(blob_folder), "--strategy", "scratch", "--scratch-model", "resnet9", "--epochs", "1",
                 "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["explanations_error"] == "RuntimeError: no gradients today"
    assert (run / "model.safetensors").exists()
    assert "No explanations: RuntimeError: no gradients today" in (run / "report.html").read_text()


def test_explain_items_writes_the_folder_whole(patch_model, tmp_path):
    model, data, labels, _ = patch_model
    items = [Item(index=0, name="a", predicted=0, probability=0.9, true=1)]
    result = explain_items(model, data, items, list(COLOURS), tmp_path / "out", method="gradcam")
    assert [e["role"] for e in result["items"][0]["explanations"]] == ["predicted", "true"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0-predicted.png", "0-true.png",
                                                                    "explanations.json"]
