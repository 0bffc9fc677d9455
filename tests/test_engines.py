"""Feature-extraction engines (engines/extract.py): every engine gives the probe the features
eager PyTorch gives (int8: close), and an unsupported choice says what to do."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from headstart.config import FitConfig
from headstart.engines.extract import ENGINES, make_engine, resolve_engine_name
from headstart.embed import embed
from headstart.errors import HeadstartError
from headstart.heads import ImageClassifier
from headstart.pipeline import fit
from headstart.zoo import get_backbone

from conftest import make_blobs


@pytest.fixture(scope="module")
def lite0_32():
    return ImageClassifier(get_backbone("tf_efficientnet_lite0", pretrained=True, image_size=32), 3).eval()


@pytest.fixture(scope="module")
def fresh_engine_cache(tmp_path_factory):
    """An engine cache of this module's own, empty at its first test: the fp32 engine is exported
    there, and int8 quantizes that export (its own preparation) rather than exporting again."""
    return tmp_path_factory.mktemp("engine-cache")


@pytest.mark.parametrize("name", ["onnxruntime", "onnxruntime-int8"])
def test_an_onnxruntime_engine_gives_eager_features(lite0_32, name, fresh_engine_cache, monkeypatch):
    monkeypatch.setenv("HEADSTART_CACHE", str(fresh_engine_cache))  # this engine is prepared here
    data = make_blobs(n_per_class=8)
    eager = embed(lite0_32, data, cache=False, engine=make_engine("torch", lite0_32))
    engine = make_engine(name, lite0_32, calibration=data.images)
    features = embed(lite0_32, data, cache=False, engine=engine)
    assert features.shape == eager.shape and engine.prepare_seconds > 0
    if name == "onnxruntime":
        assert np.abs(features - eager).max() < 1e-3
    else:  # int8 moves every feature a little, but keeps their geometry
        cosine = (features * eager).sum(1) / (np.linalg.norm(features, axis=1) * np.linalg.norm(eager, axis=1))
        assert cosine.min() > 0.9 and np.abs(features - eager).max() > 1e-4


def test_grey_images_run_through_the_onnxruntime_engine(lite0_32):
    data = make_blobs(n_per_class=4)
    grey = replace(data, images=data.images[..., :1])
    engine = make_engine("onnxruntime", lite0_32)
    ort = embed(lite0_32, grey, cache=False, engine=engine)
    assert np.abs(ort - embed(lite0_32, grey, cache=False)).max() < 1e-3


def test_the_probe_records_its_engine_and_keeps_its_accuracy(tmp_path):
    data = make_blobs(n_per_class=30)
    settings = dict(data="blobs", backbone="tf_efficientnet_lite0", strategy="probe", image_size=32)
    runs = {name: fit(FitConfig(**settings, extract_engine=name, out=str(tmp_path / name)), data=data,
                      use_feature_cache=False).summary for name in ("torch", "onnxruntime")}
    assert runs["onnxruntime"]["extract_engine"] == "onnxruntime" and runs["torch"]["extract_engine"] == "torch"
    assert abs(runs["onnxruntime"]["test_accuracy"] - runs["torch"]["test_accuracy"]) <= 0.05


def test_engine_choices_are_resolved_and_refused_clearly():
    assert resolve_engine_name("auto", "image") in ENGINES
    assert resolve_engine_name(None, "text") in ENGINES
    with pytest.raises(HeadstartError, match="runs image backbones"):
        resolve_engine_name("onnxruntime", "text")
    with pytest.raises(HeadstartError, match="unknown extraction engine"):
        resolve_engine_name("tensorrt", "image")
