"""The Label Studio round trip: tasks and a labelling config Label Studio accepts, its exports
(JSON, JSON_MIN, CSV) read back, and the loop select -> Label Studio -> fit --add-labels.

The formats are checked against the official label-studio-sdk where it is installed (its
label-config parser validates our config and predictions; its converter makes the JSON_MIN and
CSV exports from a JSON export); the loop itself runs without it."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import make_blobs, make_texts, write_image_folder
from headstart.errors import HeadstartError
from headstart.label.added import read_added_labels
from headstart.label.label_studio import labelling_config, read_export, write_tasks

CLASSES = ["blue", "green", "red"]


def select_rows(items, column, guesses):
    """Rows as `headstart select` ranks them (its CSV's columns)."""
    return [{"rank": r, column: item, "score": 1.0 / r, "guess": guess, "guess_probability": 0.5 + 0.1 * (r % 3),
             "label": ""} for r, (item, guess) in enumerate(zip(items, guesses), 1)]


def annotate(tasks, labels, *, cancelled=()):
    """Tasks as Label Studio's JSON export returns them once a person chose `labels` (None:
    not annotated yet); the predictions stay beside the annotations, as in a real export."""
    exported = []
    for n, (task, label) in enumerate(zip(tasks, labels), 1):
        to_name = "image" if "image" in task["data"] else "text"
        annotations = []
        if label is not None:
            annotations.append({
                "id": 100 + n, "completed_by": 1, "was_cancelled": n in cancelled, "ground_truth": False,
                "created_at": "2026-01-02T10:00:00.000000Z", "updated_at": "2026-01-02T10:00:00.000000Z",
                "lead_time": 3.2, "result": [{"id": f"r{n}", "type": "choices", "origin": "manual", "from_name": "label",
                                              "to_name": to_name, "value": {"choices": [label]}}]})
        exported.append({"id": n, "data": task["data"], "annotations": annotations,
                         "predictions": task.get("predictions", []), "meta": {}, "inner_id": n})
    return exported


@pytest.fixture
def image_pool(tmp_path):
    folder = write_image_folder(tmp_path / "pool", make_blobs(n_per_class=2, seed=5))
    return sorted(str(p) for p in folder.rglob("*.png"))


def test_tasks_carry_the_item_the_guess_its_score_and_the_model_version(tmp_path, image_pool):
    rows = select_rows(image_pool[:3], "path", ["red", "green", "blue"])
    written = write_tasks(rows, tmp_path / "tasks.json", kind="path", classes=CLASSES, model_version="run-7")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert written["count"] == 3 and len(tasks) == 3
    first = tasks[0]
    assert first["data"]["image"] == "/data/local-files/?d=" + image_pool[0].lstrip("/")
    assert first["data"]["headstart_item"] == image_pool[0] and first["data"]["headstart_rank"] == 1
    prediction = first["predictions"][0]
    assert prediction["model_version"] == "run-7" and prediction["score"] == pytest.approx(0.6)
    assert prediction["result"] == [{"from_name": "label", "to_name": "image", "type": "choices",
                                     "value": {"choices": ["red"]}}]
    config = (tmp_path / "tasks.xml").read_text()
    assert '<Image name="image" value="$image"' in config and '<Choice value="green"/>' in config


def test_a_built_in_item_or_a_file_outside_the_served_root_is_refused(tmp_path, image_pool):
    with pytest.raises(HeadstartError, match="built-in dataset"):
        write_tasks(select_rows(["digits#3"], "path", ["red"]), tmp_path / "t.json", kind="path", classes=CLASSES,
                    model_version="v")
    with pytest.raises(HeadstartError, match="not under"):
        write_tasks(select_rows(image_pool[:1], "path", ["red"]), tmp_path / "t.json", kind="path", classes=CLASSES,
                    model_version="v", files_root=tmp_path / "elsewhere")


def test_config_and_predictions_validate_with_label_studio_sdk(tmp_path, image_pool):
    sdk = pytest.importorskip("label_studio_sdk.label_interface")
    for kind, items in (("path", image_pool[:2]), ("text", ["a goal in the cup", "rates rise"])):
        config = labelling_config(kind, CLASSES + ['odd "name" & <tag>'])
        interface = sdk.LabelInterface(config)
        interface.validate()  # the schema, unique names, toName targets
        assert set(interface.get_control("label").labels) == set(CLASSES + ['odd "name" & <tag>'])
        write_tasks(select_rows(items, kind, ["red", "blue"]), tmp_path / f"{kind}.json", kind=kind, classes=CLASSES,
                    model_version="v1")
        for task in json.loads((tmp_path / f"{kind}.json").read_text()):
            assert interface.validate_task({"data": task["data"]})
            assert interface.validate_prediction(task["predictions"][0], return_errors=True) == []
    wrong = {"result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["purple"]}}]}
    assert interface.validate_prediction(wrong, return_errors=True)  # the check does reject a foreign class


def test_exports_made_by_label_studios_converter_read_back_alike(tmp_path, image_pool):
    converter = pytest.importorskip("label_studio_sdk.converter")
    rows = select_rows(image_pool[:4], "path", ["red", "green", "blue", "red"])
    write_tasks(rows, tmp_path / "tasks.json", kind="path", classes=CLASSES, model_version="v1")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(annotate(tasks, ["green", "green", None, "blue"])))
    convert = converter.Converter(labelling_config("path", CLASSES), project_dir=str(tmp_path),
                                  download_resources=False)
    convert.convert_to_json_min(str(exported), str(tmp_path / "min"), is_dir=False)
    convert.convert_to_csv(str(exported), str(tmp_path / "csv"), is_dir=False, sep=",")
    expected = [(image_pool[0], "green"), (image_pool[1], "green"), (image_pool[3], "blue")]
    for path in (exported, tmp_path / "min" / "result.json", tmp_path / "csv" / "result.csv"):
        rows_read, waiting = read_export(path)
        assert sorted(rows_read) == sorted(expected), path
        assert waiting == 1, path


def test_the_latest_annotation_counts_a_cancelled_one_does_not_and_predictions_never_do(tmp_path, image_pool):
    rows = select_rows(image_pool[:3], "path", ["red", "red", "red"])
    write_tasks(rows, tmp_path / "tasks.json", kind="path", classes=CLASSES, model_version="v1")
    tasks = annotate(json.loads((tmp_path / "tasks.json").read_text()), ["green", "blue", None], cancelled=(2,))
    later = json.loads(json.dumps(tasks[0]["annotations"][0]))
    later.update(id=999, updated_at="2026-03-01T00:00:00.000000Z", created_at="2026-03-01T00:00:00.000000Z")
    later["result"][0]["value"]["choices"] = ["blue"]
    tasks[0]["annotations"].append(later)  # a second opinion, later: it wins
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    rows_read, waiting = read_export(path)
    assert rows_read == [(image_pool[0], "blue")] and waiting == 2


def test_two_choices_for_one_item_are_refused(tmp_path):
    path = tmp_path / "min.json"
    path.write_text(json.dumps([{"text": "rates rise", "label": {"choices": ["red", "blue"]}}]))
    with pytest.raises(HeadstartError, match="has 2 labels"):
        read_export(path)


def test_the_loop_select_to_label_studio_to_add_labels_joins_the_items(tmp_path):
    """select's ranking -> tasks -> annotations in Label Studio's export shape -> --add-labels."""
    from headstart.modalities import load_data

    data = load_data(str(write_image_folder(tmp_path / "data", make_blobs(n_per_class=6))))
    pool_data = make_blobs(n_per_class=3, seed=11)
    pool = sorted(str(p) for p in write_image_folder(tmp_path / "pool", pool_data).rglob("*.png"))
    truth = {p: p.split("/")[-2] for p in pool}  # the folder a pool image was written to is its class
    ranked = select_rows(pool[:5], "path", ["red"] * 5)
    write_tasks(ranked, tmp_path / "tasks.json", kind="path", classes=data.classes, model_version="run")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    labels = [truth[t["data"]["headstart_item"]] for t in tasks[:4]] + [None]  # the fifth is not labelled yet
    exports = {"json": tmp_path / "export.json", "csv": tmp_path / "export.csv"}
    exports["json"].write_text(json.dumps(annotate(tasks, labels)))
    with open(exports["csv"], "w", newline="") as f:  # Label Studio's CSV: data fields + the choice column
        writer = csv.DictWriter(f, fieldnames=["annotation_id", "headstart_item", "id", "image", "label"])
        writer.writeheader()
        for n, (t, label) in enumerate(zip(tasks, labels), 1):
            writer.writerow({"annotation_id": n, "headstart_item": t["data"]["headstart_item"], "id": n,
                             "image": t["data"]["image"], "label": label or ""})
    for path in exports.values():
        added = read_added_labels(path, data)
        assert added.waiting == 1 and len(added.data) == 4
        assert [data.classes[y] for y in added.data.labels] == labels[:4]
        assert added.data.paths == [t["data"]["headstart_item"] for t in tasks[:4]]
        joined = data.concat(added.data)
        assert len(joined) == len(data) + 4
        np.testing.assert_array_equal(joined.images[-4:], added.data.images)


def test_text_tasks_round_trip_through_json_min(tmp_path):
    from headstart.data.dataset import TextData

    texts = make_texts(n_per_class=4)
    data = TextData(texts=texts.texts[:6], labels=texts.labels[:6], classes=texts.classes, name="t")
    fresh = make_texts(n_per_class=2, seed=3)
    rows = select_rows(fresh.texts[:2], "text", [texts.classes[0]] * 2)
    write_tasks(rows, tmp_path / "tasks.json", kind="text", classes=data.classes, model_version="v")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert tasks[0]["data"]["text"] == fresh.texts[0]
    minimal = [{**t["data"], "id": n, "label": data.classes[1]} for n, t in enumerate(tasks)]  # JSON_MIN's shape
    (tmp_path / "min.json").write_text(json.dumps(minimal))
    added = read_added_labels(tmp_path / "min.json", data)
    assert added.data.texts == fresh.texts[:2] and list(added.data.labels) == [1, 1]


def test_headstarts_own_csv_still_reads_and_an_unknown_file_shape_is_refused(tmp_path):
    from headstart.data.dataset import TextData

    data = TextData(texts=["a b c", "d e f"], labels=np.array([0, 1]), classes=["x", "y"], name="t")
    own = tmp_path / "own.csv"
    own.write_text("rank,text,score,guess,guess_probability,label\n1,g h i,0.5,x,0.6,y\n2,j k,0.4,x,0.6,\n")
    added = read_added_labels(own, data)
    assert added.data.texts == ["g h i"] and added.waiting == 1
    odd = tmp_path / "odd.csv"
    odd.write_text("name,value\n1,2\n")
    with pytest.raises(HeadstartError, match="Label Studio export"):
        read_added_labels(odd, data)
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(HeadstartError, match="cannot read .* as JSON"):
        read_added_labels(tmp_path / "broken.json", data)
