"""Small finished runs the export and serve tests read, each made as cheaply as what those tests
prove allows: through the command line, in this process."""
from __future__ import annotations

import csv
from contextlib import contextmanager

import pytest

from conftest import make_texts


def fit_image_probe(folder, out):
    """A probe on `folder` at 64 px. Its features come from PyTorch eager: image probes extract
    through onnxruntime by default, which first exports the backbone with torch.export (the
    fit's slowest step on 2 cores), and nothing the export or serve tests check depends on it."""
    from headstart.cli import main

    assert main(["-q", "fit", str(folder), "--strategy", "probe", "--image-size", "64", "--extract-engine", "torch",
                 "--out", str(out), "--explain-examples", "0"]) == 0
    return out


def write_text_csv(path, n_per_class: int = 16):
    """The topics texts as a CSV of text and label."""
    data = make_texts(n_per_class=n_per_class)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([text, data.classes[label]] for text, label in zip(data.texts, data.labels))
    return path


def fit_minilm_probe(texts_csv, out):
    """A probe on the packaged MiniLM at 12 tokens: the text run the export and serve tests read."""
    from headstart.cli import main

    assert main(["-q", "fit", str(texts_csv), "--backbone", "all-MiniLM-L6-v2", "--strategy", "probe",
                 "--max-length", "12", "--out", str(out), "--explain-examples", "0"]) == 0
    return out


@contextmanager
def quick_deploy_rows():
    """An export times its model for the run's deploy table (3 s a model); a glance is enough
    where nothing reads the figures."""
    from headstart.deploy import onnx_export

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_export, "MEASURE_SECONDS", 0.2)
        yield
