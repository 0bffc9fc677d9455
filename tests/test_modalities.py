"""The modality seam: one common test over every registered modality, and a third modality
(numeric vectors from a CSV, with a linear "backbone") defined only here, that goes through
fit, compare, predict and report -- CLI included -- without any change to the package."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from headstart.cli import main
from headstart.data.dataset import DataForm
from headstart.heads import Classifier
from headstart.model_io import load_module_weights, register_model_format, save_module_weights
from headstart.modalities import Inputs, LoadOptions, Modality, get_modality, modalities, register_modality
from headstart.records import read_json
from headstart.strategies import STRATEGIES
from headstart.train.batches import ArrayTokenDataset
from headstart.zoo import Backbone, BackboneSpec, register_backbone, resolve_backbone

# --------------------------------------------------------------------------- every modality

WORDS = {"input_unit", "example", "noun", "skipped"}


@pytest.mark.parametrize("modality", [m.name for m in modalities() if m.name != "vectors"])
def test_every_modality_declares_what_differs(modality, tmp_path):
    m = get_modality(modality)
    assert resolve_backbone(m.default_backbone).modality == modality
    assert resolve_backbone(m.default_scratch_model).modality == modality
    assert m.default_arms and set(m.default_arms) <= set(STRATEGIES)
    assert any(not STRATEGIES[a].pretrained for a in m.default_arms), "a comparison needs a baseline arm"
    assert set(m.strategy_defaults) <= set(STRATEGIES)
    assert WORDS <= set(m.words) and m.formats
    nothing = tmp_path / "nothing.bin"
    nothing.write_bytes(b"\x00")
    assert not m.recognises(nothing, LoadOptions())
    backbone = resolve_backbone(m.default_scratch_model).build(pretrained=False)
    assert isinstance(m.build_classifier(backbone, 3), Classifier)


# --------------------------------------------------------------------------- a third modality

DIM = 6
CENTRES = np.eye(3, DIM) * 3.0  # three classes, each around one axis


@dataclass(kw_only=True)
class VectorData(DataForm):
    vectors: np.ndarray

    modality = "vectors"
    noun = "vectors"

    @property
    def inputs(self) -> np.ndarray:
        return self.vectors

    def inputs_for_length(self):
        return self.vectors

    def fingerprint(self) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.vectors).data)
        self._hash_labels(h)
        return h.hexdigest()[:16]

    def subset(self, index):
        return VectorData(vectors=self.vectors[index], labels=None if self.labels is None else self.labels[index],
                          classes=self.classes, name=self.name)


@dataclass(frozen=True)
class VectorPreprocessing:
    input_size: int

    def to_dict(self) -> dict:
        return asdict(self)


class LinearBackbone(Backbone):
    modality = "vectors"

    def prepare(self, data):
        return data  # vectors need no resizing or tokenising


def _linear_backbone(*, pretrained: bool = True, weights: str | None = None) -> LinearBackbone:
    model = nn.Sequential(nn.Linear(DIM, 8), nn.ReLU(), nn.Linear(8, 8))
    if pretrained:  # "pretrained": a fixed, useful projection, the same every time
        with torch.no_grad():
            generator = torch.Generator().manual_seed(7)
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return LinearBackbone("toy-linear", model, 8, VectorPreprocessing(DIM),
                          [list(model[0].parameters()), list(model[2].parameters())],
                          "toy:fixed" if pretrained else "random")


class VectorsModality(Modality):
    priority = 100  # asked first; it claims only files named *.vectors.csv
    default_backbone = "toy-linear"
    default_arms = ("probe", "finetune", "scratch")
    default_scratch_model = "toy-linear"
    strategy_defaults = {"scratch": {"epochs": 12}}
    words = {"input_unit": "dims", "example": "vector", "noun": "vectors", "skipped": "unreadable row(s)"}
    formats = "a CSV named *.vectors.csv of x0..xN,label rows"

    def recognises(self, path: Path, options: LoadOptions) -> bool:
        return path.name.endswith(".vectors.csv")

    def load(self, path: Path, options: LoadOptions) -> VectorData:
        rows = [line.split(",") for line in path.read_text().splitlines()[1:] if line.strip()]
        classes = sorted({r[-1] for r in rows})
        return VectorData(vectors=np.array([[float(v) for v in r[:-1]] for r in rows], dtype=np.float32),
                          labels=np.array([classes.index(r[-1]) for r in rows]), classes=classes, name=path.name)

    def build_classifier(self, backbone, num_classes: int) -> Classifier:
        return Classifier(backbone, num_classes)

    def training_dataset(self, data, augment: str, input_size: int):
        return ArrayTokenDataset(data.inputs, data.labels)

    def read_inputs(self, inputs: list[str], text_file, meta: dict) -> Inputs:
        vectors = np.array([[float(v) for v in text.split(",")] for text in inputs], dtype=np.float32)
        data = VectorData(vectors=vectors, labels=None, classes=[], name="inputs")
        return Inputs(list(inputs), "text", data, list(range(len(inputs))))


def _load_vectors_classifier(run_dir: Path, meta: dict) -> Classifier:
    return load_module_weights(Classifier(_linear_backbone(pretrained=False), meta["num_classes"]), run_dir)


@pytest.fixture(scope="module")
def vectors_csv(tmp_path_factory) -> Path:
    """Registers the toy modality once (registries are process-wide), and writes its data."""
    try:
        get_modality("vectors")
    except Exception:
        register_modality("vectors")(VectorsModality)
        register_backbone(BackboneSpec(name="toy-linear", modality="vectors", factory=_linear_backbone,
                                       has_pretrained=True, offline=lambda: True, input_size=DIM,
                                       description="a linear projection: the toy modality's backbone"))
        register_model_format("headstart-vectors-classifier", save=save_module_weights,
                              load=_load_vectors_classifier, input="float vectors (B, 6)")
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("vec") / "points.vectors.csv"
    lines = [",".join([f"x{i}" for i in range(DIM)] + ["label"])]
    for k, name in enumerate(["a", "b", "c"]):
        for x in CENTRES[k] + rng.normal(0, 0.7, size=(40, DIM)):
            lines.append(",".join(f"{v:.4f}" for v in x) + f",{name}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_third_modality_fits_predicts_and_reports_through_the_cli(vectors_csv, tmp_path, capsys):
    run = tmp_path / "fit"
    assert main(["fit", str(vectors_csv), "--strategy", "finetune", "--epochs", "3", "--out", str(run)]) == 0
    summary = read_json(run / "summary.json")
    assert summary["modality"] == "vectors" and summary["backbone"] == "toy-linear"
    assert summary["weights"] == "toy:fixed" and summary["input_size"] == DIM
    assert summary["test_accuracy"] > 0.8  # three well-separated clusters
    # no explanation method is registered for vectors: no section, and no error either
    assert "explanations_error" not in summary and not (run / "explanations").exists()
    assert read_json(run / "model.json")["format"].startswith("headstart-vectors-classifier/")
    capsys.readouterr()

    assert main(["predict", str(run), "3,0,0,0,0,0", "0,0,3,0,0,0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["a", "c"]

    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "6 dims" in page and "toy-linear" in page


@pytest.mark.report
def test_a_third_modality_compares_its_default_arms(vectors_csv, tmp_path):
    from headstart.compare import run_compare
    from headstart.config import CompareConfig

    comparison = run_compare(CompareConfig(data=str(vectors_csv), out=str(tmp_path / "cmp")))
    assert [a["name"] for a in comparison["arms"]] == ["probe", "finetune", "scratch"]  # the modality's arms
    assert all(a["input_unit"] == "dims" for a in comparison["arms"])
    assert comparison["baseline_arm"] == "scratch" and comparison["target_source"] == "baseline-plateau"
    scratch = read_json(tmp_path / "cmp" / "arms" / "scratch" / "summary.json")
    assert scratch["weights"] == "random" and scratch["epochs_run"] <= 12  # the modality's scratch default
    assert (tmp_path / "cmp" / "report.html").exists()
