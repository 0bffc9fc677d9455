"""Text end to end on a tiny random-init BERT built here (no downloads): backbone, tokenisation
cache, every strategy, predict on raw text, compare with the TF-IDF baseline."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from headstart.config import FitConfig
from headstart.data.dataset import TextData
from headstart.pipeline import fit
from headstart.strategies import STRATEGIES

from conftest import FILLER, TOPICS, make_texts, make_tiny_bert  # noqa: F401

@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def texts():
    return make_texts()


def run(tmp_path, data, strategy, backbone, **settings):
    config = FitConfig(data="topics", backbone=backbone, strategy=strategy, out=str(tmp_path / strategy),
                       max_eval=30, **settings)
    return fit(config, data=data)


# ----------------------------------------------------------------------------- backbone

def test_a_model_folder_is_a_text_backbone_with_layer_groups(tiny_bert):
    from headstart.zoo import get_backbone

    backbone = get_backbone(tiny_bert)
    assert backbone.modality == "text" and backbone.feature_dim == 32
    assert backbone.preprocessing.pooling == "mean"  # a plain encoder: mean pooling
    groups = backbone.param_groups()
    assert len(groups) == 4  # embeddings, 2 blocks, pooler
    assert sum(len(g) for g in groups) == len(list(backbone.parameters()))


def test_padding_never_changes_a_texts_features(tiny_bert):
    from headstart.zoo import get_backbone

    backbone = get_backbone(tiny_bert).eval()
    alone, _ = backbone.tokenize(["goal match"])
    batch, _ = backbone.tokenize(["goal match", "rain storm wind cloud snow sunny forecast the a of"])
    with torch.no_grad():
        a = backbone(torch.from_numpy(alone))[0]
        b = backbone(torch.from_numpy(batch))[0]
    assert batch.shape[1] > alone.shape[1] and (batch[0] == -1).sum() > 0
    assert torch.allclose(a, b, atol=1e-5)


def test_cls_pooling_and_normalize_follow_a_sentence_transformers_folder(tiny_bert, tmp_path):
    import shutil

    from headstart.zoo import get_backbone

    folder = tmp_path / "st"
    shutil.copytree(tiny_bert, folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                                   "pooling_mode_mean_tokens": False}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    backbone = get_backbone(str(folder)).eval()
    assert backbone.preprocessing.pooling == "cls" and backbone.preprocessing.normalize
    ids, _ = backbone.tokenize(["bank shares"])
    with torch.no_grad():
        features = backbone(torch.from_numpy(ids))
    assert torch.allclose(features.norm(dim=1), torch.ones(1), atol=1e-5)
    assert get_backbone(str(folder), pooling="mean").preprocessing.pooling == "mean"  # --pooling wins


def test_tokenisation_is_cached_and_truncation_counted(tiny_bert, texts, monkeypatch):
    from headstart.data.cache import cache_dir
    from headstart.zoo import get_backbone

    backbone = get_backbone(tiny_bert, max_length=8)
    before = set((cache_dir() / "tokens").glob("*.npz"))  # the cache is shared by the session's tests
    first = backbone.prepare(texts)
    longer = sum(len(t.split()) + 2 > 8 for t in texts.texts)
    assert first.notes["truncated"] == longer > 0
    assert first.tokens.shape == (len(texts), 8)
    assert (first.tokens[:, -1][first.tokens[:, -1] >= 0] == backbone.tokenizer.sep_token_id).all()
    assert len(set((cache_dir() / "tokens").glob("*.npz")) - before) == 1
    import headstart.zoo.tokens as tokens

    monkeypatch.setattr(tokens, "tokenize", lambda *a: pytest.fail("tokenised twice"))
    again = backbone.prepare(texts)
    assert np.array_equal(again.tokens, first.tokens) and again.notes["truncated"] == longer


def test_max_length_beyond_the_model_is_refused(tiny_bert):
    from headstart.errors import HeadstartError
    from headstart.zoo import get_backbone

    with pytest.raises(HeadstartError, match="max length 500"):
        get_backbone(tiny_bert, max_length=500)


def test_text_data_with_an_image_backbone_is_refused(tmp_path, texts):
    from headstart.errors import HeadstartError

    with pytest.raises(HeadstartError, match="text data but"):
        run(tmp_path, texts, "probe", "resnet9")


# ----------------------------------------------------------------------------- strategies

def test_tfidf_learns_topic_words_and_predicts_raw_text(tmp_path, texts):
    from headstart.prediction import predict_inputs

    result = run(tmp_path, texts, "tfidf", None)
    assert result.summary["test_accuracy"] >= 0.9
    assert result.summary["backbone"] == "tfidf" and "tfidf_C" in result.summary
    answers = predict_inputs(result.run_dir, ["the bank shares and stocks", "rain and snow storm", " "])
    assert [a.label for a in answers] == ["money", "weather", None]
    assert answers[2].error == "empty text"


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))  # every registered strategy works on text
def test_every_strategy_trains_saves_and_reloads_on_text(tmp_path, tiny_bert, texts, strategy):
    from headstart.model_io import load_model

    result = run(tmp_path, texts, strategy, tiny_bert, epochs=2)
    s = result.summary
    assert s["modality"] == "text" and s["strategy"] == strategy
    # tfidf trains the zoo's TF-IDF model whatever the backbone; the others the tiny BERT
    assert s["backbone"] == (STRATEGIES[strategy].architecture or tiny_bert)
    assert s["weights"].startswith({"tfidf": "none", "scratch": "random"}.get(strategy, "file:"))
    # the topic directions in the tiny BERT are there to transfer; from scratch, 2 epochs of
    # a random BERT still beat chance (1/3)
    assert s["test_accuracy"] >= (0.45 if strategy == "scratch" else 0.9), s["test_accuracy"]
    assert isinstance(s["misclassified"], list)
    # the saved run predicts exactly what the trained model does (through the one protocol)
    reloaded, meta = load_model(result.run_dir)
    assert meta["format"] == result.classifier.format and meta["modality"] == "text"
    sample = texts.subset(np.arange(6))
    with torch.no_grad():
        expected = result.classifier.logits(result.classifier.prepare(sample))
        assert torch.allclose(reloaded.logits(reloaded.prepare(sample)), expected, atol=1e-4)


def test_probe_beats_chance_on_text(tmp_path, tiny_bert, texts):
    result = run(tmp_path, texts, "probe", tiny_bert)
    assert result.summary["best_val_accuracy"] > 0.6  # 3 classes: chance is 0.33


def test_lora_trains_few_parameters_and_saves_a_merged_plain_model(tmp_path, tiny_bert, texts):
    from safetensors import safe_open

    result = run(tmp_path, texts, "lora", tiny_bert, epochs=2, lr=1e-2)
    s = result.summary
    assert s["lora_rank"] == 8 and 0 < s["lora_trainable_fraction"] < 0.5
    with safe_open(str(result.run_dir / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not any("lora" in k for k in keys)  # merged: no adapters, no PEFT needed to predict
    assert any(k.endswith("query.weight") for k in keys)


def test_finetune_decays_the_rate_layer_by_layer_on_text():
    from headstart.strategies import get_strategy
    from headstart.train.optim import layerwise_groups

    from headstart.modalities import get_modality

    finetune, text, image = get_strategy("finetune"), get_modality("text"), get_modality("image")
    assert finetune.lr(FitConfig(data="x"), text) == pytest.approx(1e-4)
    assert finetune.lr(FitConfig(data="x"), image) == pytest.approx(1e-3)  # the modality made the difference
    assert finetune.spread(4, image) == pytest.approx(100.0)  # fastai's slice(lr/100, lr) for CNNs
    spread = finetune.spread(4, text)
    params = [[torch.nn.Parameter(torch.zeros(1))] for _ in range(4)]
    groups = layerwise_groups(params, torch.nn.Linear(1, 1), 1.0, spread)
    rates = [g["lr"] for g in groups[:4]]
    assert rates[3] == pytest.approx(1.0)
    assert [rates[i] / rates[i + 1] for i in range(3)] == pytest.approx([0.8] * 3)


def test_embedding_bag_scratch_reads_the_backbones_tokens(tmp_path, tiny_bert, texts):
    result = run(tmp_path, texts, "scratch", tiny_bert, scratch_model="embedding-bag", epochs=8)
    s = result.summary
    assert s["backbone"] == "embedding-bag" and s["weights"] == "random"
    assert s["best_val_accuracy"] > 0.6


# ----------------------------------------------------------------------------- CLI: fit, predict, compare

def write_csv(path, data: TextData):
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "category"])
        for text, label in zip(data.texts, data.labels):
            w.writerow([text, data.classes[label]])
    return path


def headstart(*args, env=None):
    return subprocess.run([sys.executable, "-m", "headstart.cli", *args], capture_output=True, text=True,
                          env=env)


@pytest.mark.report
def test_cli_fit_and_predict_text_from_a_csv_and_a_lines_file(tmp_path, tiny_bert, texts, capsys):
    from headstart.cli import main

    data = write_csv(tmp_path / "reviews.csv", texts)
    out = tmp_path / "run"
    done = headstart("fit", str(data), "--backbone", tiny_bert, "--strategy", "probe", "--max-eval", "30",
                     "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout
    assert (out / "tokenizer").is_dir() and (out / "report.html").exists()
    lines = tmp_path / "lines.txt"
    lines.write_bytes("bank shares profit\n\nrain storm snow caf\xe9\n".encode("latin-1"))
    # predict in this process: the fit above is text's end-to-end run through the command line
    assert main(["predict", str(out), "goal match team", "--file", str(lines), "--csv", str(tmp_path / "p.csv")]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("goal match team\t")
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "text,label,probability,error"


@pytest.mark.report
def test_compare_on_text_names_the_strong_baseline(tmp_path, tiny_bert, texts):
    from headstart.cli import main

    data = write_csv(tmp_path / "reviews.csv", texts)
    out = tmp_path / "cmp"
    # in this process: what is tested is compare on text, not a process's start
    assert main(["-q", "compare", str(data), "--backbone", tiny_bert, "--arms", "probe,tfidf,scratch",
                 "--epochs", "3", "--max-eval", "30", "--out", str(out)]) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    arms = {a["name"]: a for a in comparison["arms"]}
    assert arms["tfidf"]["baseline"] and arms["scratch"]["baseline"] and not arms["probe"]["baseline"]
    assert arms["scratch"]["backbone"] == "embedding-bag"  # the text default scratch model
    # the bar: TF-IDF's best validation accuracy (one-shot) or the scratch arm's plateau
    assert comparison["target_source"] in ("baseline-best-val", "baseline-plateau")
    best_baseline = max((a for a in arms.values() if a["baseline"]), key=lambda a: a["test_accuracy"])
    # the strongest baseline on test (where two tie, either)
    assert arms[comparison["baseline_arm"]]["test_accuracy"] == best_baseline["test_accuracy"]
    # the verdict names the baseline it compared against, in words: TF-IDF or scratch
    named = {"tfidf": "TF-IDF", "scratch": "scratch"}[comparison["baseline_arm"]]
    assert named in comparison["verdict_sentence"]
    assert (out / "report.html").exists()


def test_the_estimator_takes_lists_of_texts(tmp_path, texts):
    from headstart.api import HeadstartClassifier

    labels = [texts.classes[k] for k in texts.labels]
    clf = HeadstartClassifier(strategy="tfidf", out=str(tmp_path / "est"), max_eval=30)
    clf.fit(texts.texts + ["   "], labels + ["sport"])
    assert clf.summary_["skipped_files"] == 1  # the blank text, counted
    assert list(clf.predict(["bank shares stocks", "goal match cup"])) == ["money", "sport"]
    assert clf.score(texts.texts, labels) >= 0.9


def test_a_killed_lora_run_resumes_with_its_adapters(tmp_path, tiny_bert, texts):
    import os

    from headstart.records import read_metrics

    data = write_csv(tmp_path / "reviews.csv", texts)
    args = ["fit", str(data), "--backbone", tiny_bert, "--strategy", "lora", "--epochs", "3", "--patience", "9",
            "--max-eval", "30"]
    env = {**os.environ, "HEADSTART_QUIET": "1"}
    killed = headstart(*args, "--out", str(tmp_path / "run"), env={**env, "HEADSTART_KILL_AFTER": "lora:1"})
    assert killed.returncode == -9, killed.stderr
    # the kill needs a process of its own; resuming and the straight run do not
    from headstart.cli import main

    assert main(["-q", "fit", str(data), "--out", str(tmp_path / "run"), "--resume"]) == 0
    assert main(["-q", *args, "--out", str(tmp_path / "straight")]) == 0

    def curve(run):
        return [(r["epoch"], round(r["accuracy"], 5), round(r["loss"], 3))  # the 4th digit wobbles between processes
                for r in read_metrics(run) if r["split"] == "val" and r.get("phase") == "lora"]
    assert [e for e, _, _ in curve(tmp_path / "run")] == [1.0, 2.0, 3.0]
    assert curve(tmp_path / "run") == curve(tmp_path / "straight")
