"""`headstart audit`: label errors found on out-of-fold probabilities, duplicates and leaks from
the embeddings, outliers, the files it writes, and `fit --exclude`'s reader."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import make_blobs, write_image_folder
from headstart.errors import HeadstartError
from headstart.label.audit import find_problems
from headstart.label.exclude import read_exclusions


def separable(n_per_class=100, classes=3, dim=48, flips=15, seed=0):
    """Well-separated Gaussian classes in `dim` dimensions, with `flips` labels changed."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, dim)) * 4
    truth = np.repeat(np.arange(classes), n_per_class)
    features = (centres[truth] + rng.normal(0, 1, (len(truth), dim))).astype(np.float32)
    given = truth.copy()
    flipped = rng.choice(len(truth), flips, replace=False)
    given[flipped] = (given[flipped] + rng.integers(1, classes, flips)) % classes
    return features, truth, given, flipped


def test_flipped_labels_are_found_first_with_their_true_class():
    features, truth, given, flipped = separable()
    splits = np.array(["train"] * len(given))
    found = find_problems(features, given, 3, splits, folds=5, seed=0)
    errors = found["label_errors"]
    top = [e["position"] for e in errors[:len(flipped)]]
    assert np.isin(top, flipped).mean() >= 0.9  # precision at k = the number flipped
    assert len(errors) >= 0.8 * len(flipped)    # and most flips are flagged at all
    for e in errors:
        if e["position"] in flipped:
            assert e["suggested"] == truth[e["position"]] and e["given"] == given[e["position"]]
    confidences = [e["self_confidence"] for e in errors]
    assert confidences == sorted(confidences)  # most likely wrong first
    assert found["probe"]["out_of_fold_accuracy"] > 0.9


def test_a_copy_across_train_and_test_is_a_leak_within_a_split_a_duplicate_and_a_far_item_an_outlier():
    features, _, given, _ = separable(flips=0)
    n = len(features)
    rng = np.random.default_rng(1)
    far = (rng.normal(0, 1, (1, features.shape[1])) * 40).astype(np.float32)
    features = np.vstack([features, features[[3]], features[[10]], far])
    given = np.concatenate([given, given[[3, 10]], [0]])
    splits = np.array(["train"] * n + ["test", "train", "val"])
    hashes = np.array([f"h{i}" for i in range(n)] + ["h3", "other", "far"])
    found = find_problems(features, given, 3, splits, hashes=hashes, folds=3)
    by_pair = {(p["first"], p["second"]): p for p in found["pairs"]}
    assert by_pair[(3, n)]["kind"] == "leak" and by_pair[(3, n)]["exact"]
    assert by_pair[(10, n + 1)]["kind"] == "duplicate"
    assert found["pairs"][0]["kind"] == "leak"  # leaks are listed first
    assert [o["position"] for o in found["outliers"]][:1] == [n + 2]


def test_bad_settings_and_a_class_of_one_are_refused_clearly():
    features, _, given, _ = separable(n_per_class=10, flips=0)
    lonely = np.append(given, 3)  # a fourth class with a single item
    with pytest.raises(HeadstartError, match="single item"):
        find_problems(np.vstack([features, features[:1]]), lonely, 4, np.array(["train"] * len(lonely)))
    from headstart.label.audit import audit
    with pytest.raises(HeadstartError, match="--folds"):
        audit("blobs-nowhere", folds=1)
    with pytest.raises(HeadstartError, match="duplicate-similarity"):
        audit("blobs-nowhere", duplicate_similarity=1.5)


def _subject(data):
    """Blobs split 60/20/20 by hand, embedded by an untrained resnet9 (no weights needed)."""
    from headstart.label.audit import AuditSubject
    from headstart.zoo import resolve_backbone

    index = np.arange(len(data))
    splits = np.array(["train", "train", "train", "val", "test"] * (len(data) // 5) + ["train"] * (len(data) % 5))
    model = resolve_backbone("resnet9").build(pretrained=False, image_size=32)
    return AuditSubject(data, index, splits, model, "blobs", {"name": "resnet9", "weights": "random"})


def _planted_blobs():
    """Blobs with item 0 (train) copied as the last item (test), and item 1's label flipped."""
    from headstart.data.dataset import ImageData

    data = make_blobs(n_per_class=20)
    images = np.concatenate([data.images, data.images[:1]])
    labels = np.concatenate([data.labels, data.labels[:1]])
    labels[1] = (labels[1] + 1) % 3
    paths = [f"/data/{i}.png" for i in range(len(images))]
    return ImageData(images=images, labels=labels, classes=data.classes, name="blobs", paths=paths)


def test_audit_writes_a_ranked_csv_json_and_a_gallery_report(tmp_path):
    from headstart.label.audit import audit_subject

    data = _planted_blobs()
    subject = _subject(data)
    subject.splits[-1] = "test"
    result = audit_subject(subject, tmp_path / "audit", folds=3, seed=0)
    out = tmp_path / "audit"
    rows = list(csv.DictReader(open(out / "audit.csv")))
    assert list(rows[0]) == ["kind", "rank", "path", "index", "split", "given", "suggested", "score", "detail",
                             "other", "other_index", "other_split", "exclude"]
    kinds = [r["kind"] for r in rows]
    assert kinds == sorted(kinds, key=["label_error", "leak", "duplicate", "outlier"].index)
    leak = next(r for r in rows if r["kind"] == "leak" and r["detail"] == "exact")
    assert {leak["index"], leak["other_index"]} == {str(len(data) - 1), "0"}
    assert leak["split"] == "test" and leak["path"] == f"/data/{len(data) - 1}.png"  # the evaluation copy
    for kind in ("label_error", "leak", "duplicate", "outlier"):
        scores = [float(r["score"]) for r in rows if r["kind"] == kind]
        assert scores == sorted(scores, reverse=True)
    saved = json.loads((out / "audit.json").read_text())
    assert saved["counts"] == result["counts"] and saved["items"] == len(data)
    assert set(saved) >= {"label_errors", "pairs", "outliers", "probe", "rules", "rows", "gallery", "backbone"}
    page = (out / "report.html").read_text()
    assert "Leaks: the same item in two splits" in page
    shown = [g for g in saved["gallery"] if g["kind"] == "leak"][0]
    assert (out / shown["view"]["image"]).is_file() and shown["view"]["image"] in page
    # the audit CSV, marked, is what fit --exclude reads
    marked = out / "marked.csv"
    with open(marked, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "exclude": "x" if r is leak else ""})
    assert read_exclusions(marked, data).tolist() == [int(leak["index"])]


def test_text_items_are_shown_as_snippets(tmp_path):
    from conftest import make_texts
    from headstart.label.audit_write import _PREVIEWS

    texts = make_texts(n_per_class=3)
    assert _PREVIEWS[texts.item_column](texts, 0, tmp_path) == {"text": " ".join(texts.texts[0].split())}


@pytest.mark.slow
def test_audit_of_a_folder_embeds_with_a_pretrained_backbone_and_splits_as_fit_does(tmp_path, capsys):
    """The command end to end: audit a folder, mark the first flagged item, fit --exclude drops it."""
    import csv

    from headstart.cli import main

    folder = write_image_folder(tmp_path / "images", make_blobs(n_per_class=12))
    assert main(["audit", str(folder), "--backbone", "tf_efficientnet_lite0", "--image-size", "32", "--folds", "3",
                 "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert result["items"] == 36 and sum(result["split_sizes"].values()) == 36
    assert result["backbone"]["name"] == "tf_efficientnet_lite0"
    assert (tmp_path / "run" / "report.html").is_file() and "--exclude" in printed
    rows = list(csv.DictReader((tmp_path / "run" / "audit.csv").open()))
    if not rows:  # nothing flagged on clean blobs: mark one item by hand, as a user would
        rows = [{"path": str(sorted(folder.rglob("*.png"))[0]), "exclude": ""}]
    marked = tmp_path / "confirmed.csv"
    with marked.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{**rows[0], "exclude": "yes"}, *rows[1:]])
    assert main(["-q", "fit", str(folder), "--exclude", str(marked), "--image-size", "32", "--explain-examples", "0",
                 "--out", str(tmp_path / "fit")]) == 0
    sizes = json.loads((tmp_path / "fit" / "summary.json").read_text())["sizes"]
    assert sum(sizes.values()) == 35


# -- fit --exclude ---------------------------------------------------------------------------

def test_exclusions_drop_exactly_the_listed_items(tmp_path):
    data = _planted_blobs()
    listed = tmp_path / "drop.txt"
    listed.write_text("/data/4.png\n\n/data/9.png\n")
    assert read_exclusions(listed, data).tolist() == [4, 9]
    by_index = tmp_path / "drop.csv"
    by_index.write_text("index,path\n7,/data/7.png\n2,\n")
    assert read_exclusions(by_index, data).tolist() == [2, 7]
    # a file named relative to the list's folder is the data's file, however the data spells it
    write_image_folder(tmp_path / "imgs", make_blobs(n_per_class=2))
    from headstart.modalities import load_data
    folder = load_data(str(tmp_path / "imgs"))
    relative = tmp_path / "relative.txt"
    relative.write_text("imgs/green/0002.png\n")
    assert [folder.item_names()[i] for i in read_exclusions(relative, folder)] == \
        [str(tmp_path / "imgs" / "green" / "0002.png")]


def test_texts_are_excluded_by_the_text_and_every_copy_goes(tmp_path):
    from conftest import make_texts
    from headstart.data.dataset import TextData

    texts = make_texts(n_per_class=4)
    data = TextData(texts=texts.texts + [texts.texts[0]], labels=np.append(texts.labels, texts.labels[0]),
                    classes=texts.classes, name="t")
    listed = tmp_path / "drop.csv"
    with open(listed, "w", newline="") as f:
        csv.writer(f).writerows([["text"], [texts.texts[0]]])
    assert read_exclusions(listed, data).tolist() == [0, len(data) - 1]


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("/data/nowhere.png\n", "not in blobs"),
    ("index,path\n3,/data/4.png\n", "do not match the data"),
    ("index,path\n999,\n", "not in blobs"),
    ("kind,path,index,exclude\nlabel_error,/data/1.png,1,\n", "no row .* is marked"),
    ("index,path\nthree,/data/3.png\n", "not a whole number"),
])
def test_bad_exclusion_files_are_refused_with_a_clear_error(tmp_path, content, message):
    path = tmp_path / "drop.csv"
    path.write_text(content)
    with pytest.raises(HeadstartError, match=message):
        read_exclusions(path, _planted_blobs())
    with pytest.raises(HeadstartError, match="no such file"):
        read_exclusions(tmp_path / "missing.csv", _planted_blobs())


@pytest.mark.slow
def test_audit_of_a_run_uses_its_splits_and_backbone_and_refuses_fit_settings(tmp_path):
    import headstart.pipeline  # noqa: F401  (registers how Run.reload_data reloads a run's data)
    from headstart.api import fit
    from headstart.label.audit import audit

    folder = write_image_folder(tmp_path / "images", make_blobs(n_per_class=12))
    fit(str(folder), out=str(tmp_path / "run"), strategy="probe", image_size=32, explain_examples=0,
        extract_engine="torch")
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    result = audit(str(tmp_path / "run"), folds=3, out=str(tmp_path / "audit"))
    assert result["split_sizes"] == {name: len(splits[name]) for name in ("train", "val", "test")}
    assert result["source"] == str(tmp_path / "run")
    with pytest.raises(HeadstartError, match="run's own backbone"):
        audit(str(tmp_path / "run"), backbone="tf_efficientnet_lite0", out=str(tmp_path / "audit2"))
