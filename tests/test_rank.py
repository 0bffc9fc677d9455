"""`headstart rank`: candidates embed the training split once, every score runs, the
recommended score picks (cost breaks ties), unbuildable candidates are skipped with their
reason, and the features it cached are the ones a later probe fit reads."""
from __future__ import annotations

import json

import pytest

from conftest import make_blobs, write_image_folder

CHEAP = "tf_efficientnet_lite0:32,tf_efficientnet_lite0:48"
HUB_ONLY = "resnet18"  # its weights come from the hub only: it cannot load in these offline tests
SPLIT = ["--train-per-class", "8", "--seed", "0"]


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    """One ranking through the command line, shared by the tests that read what it wrote."""
    from headstart.cli import main

    root = tmp_path_factory.mktemp("rank")
    folder = write_image_folder(root / "data", make_blobs(n_per_class=16, size=32))
    out = root / "run"
    with pytest.MonkeyPatch.context() as patch:  # the session's private cache (set per test, after this runs)
        patch.setenv("HEADSTART_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        code = main(["-q", "rank", str(folder), "--candidates", f"{CHEAP},{HUB_ONLY}", "--out", str(out),
                     "--extract-engine", "torch", *SPLIT])
    assert code == 0
    return {"folder": folder, "out": out, "rank": json.loads((out / "rank.json").read_text())}


def test_rank_writes_every_score_or_why_it_was_skipped(ranked):
    from headstart.choose.scores import SCORES

    rank = ranked["rank"]
    assert {c["candidate"] for c in rank["candidates"]} == set(CHEAP.split(","))
    for c in rank["candidates"]:
        assert set(c["scores"]) == set(SCORES)
        for name, s in c["scores"].items():
            assert (s["value"] is not None) != bool(s["skipped"]), (c["candidate"], name, s)
            assert s["seconds"] >= 0
        assert c["embed_seconds"] > 0 and c["ms_per_example"] > 0
        assert c["input_size"] == int(c["candidate"].rsplit(":", 1)[1])  # each candidate read at its own size
    assert rank["train_size"] == 8 * 3
    assert rank["machine"]["cores"] and rank["settings"]["train_per_class"] == 8


def test_relative_and_model_scores_are_set_across_the_candidates(ranked):
    """NCTI's value is its terms min-max normalised over the candidates ranked together; the
    size prior reads the parameters that compute each candidate's features."""
    import math

    from headstart.choose.scores import combine_terms
    from headstart.choose.scores import SCORES

    candidates = ranked["rank"]["candidates"]
    terms = [c["scores"]["ncti"]["terms"] for c in candidates]
    values = [c["scores"]["ncti"]["value"] for c in candidates]
    assert values == pytest.approx(list(combine_terms(terms, SCORES["ncti"].relative)))
    for c in candidates:
        assert c["parameters"] > 100_000
        assert c["scores"]["size"]["value"] == pytest.approx(math.log10(c["parameters"]))


def test_rank_report_is_written_with_its_figure(ranked):
    page = (ranked["out"] / "report.html").read_text()
    assert (ranked["out"] / "rank_scores.png").stat().st_size > 1000
    assert "rank_scores.png" in page
    assert ranked["rank"]["recommendation"]["reason"].split(":")[0] in page
    for c in ranked["rank"]["candidates"]:
        assert c["candidate"] in page


def test_a_candidate_that_cannot_load_offline_is_skipped_with_its_reason(ranked):
    skipped = ranked["rank"]["skipped"]
    assert [s["candidate"] for s in skipped] == [HUB_ONLY]
    assert HUB_ONLY in skipped[0]["reason"] and "offline" in skipped[0]["reason"]


def test_the_recommendation_is_the_best_by_the_recommended_score(ranked):
    from headstart.choose.rank import TIE_NOISE, recommend

    rank = ranked["rank"]
    chosen = rank["recommendation"]
    assert chosen == recommend(rank)
    assert chosen["score"] == rank["recommended_score"]
    values = {c["candidate"]: c["scores"][chosen["score"]]["value"] for c in rank["candidates"]}
    best = max(values.values())
    noise = TIE_NOISE[chosen["score"]](list(values.values()), rank["train_size"])
    # the argmax, or a candidate within noise of it that is cheaper to run
    tied = [c for c in rank["candidates"] if best - values[c["candidate"]] <= noise]
    assert chosen["candidate"] == min(tied, key=lambda c: c["ms_per_example"])["candidate"]
    assert chosen["value"] == values[chosen["candidate"]]
    assert rank["candidates"][0]["candidate"] == chosen["candidate"]


def test_a_later_probe_fit_reuses_the_ranked_features(ranked, tmp_path):
    from headstart.config import FitConfig
    from headstart.pipeline import fit

    largest = next(c for c in ranked["rank"]["candidates"] if c["input_size"] == 48)
    assert largest["features_cached"] is False  # the ranking computed them
    result = fit(FitConfig(data=str(ranked["folder"]), backbone="tf_efficientnet_lite0", image_size=48,
                           strategy="probe", train_per_class=8, seed=0, extract_engine="torch",
                           explain_examples=0, out=str(tmp_path / "fit")))
    assert result.summary["features_cached"] is True


def test_the_command_line_prints_the_table_and_the_recommendation(ranked, capsys, tmp_path):
    from headstart.cli import main

    out = tmp_path / "again"
    assert main(["rank", str(ranked["folder"]), "--candidates", CHEAP, "--scores", "linear,logme", "--out",
                 str(out), "--extract-engine", "torch", *SPLIT]) == 0
    printed = capsys.readouterr().out
    again = json.loads((out / "rank.json").read_text())
    assert again["scores"] == ["linear", "logme"]
    assert all(c["features_cached"] for c in again["candidates"])  # the first ranking's features
    assert "recommended:" in printed and again["recommendation"]["backbone"] in printed
    assert str(out / "report.html") in printed


def test_when_no_candidate_can_be_built_the_error_lists_every_reason():
    from headstart.choose.rank import rank_candidates
    from headstart.errors import HeadstartError

    with pytest.raises(HeadstartError) as caught:
        rank_candidates(make_blobs(n_per_class=6), f"{HUB_ONLY},no_such_backbone_xyz", extract_engine="torch")
    message = str(caught.value)
    assert HUB_ONLY in message and "no_such_backbone_xyz" in message and "unknown backbone" in message


def test_an_unknown_score_fails_before_any_model_is_built():
    from headstart.choose.rank import rank_candidates
    from headstart.errors import HeadstartError

    with pytest.raises(HeadstartError, match="unknown transferability score"):
        rank_candidates(make_blobs(n_per_class=6), "tf_efficientnet_lite0:32", scores=["nope"])


def test_an_intermediate_layer_is_a_candidate_like_any_other():
    from headstart.choose.rank import rank_candidates
    from headstart.errors import HeadstartError
    from headstart.zoo import resolve_backbone

    try:
        resolve_backbone("tf_efficientnet_lite0@block3")
    except HeadstartError as e:
        pytest.skip(f"the layer resolver is not there yet: {e}")
    result = rank_candidates(make_blobs(n_per_class=8), "tf_efficientnet_lite0@block3:32,tf_efficientnet_lite0:32",
                             scores=["linear", "logme"], extract_engine="torch")
    assert not result["skipped"]
    dims = {c["candidate"]: c["feature_dim"] for c in result["candidates"]}
    assert dims["tf_efficientnet_lite0@block3:32"] < dims["tf_efficientnet_lite0:32"]  # a shallower layer


def _entry(name: str, value: float, ms: float, logme: float) -> dict:
    return {"candidate": name, "backbone": name, "image_size": None, "input_size": 224, "unit": "px",
            "ms_per_example": ms, "scores": {"linear": {"value": value}, "logme": {"value": logme}}}


def _result(*entries) -> dict:
    return {"scores": ["linear", "logme"], "train_size": 60, "candidates": list(entries)}


def test_a_tie_within_noise_goes_to_the_cheaper_candidate(monkeypatch):
    import headstart.choose.rank as rank

    monkeypatch.setattr(rank, "RECOMMENDED_SCORE", "linear")
    # 0.90 vs 0.91 on 60 examples: a difference far inside the binomial noise (~0.04)
    chosen = rank.recommend(_result(_entry("big", 0.91, ms=9.0, logme=1.0), _entry("small", 0.90, ms=2.0, logme=0.5)))
    assert chosen["candidate"] == "small"
    assert "within noise of big" in chosen["reason"] and "cheaper" in chosen["reason"]
    assert "LogME prefers big" in chosen["reason"]


def test_a_clear_winner_wins_whatever_it_costs(monkeypatch):
    import headstart.choose.rank as rank

    monkeypatch.setattr(rank, "RECOMMENDED_SCORE", "linear")
    chosen = rank.recommend(_result(_entry("big", 0.95, ms=9.0, logme=1.0), _entry("small", 0.60, ms=2.0, logme=0.5)))
    assert chosen["candidate"] == "big" and chosen["value"] == 0.95
    assert chosen["reason"].startswith("big at 224 px: the highest cross-validated probe accuracy (0.950 vs 0.600")
    assert "LogME agrees" in chosen["reason"]


def test_the_recommended_score_decides(monkeypatch):
    import headstart.choose.rank as rank

    monkeypatch.setattr(rank, "RECOMMENDED_SCORE", "logme")
    chosen = rank.recommend(_result(_entry("big", 0.95, ms=9.0, logme=0.1), _entry("small", 0.60, ms=2.0, logme=0.9)))
    assert chosen["candidate"] == "small" and chosen["score"] == "logme"
