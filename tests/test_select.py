"""Active-learning queries on constructed layouts, `select` on a pool, and `fit --add-labels`."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.label.al_classifier import FixedLinear, fit_classifier, fixed_classifier, head_on_standardised
from headstart.label.queries import QUERIES, QueryInput, run_query
from headstart.records import read_json

from conftest import make_blobs, make_texts, write_image_folder

FAST = ["--image-size", "32", "--explain-examples", "0"]


def clusters(n_clusters=5, per_cluster=30, dim=8, seed=0):
    """Tight, far-apart clusters: cluster c sits at 20 * e_c."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:n_clusters] * 20
    x = np.concatenate([c + rng.normal(scale=0.3, size=(per_cluster, dim)) for c in centres])
    return x, np.repeat(np.arange(n_clusters), per_cluster)


@pytest.mark.parametrize("name", list(QUERIES))
def test_every_query_returns_k_distinct_pool_items_with_finite_scores(name):
    x, y = clusters()
    labelled = np.arange(0, 150, 10)  # three from each cluster
    pool = np.setdiff1d(np.arange(len(x)), labelled)
    classifier = fit_classifier(x, np.where(np.isin(np.arange(len(x)), labelled), y, np.nan), 5)
    chosen, scores = run_query(name, QueryInput(x[labelled], y[labelled], x[pool], classifier, seed=1), 7)
    assert len(chosen) == 7 and len(set(chosen.tolist())) == 7
    assert chosen.min() >= 0 and chosen.max() < len(pool)
    assert np.isfinite(scores).all()


def test_uncertainty_queries_pick_the_most_ambiguous_items():
    # a fixed two-class head on 1-d features: x = 0 is the decision boundary
    weight, bias = np.array([[-2.0], [2.0]]), np.zeros(2)
    pool = np.array([[-3.0], [-0.1], [2.5], [0.05], [4.0], [-1.5], [0.3]])
    labelled, labels = np.array([[-5.0], [5.0]]), np.array([0, 1])
    classifier = fixed_classifier(weight, bias, labelled, labels)
    for name in ("margin", "entropy", "least-confidence"):
        chosen, scores = run_query(name, QueryInput(labelled, labels, pool, classifier), 3)
        assert set(chosen.tolist()) == {1, 3, 6}, name  # |x| = 0.1, 0.05, 0.3: the three nearest the boundary
        assert chosen[0] == 3  # the most ambiguous first
        assert scores[0] >= scores[1] >= scores[2]


def test_coreset_covers_every_cluster_before_revisiting_one():
    x, y = clusters(n_clusters=5)
    labelled = np.array([0])  # one labelled item, in cluster 0
    pool = np.arange(1, len(x))
    chosen, _ = run_query("coreset", QueryInput(x[labelled], y[labelled], x[pool], None), 4)
    assert sorted(y[pool][chosen].tolist()) == [1, 2, 3, 4]  # one from each uncovered cluster


def test_typiclust_picks_typical_items_of_uncovered_clusters():
    x, y = clusters(n_clusters=5)
    labelled = np.array([0])
    pool = np.arange(1, len(x))
    chosen, _ = run_query("typiclust", QueryInput(x[labelled], y[labelled], x[pool], None), 4)
    assert sorted(y[pool][chosen].tolist()) == [1, 2, 3, 4]


def test_random_is_seeded_and_query_errors_are_clear():
    x, y = clusters()
    given = QueryInput(x[:2], y[:2], x[2:], None, seed=3)
    assert run_query("random", given, 5)[0].tolist() == run_query("random", given, 5)[0].tolist()
    with pytest.raises(HeadstartError, match="more than the 148"):
        run_query("random", given, 200)
    with pytest.raises(HeadstartError, match="pool is empty"):
        run_query("random", QueryInput(x[:2], y[:2], x[:0], None), 1)
    with pytest.raises(HeadstartError, match="unknown selection method"):
        run_query("uncertainty", given, 1)


def test_the_head_rewritten_for_standardised_features_gives_the_same_logits():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(3, 2, size=(6, 4)), rng.normal(size=(3, 4)), rng.normal(size=3)
    mean, std = x.mean(0), x.std(0)
    w2, b2 = head_on_standardised(w, b, mean, std)
    assert np.allclose(FixedLinear(w, b).decision_function(x), FixedLinear(w2, b2).decision_function((x - mean) / std))


# -- select and --add-labels, end to end ---------------------------------------------------------

@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    data = write_image_folder(root / "data", make_blobs(n_per_class=20))
    pool = root / "pool"
    pool.mkdir()
    for i, f in enumerate(sorted(write_image_folder(root / "src", make_blobs(n_per_class=6, seed=9)).rglob("*.png"))):
        shutil.copy(f, pool / f"u{i:02d}.png")
    shutil.copy(data / "red" / "0001.png", pool / "copy_of_a_training_image.png")
    shutil.copy(pool / "u00.png", pool / "u00_again.png")
    assert main(["-q", "fit", str(data), "--out", str(root / "run"), *FAST]) == 0
    return root


def test_select_writes_the_ranked_csv_and_drops_what_is_labelled(image_run, capsys):
    out = image_run / "next.csv"
    assert main(["select", str(image_run / "run"), str(image_run / "pool"), "--k", "5", "--method", "margin",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dropped 1 item(s) already labelled and 1 repeated in the pool" in printed
    rows = list(csv.DictReader(out.open()))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["label"] == "" and r["guess"] in ("red", "green", "blue") for r in rows)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert not any("copy_of_a_training_image" in r["path"] for r in rows)


def test_select_refuses_a_k_beyond_the_new_items(image_run, capsys):
    assert main(["select", str(image_run / "run"), str(image_run / "pool"), "--k", "19"]) == 2
    assert "more than the 18 new item(s)" in capsys.readouterr().err


def test_add_labels_joins_the_training_part_only(image_run, capsys):
    out = image_run / "coreset.csv"
    assert main(["-q", "select", str(image_run / "run"), str(image_run / "pool"), "--k", "4", "--method", "coreset",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    for r in rows[:3]:
        r["label"] = r["guess"]
    rows.append({**rows[0], "path": str(image_run / "data" / "red" / "0002.png"), "label": "red"})  # already in the data
    labelled = image_run / "labelled.csv"
    with labelled.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = read_json(image_run / "run" / "summary.json")["sizes"]
    assert main(["-q", "fit", str(image_run / "data"), "--add-labels", str(labelled), "--out",
                 str(image_run / "run2"), *FAST]) == 0
    summary = read_json(image_run / "run2" / "summary.json")
    assert summary["sizes"]["train"] == before["train"] + 3
    assert summary["sizes"]["val"] == before["val"] and summary["sizes"]["test"] == before["test"]
    assert summary["added_labels"]["added"] == 3 and summary["added_labels"]["waiting_for_a_label"] == 1
    assert summary["added_labels"]["dropped_already_in_data"] == 1


def test_the_label_studio_loop_select_tasks_annotate_export_add_labels_fit(image_run, capsys):
    """select --format label-studio -> a labeller's answers in Label Studio's JSON export -> fit
    --add-labels reads the export: the annotated items join the training part."""
    tasks_file = image_run / "tasks.json"
    assert main(["-q", "select", str(image_run / "run"), str(image_run / "pool"), "--k", "4",
                 "--format", "label-studio", "--out", str(tasks_file)]) == 0
    tasks = json.loads(tasks_file.read_text())
    config = tasks_file.with_suffix(".xml").read_text()
    assert len(tasks) == 4 and "<Choices" in config and all(f'value="{c}"' in config for c in ("red", "green", "blue"))
    assert all(t["predictions"][0]["model_version"] == "headstart:run" for t in tasks)
    exported = []  # Label Studio's JSON export: each task with its annotations (three labelled, one skipped)
    for i, task in enumerate(tasks):
        guess = task["predictions"][0]["result"][0]
        annotations = [] if i == 3 else [{"id": i + 1, "was_cancelled": False,
                                          "result": [{**guess, "value": {"choices": guess["value"]["choices"]}}]}]
        exported.append({"id": i + 1, "data": task["data"], "annotations": annotations})
    export = image_run / "export.json"
    export.write_text(json.dumps(exported))
    before = read_json(image_run / "run" / "summary.json")["sizes"]
    assert main(["-q", "fit", str(image_run / "data"), "--add-labels", str(export), "--out",
                 str(image_run / "run_ls"), *FAST]) == 0
    summary = read_json(image_run / "run_ls" / "summary.json")
    assert summary["sizes"]["train"] == before["train"] + 3
    assert summary["added_labels"]["added"] == 3 and summary["added_labels"]["waiting_for_a_label"] == 1


def test_fit_exclude_drops_the_listed_items_before_the_split(image_run, capsys):
    listed = image_run / "exclude.txt"
    dropped = sorted((image_run / "data" / "red").glob("*.png"))[:2]
    listed.write_text("".join(f"{p}\n" for p in dropped))
    assert main(["-q", "fit", str(image_run / "data"), "--exclude", str(listed), "--out",
                 str(image_run / "run_ex"), *FAST]) == 0
    before = read_json(image_run / "run" / "summary.json")["sizes"]
    after = read_json(image_run / "run_ex" / "summary.json")["sizes"]
    assert sum(after.values()) == sum(before.values()) - 2


def test_add_labels_refuses_unknown_classes_and_missing_files(image_run, capsys):
    bad = image_run / "bad.csv"
    bad.write_text("path,label\nu01.png,purple\n")
    assert main(["fit", str(image_run / "data"), "--add-labels", str(bad), "--out", str(image_run / "r3"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "purple" in err and "blue, green, red" in err
    assert not (image_run / "r3").exists()  # nothing half-written
    bad.write_text("path,label\nnowhere.png,red\n")
    assert main(["fit", str(image_run / "data"), "--add-labels", str(bad), "--out", str(image_run / "r3"), *FAST]) == 2
    assert "name no image file" in capsys.readouterr().err


def test_select_on_a_text_file_pool(tmp_path, capsys):
    from conftest import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "bert")
    texts = make_texts(n_per_class=12)
    data = tmp_path / "topics.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([(t, texts.classes[y]) for t, y in zip(texts.texts, texts.labels)])
    pool = tmp_path / "pool.txt"
    fresh = make_texts(n_per_class=4, seed=7).texts
    pool.write_text("\n".join(fresh + [texts.texts[0]]) + "\n")  # one line repeats a training text
    run = tmp_path / "run"
    assert main(["-q", "fit", str(data), "--backbone", bert, "--out", str(run), "--explain-examples", "0"]) == 0
    assert main(["select", str(run), str(pool), "--k", "3", "--method", "entropy"]) == 0
    rows = list(csv.DictReader((run / "select-entropy.csv").open()))
    assert len(rows) == 3 and all(r["text"] in fresh for r in rows)
    assert "dropped 1 item(s) already labelled" in capsys.readouterr().out
