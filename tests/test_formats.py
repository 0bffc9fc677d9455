"""The formats large datasets come in: Parquet files and folders, `datasets` folders (save_to_disk,
a DatasetDict), WebDataset tar shards; each read into the same data forms a folder gives, with
clear refusals for a missing column, one class, an empty file and an undecodable cell."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from headstart.errors import HeadstartError
from headstart.modalities import load_data, load_pool

COLOURS = {"cat": (220, 30, 30), "dog": (30, 30, 220)}
HF_META = {b"huggingface": json.dumps({"info": {"features": {
    "image": {"_type": "Image"}, "label": {"names": ["cat", "dog"], "_type": "ClassLabel"}}}}).encode()}


def _png(colour, side: int = 12, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side + 4), colour).save(out, kind)
    return out.getvalue()


def _image_rows(n_per_class: int = 4):
    """Alternating cat/dog rows: (datasets' Image struct, ClassLabel int)."""
    names = list(COLOURS)
    rows = [({"bytes": _png(COLOURS[names[i % 2]]), "path": None}, i % 2) for i in range(2 * n_per_class)]
    return [r[0] for r in rows], [r[1] for r in rows]


def _image_table(images, labels, metadata=HF_META) -> pa.Table:
    kind = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return pa.table({"image": pa.array(images, kind), "label": pa.array(labels, pa.int64())}).replace_schema_metadata(metadata)


def _save_to_disk(folder, table: pa.Table, shards: int = 1):
    """The layout `datasets.Dataset.save_to_disk` writes: Arrow IPC streams, state.json, dataset_info.json."""
    folder.mkdir(parents=True)
    names = [f"data-{k:05d}-of-{shards:05d}.arrow" for k in range(shards)]
    per = -(-table.num_rows // shards)
    for k, name in enumerate(names):
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table.slice(k * per, per))
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names]}))
    features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"] if table.schema.metadata else {}
    (folder / "dataset_info.json").write_text(json.dumps({"features": features}))
    return folder


def _assert_colours_match_labels(data):
    for image, label in zip(data.images, data.labels):
        expected = COLOURS[data.classes[label]]
        assert np.abs(image[6, 6].astype(int) - expected).max() < 10


# --------------------------------------------------------------------------- Parquet and Arrow

def test_image_parquet_reads_classlabel_names_and_bytes(tmp_path):
    path = tmp_path / "pets.parquet"
    pq.write_table(_image_table(*_image_rows()), path, row_group_size=3)  # several row groups
    data = load_data(str(path), size=16)
    assert data.modality == "image" and data.images.shape == (8, 16, 16, 3)
    assert data.classes == ["cat", "dog"] and list(data.labels) == [0, 1] * 4
    _assert_colours_match_labels(data)
    assert data.paths[3] == f"{path}:row 3" and data.notes["native_size"] == 12


def test_folder_of_parquet_files_reads_them_in_order(tmp_path):
    images, labels = _image_rows(3)
    folder = tmp_path / "parts"
    folder.mkdir()
    for k, (start, stop) in enumerate([(0, 2), (2, 6)]):
        pq.write_table(_image_table(images[start:stop], labels[start:stop]), folder / f"part-{k}.parquet")
    data = load_data(str(folder), size=8)
    assert len(data) == 6 and data.paths[2] == f"{folder}:row 2"
    _assert_colours_match_labels(data)


def test_save_to_disk_folder_and_dataset_dict_train_split(tmp_path):
    table = _image_table(*_image_rows(3))
    data = load_data(str(_save_to_disk(tmp_path / "arrow", table, shards=2)), size=8)
    assert len(data) == 6 and data.classes == ["cat", "dog"]
    _assert_colours_match_labels(data)
    root = tmp_path / "dict"
    _save_to_disk(root / "train", table)
    _save_to_disk(root / "test", table.slice(0, 2))
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    data = load_data(str(root), size=8)
    assert len(data) == 6 and data.name == "dict"  # the train split, not the test one


def test_real_datasets_folder_is_read(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    images, labels = _image_rows(2)
    datasets.Dataset.from_dict({"image": images, "label": labels}, features=features).save_to_disk(str(tmp_path / "d"))
    data = load_data(str(tmp_path / "d"), size=8)
    assert data.classes == ["cat", "dog"] and len(data) == 4


def test_path_and_plain_bytes_image_columns_with_string_labels(tmp_path):
    for name, colour in COLOURS.items():
        (tmp_path / f"{name}.jpg").write_bytes(_png(colour, kind="JPEG"))
    pq.write_table(pa.table({"file": ["cat.jpg", "dog.jpg", "cat.jpg"], "class": ["cat", "dog", "cat"]}),
                   tmp_path / "paths.parquet")
    data = load_data(str(tmp_path / "paths.parquet"), size=8)
    assert data.classes == ["cat", "dog"] and list(data.labels) == [0, 1, 0]
    _assert_colours_match_labels(data)
    pq.write_table(pa.table({"pic": [_png(COLOURS["dog"]), _png(COLOURS["cat"])], "target": ["dog", "cat"]}),
                   tmp_path / "bytes.parquet")
    data = load_data(str(tmp_path / "bytes.parquet"), size=8, image_column="pic")
    assert list(data.labels) == [1, 0]
    _assert_colours_match_labels(data)


def test_undecodable_cell_is_skipped_and_counted_and_strict_refuses(tmp_path):
    images, labels = _image_rows(3)
    images[1] = {"bytes": b"not an image", "path": None}
    pq.write_table(_image_table(images, labels), tmp_path / "bad.parquet")
    data = load_data(str(tmp_path / "bad.parquet"), size=8)
    assert len(data) == 5 and len(data.skipped) == 1 and data.skipped[0][0].endswith("bad.parquet:row 1")
    with pytest.raises(HeadstartError, match=r"cannot decode the image of .*bad.parquet:row 1"):
        load_data(str(tmp_path / "bad.parquet"), size=8, strict=True)


def test_refusals_name_the_columns(tmp_path):
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), tmp_path / "neither.parquet")
    with pytest.raises(HeadstartError, match="neither an image column nor a text column; its columns are: 'a', 'b'"):
        load_data(str(tmp_path / "neither.parquet"))
    pq.write_table(_image_table(*_image_rows(2)), tmp_path / "pets.parquet")
    with pytest.raises(HeadstartError, match="no column 'kind'; its columns are: 'image', 'label'"):
        load_data(str(tmp_path / "pets.parquet"), label_column="kind")
    with pytest.raises(HeadstartError, match="no column 'photo'; its columns are"):
        load_data(str(tmp_path / "pets.parquet"), image_column="photo")


def test_one_class_and_empty_files_are_refused(tmp_path):
    images, _ = _image_rows(2)
    pq.write_table(_image_table(images, [0] * 4), tmp_path / "one.parquet")
    with pytest.raises(HeadstartError, match="label column 'label' holds one class \\('cat'\\)"):
        load_data(str(tmp_path / "one.parquet"), size=8)
    pq.write_table(_image_table(*_image_rows(2)).slice(0, 0), tmp_path / "none.parquet")
    with pytest.raises(HeadstartError, match="has no rows"):
        load_data(str(tmp_path / "none.parquet"), size=8)
    (tmp_path / "zero.parquet").write_bytes(b"")
    with pytest.raises(HeadstartError, match="cannot read .*zero.parquet as Parquet"):
        load_data(str(tmp_path / "zero.parquet"))


def test_text_parquet_and_arrow_with_classlabel_and_pools(tmp_path):
    meta = {b"huggingface": json.dumps({"info": {"features": {
        "sentence": {"dtype": "string", "_type": "Value"},
        "topic": {"names": ["sport", "money"], "_type": "ClassLabel"}}}}).encode()}
    table = pa.table({"id": [0, 1, 2, 3], "sentence": ["goal match", "bank shares", "", "cup final"],
                      "topic": [0, 1, 1, 0]}).replace_schema_metadata(meta)
    pq.write_table(table, tmp_path / "t.parquet")
    data = load_data(str(tmp_path / "t.parquet"))
    assert data.modality == "text" and data.texts == ["goal match", "bank shares", "cup final"]
    assert [data.classes[k] for k in data.labels] == ["sport", "money", "sport"]
    assert data.skipped == [(f"{tmp_path / 't.parquet'}:row 2", "empty text")]
    assert len(load_data(str(_save_to_disk(tmp_path / "arrow", table)))) == 3
    pool = load_pool(str(tmp_path / "t.parquet"))
    assert pool.labels is None and len(pool) == 3


# --------------------------------------------------------------------------- WebDataset shards

def _write_shard(path, samples):
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for extension, payload in members.items():
                raw = payload if isinstance(payload, bytes) else str(payload).encode()
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    return path


def _image_samples(start: int, n: int, label_as: str = "cls"):
    names = list(COLOURS)
    for i in range(start, start + n):
        label = i % 2 if label_as == "cls" else json.dumps({"species": names[i % 2]})
        yield f"train/{i:05d}", {"jpg": _png(COLOURS[names[i % 2]], kind="JPEG"), label_as: label}


def test_image_shards_by_pattern_folder_and_json_label(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    for k in range(3):
        _write_shard(folder / f"pets-{k:03d}.tar", _image_samples(4 * k, 4))
    data = load_data(str(folder / "pets-{000..002}.tar"), size=8)
    assert data.modality == "image" and len(data) == 12 and data.classes == ["0", "1"]
    assert list(data.labels) == [0, 1] * 6 and data.paths[5].endswith("pets-001.tar:train/00005")
    assert len(load_data(str(folder), size=8)) == 12
    assert len(load_data(str(folder / "pets-{000,002}.tar"), size=8)) == 8
    with pytest.raises(HeadstartError, match="1 of the 2 shards .* do not exist"):
        load_data(str(folder / "pets-{002..003}.tar"), size=8)
    labelled = _write_shard(tmp_path / "json.tar", _image_samples(0, 4, label_as="json"))
    data = load_data(str(labelled), size=8, label_column="species")
    assert data.classes == ["cat", "dog"]
    _assert_colours_match_labels(data)
    assert load_pool(str(labelled), size=8).labels is None


def test_text_shards_and_bad_shards(tmp_path):
    samples = [(f"s{i}", {"txt": f"text number {i}", "cls": "ab"[i % 2]}) for i in range(6)]
    data = load_data(str(_write_shard(tmp_path / "texts.tar", samples)))
    assert data.modality == "text" and data.texts[4] == "text number 4" and data.classes == ["a", "b"]
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(HeadstartError, match="cannot read the shard .*empty.tar"):
        load_data(str(tmp_path / "empty.tar"))
    odd = _write_shard(tmp_path / "odd.tar", [("x", {"npy": b"123", "cls": "1"})])
    with pytest.raises(HeadstartError, match=r"neither images nor texts \(their members: cls, npy\)"):
        load_data(str(odd))
    broken = [(f"s{i}", {"jpg": b"garbage" if i == 2 else _png((9, 9, 9)), "cls": i % 2}) for i in range(4)]
    data = load_data(str(_write_shard(tmp_path / "broken.tar", broken)), size=8)
    assert len(data) == 3 and data.skipped[0][0].endswith("broken.tar:s2")


# --------------------------------------------------------------------------- end to end

@pytest.mark.slow  # a probe with the real backbone: ~10 s idle, over a minute on a loaded machine
def test_fit_probe_on_an_image_parquet(tmp_path):
    from headstart.cli import main
    from headstart.run import Run

    images, labels = _image_rows(12)
    pq.write_table(_image_table(images, labels), tmp_path / "pets.parquet")
    out = tmp_path / "probe"
    assert main(["-q", "fit", str(tmp_path / "pets.parquet"), "--strategy", "probe", "--image-size", "32",
                 "--out", str(out), "--explain-examples", "0"]) == 0
    assert Run.open(out).summary.test_accuracy == 1.0


def test_fit_tfidf_on_a_text_parquet(tmp_path):
    from headstart.cli import main
    from headstart.run import Run

    words = {"sport": "goal match team striker league", "money": "bank shares market profit stocks"}
    texts = [" ".join(np.random.default_rng(i).choice(words[c].split(), 4)) for i, c in enumerate(["sport", "money"] * 20)]
    pq.write_table(pa.table({"body": texts, "category": ["sport", "money"] * 20}), tmp_path / "news.parquet")
    out = tmp_path / "tfidf"
    assert main(["-q", "fit", str(tmp_path / "news.parquet"), "--strategy", "tfidf", "--text-column", "body",
                 "--out", str(out), "--explain-examples", "0"]) == 0
    run = Run.open(out)
    assert run.summary.test_accuracy == 1.0 and run.config.text_column == "body"
