"""Tests of the data layer: sources, built-ins, decode cache, splits and resizing."""
from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import headstart.data.sources as sources
from headstart.data import ImageData, Splits, list_datasets, make_splits, resize_data
from headstart.modalities import load_data
from headstart.data import builtins
from headstart.errors import HeadstartError

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own empty cache, never the user's."""
    root = tmp_path / "cache"
    monkeypatch.setenv("HEADSTART_CACHE", str(root))
    return root


def _png(path: Path, color, size=(12, 10), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    """cat: 4 red images, dog: 3 blue ones (one grey, one JPEG-named upper case)."""
    root = tmp_path / "pets"
    for i in range(4):
        _png(root / "cat" / f"c{i}.png", (200, 0, 0))
    _png(root / "dog" / "d0.png", (0, 0, 200))
    _png(root / "dog" / "d1.png", 90, mode="L")
    Image.new("RGB", (10, 14), (0, 0, 200)).save(root / "dog" / "D2.JPG", format="JPEG")
    (root / "dog" / "notes.txt").write_text("not an image, ignored")
    (root / ".hidden").mkdir()
    _png(root / ".hidden" / "x.png", (1, 2, 3))
    return root


def _synthetic(counts: list[int], is_test: np.ndarray | None = None) -> ImageData:
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    images = np.zeros((len(labels), 2, 2, 1), dtype=np.uint8)
    return ImageData(images=images, labels=labels, classes=[f"c{k}" for k in range(len(counts))], name="synthetic",
                     is_test=is_test)


# --------------------------------------------------------------------------- folders


def test_folder_loads_classes_labels_and_square_rgb(folder):
    data = load_data(str(folder), size=8)
    assert data.classes == ["cat", "dog"]
    assert data.images.shape == (7, 8, 8, 3) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [4, 3]
    assert data.name == "pets" and data.skipped == []
    assert len(data.paths) == 7 and all(Path(p).is_absolute() for p in data.paths)
    grey = data.images[data.paths.index(str((folder / "dog" / "d1.png").resolve()))]
    assert (grey == 90).all()  # grey decoded as RGB with equal channels
    assert abs(int(data.images[0, 4, 4, 0]) - 200) <= 2  # cat is red


def test_folder_default_size_and_center_crop(tmp_path):
    # A wide image: red | green | blue thirds. Shorter side to 10, then center crop keeps green.
    img = np.zeros((10, 30, 3), dtype=np.uint8)
    img[:, :10, 0], img[:, 10:20, 1], img[:, 20:, 2] = 255, 255, 255
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        Image.fromarray(img).save(tmp_path / "d" / cls / "wide.png")
    small = load_data(str(tmp_path / "d"), size=10)
    centre = small.images[0].astype(int)
    assert (centre[2:-2, 2:-2, 1] > 200).all() and (centre[2:-2, 2:-2, [0, 2]] < 50).all()
    assert load_data(str(tmp_path / "d")).images.shape == (2, 224, 224, 3)


def test_corrupt_files_are_skipped_and_counted(folder):
    (folder / "cat" / "garbage.png").write_bytes(b"definitely not a png")
    good = (folder / "cat" / "c0.png").read_bytes()
    (folder / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    data = load_data(str(folder), size=8)
    assert len(data) == 7
    assert sorted(Path(p).name for p, _ in data.skipped) == ["garbage.png", "truncated.png"]
    assert all(reason for _, reason in data.skipped)
    assert len(data.paths) == len(data.labels) == 7


def test_strict_raises_naming_the_file(folder):
    (folder / "cat" / "garbage.png").write_bytes(b"definitely not a png")
    with pytest.raises(HeadstartError, match="garbage.png"):
        load_data(str(folder), size=8, strict=True)
    load_data(str(folder), size=8)  # now the skip is cached ...
    with pytest.raises(HeadstartError, match="garbage.png"):  # ... and strict still refuses it
        load_data(str(folder), size=8, strict=True)


def test_decode_cache_hit_never_opens_images(folder, cache, monkeypatch):
    first = load_data(str(folder), size=8)
    assert len(list((cache / "decoded").glob("*.npy"))) == 1

    opened = []
    real_open = sources.Image.open
    monkeypatch.setattr(sources.Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    second = load_data(str(folder), size=8)
    assert opened == []
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.paths == second.paths

    # A different size or a changed file is a different key: everything is decoded again.
    load_data(str(folder), size=9)
    assert len(opened) == 7
    target = folder / "cat" / "c0.png"
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    load_data(str(folder), size=8)
    assert len(opened) == 14


def test_unwritable_cache_only_warns(folder, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "a-file" / "cache"))  # cannot be created
    with pytest.warns(UserWarning, match="could not write"):
        assert len(load_data(str(folder), size=4)) == 7


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HeadstartError, match="empty"):
        load_data(str(tmp_path / "empty"))


def test_folder_without_class_subfolders(tmp_path):
    _png(tmp_path / "flat" / "a.png", (1, 2, 3))
    with pytest.raises(HeadstartError, match="no class sub-folders") as e:
        load_data(str(tmp_path / "flat"))
    assert "sub-folder" in e.value.hint


def test_class_folders_without_images(tmp_path):
    (tmp_path / "d" / "cat").mkdir(parents=True)
    (tmp_path / "d" / "cat" / "readme.txt").write_text("x")
    with pytest.raises(HeadstartError, match="no images") as e:
        load_data(str(tmp_path / "d"))
    assert ".png" in e.value.hint


def test_single_class_loads_but_cannot_be_split(tmp_path):
    for i in range(3):
        _png(tmp_path / "d" / "cat" / f"{i}.png", (9, 9, 9))
    data = load_data(str(tmp_path / "d"), size=4)
    assert data.classes == ["cat"]
    with pytest.raises(HeadstartError, match="at least two classes; found only 'cat'"):
        make_splits(data)


def test_unknown_name_suggests_builtins():
    with pytest.raises(HeadstartError) as e:
        load_data("fashion-mnst")
    assert "fashion-mnist" in e.value.hint and "digits" in e.value.hint


def test_non_csv_file_is_refused(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(HeadstartError, match="not data headstart can read .a lone .txt file has no labels") as e:
        load_data(str(tmp_path / "x.txt"))
    assert "path,label" in e.value.hint and "JSONL" in e.value.hint  # every modality says what it reads


# --------------------------------------------------------------------------- CSV


def test_csv_with_alternative_column_names(folder, tmp_path):
    rows = ["filename,class", "pets/cat/c0.png,10", "pets/cat/c1.png,2", "pets/dog/d0.png,2", "", str(folder / "dog" / "d1.png") + ",10"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    data = load_data(str(tmp_path / "list.csv"), size=6)
    assert data.classes == ["2", "10"]  # numeric labels in numeric order
    assert data.labels.tolist() == [1, 0, 0, 1]
    assert data.images.shape == (4, 6, 6, 3) and data.name == "list"


def test_csv_missing_files_are_counted(folder, tmp_path):
    rows = ["path,label", "pets/cat/c0.png,cat", "pets/cat/nope1.png,cat", "pets/dog/nope2.png,dog"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(HeadstartError, match="2 of 3 rows") as e:
        load_data(str(tmp_path / "list.csv"))
    assert "nope1.png" in str(e.value)


def test_csv_without_known_columns_names_existing_ones(tmp_path):
    (tmp_path / "list.csv").write_text("picture,kind\na.png,cat\n")
    with pytest.raises(HeadstartError, match="'picture', 'kind'"):
        load_data(str(tmp_path / "list.csv"))


def test_csv_corrupt_file_skipped_or_strict(folder, tmp_path):
    (folder / "cat" / "bad.png").write_bytes(b"nope")
    (tmp_path / "l.csv").write_text("image,target\npets/cat/c0.png,a\npets/cat/bad.png,a\npets/dog/d0.png,b\n")
    data = load_data(str(tmp_path / "l.csv"), size=4)
    assert len(data) == 2 and len(data.skipped) == 1
    with pytest.raises(HeadstartError, match="bad.png"):
        load_data(str(tmp_path / "l.csv"), size=4, strict=True)


# --------------------------------------------------------------------------- splits


def _check_disjoint(splits: Splits, n: int) -> None:
    sets = [set(splits.indices[p]) for p in ("train", "val", "test")]
    assert sum(map(len, sets)) == len(set().union(*sets))
    assert all(0 <= i < n for s in sets for i in s)


def test_splits_are_stratified_disjoint_and_complete():
    data = _synthetic([300, 200, 100])
    s = make_splits(data, seed=1)
    _check_disjoint(s, len(data))
    assert len(s.train) + len(s.val) + len(s.test) == 600
    assert len(s.test) == 90 and len(s.val) == round(0.15 * 510)
    for part in (s.test, s.val, s.train):
        share = np.bincount(part.labels) / len(part)
        np.testing.assert_allclose(share, [0.5, 1 / 3, 1 / 6], atol=0.02)
    np.testing.assert_array_equal(s.test.labels, data.labels[s.indices["test"]])


def test_splits_are_deterministic_per_seed():
    data = _synthetic([50, 50, 50])
    assert make_splits(data, seed=3).indices == make_splits(data, seed=3).indices
    assert make_splits(data, seed=3).indices["test"] != make_splits(data, seed=4).indices["test"]


def test_max_eval_caps_val_and_test():
    s = make_splits(_synthetic([1000, 1000]), max_eval=40)
    assert len(s.val) == len(s.test) == 40 and len(s.train) == 1920
    assert np.bincount(s.test.labels).tolist() == [20, 20]


def test_train_per_class_and_train_size():
    data = _synthetic([100, 60, 40])
    s = make_splits(data, train_per_class=7)
    assert np.bincount(s.train.labels).tolist() == [7, 7, 7]
    _check_disjoint(s, len(data))
    s = make_splits(data, train_size=50)
    assert len(s.train) == 50 and np.bincount(s.train.labels).tolist() == [25, 15, 10]


def test_train_per_class_too_large_says_what_is_available():
    with pytest.raises(HeadstartError, match="class 'c1' has only 8 training images") as e:
        make_splits(_synthetic([100, 10]), train_per_class=20)
    assert "train_per_class=8" in e.value.hint


def test_predefined_test_part_is_respected():
    is_test = np.zeros(400, dtype=bool)
    is_test[150:200] = is_test[350:400] = True  # the last 50 of each class
    data = _synthetic([200, 200], is_test=is_test)
    s = make_splits(data, max_eval=60)
    assert set(s.indices["test"]) <= set(np.flatnonzero(data.is_test))
    assert not (set(s.indices["train"]) | set(s.indices["val"])) & set(np.flatnonzero(data.is_test))
    assert len(s.test) == 60 and np.bincount(s.test.labels).tolist() == [30, 30]
    _check_disjoint(s, len(data))


def test_split_validation_errors():
    with pytest.raises(HeadstartError, match="class 'c1' has only 2 images"):
        make_splits(_synthetic([50, 2]))
    with pytest.raises(HeadstartError, match="no images"):
        make_splits(_synthetic([]))
    with pytest.raises(HeadstartError, match="not both"):
        make_splits(_synthetic([50, 50]), train_per_class=3, train_size=10)
    only_train = np.zeros(100, dtype=bool)
    only_train[:10] = True  # the test part holds class c0 only
    with pytest.raises(HeadstartError, match="'c1' has only 0 images in the predefined test part"):
        make_splits(_synthetic([50, 50], is_test=only_train))


def test_splits_round_trip_through_dict():
    data = _synthetic([30, 30])
    s = make_splits(data, seed=5, train_per_class=5)
    d = s.to_dict()
    assert d["seed"] == 5 and d["sizes"]["train"] == 10
    again = Splits.from_dict(data, d)
    assert again.indices == s.indices
    np.testing.assert_array_equal(again.val.labels, s.val.labels)


# --------------------------------------------------------------------------- resize


def test_resize_data_shapes_dtype_and_values():
    data = _synthetic([3, 3])
    data.images[:] = 77
    big = resize_data(data, 16)
    assert big.images.shape == (6, 16, 16, 1) and big.images.dtype == np.uint8
    assert (big.images == 77).all()  # a flat image stays flat: no bicubic overshoot
    assert big.labels is data.labels and big.classes == data.classes
    assert resize_data(big, 16) is big
    rgb = ImageData(images=np.random.default_rng(0).integers(0, 255, (4, 40, 30, 3), dtype=np.uint8),
                    labels=np.arange(4), classes=list("abcd"), name="x")
    for mode in ("nearest", "bilinear", "bicubic"):
        assert resize_data(rgb, 12, mode).images.shape == (4, 12, 12, 3)
    with pytest.raises(HeadstartError, match="interpolation"):
        resize_data(rgb, 12, "lanczos9")


# --------------------------------------------------------------------------- built-ins


def test_list_datasets():
    entries = {d["name"]: d for d in list_datasets()}
    assert {"fashion-mnist", "digits", "mnist-5k", "elpv"} <= set(entries)
    assert all(isinstance(d["available"], bool) and d["description"] for d in entries.values())


def test_digits_builtin_keeps_native_size():
    data = load_data("digits", size=224)  # size is for decoding files; built-ins stay native
    assert data.images.shape == (1797, 8, 8, 1) and data.images.max() == 255
    assert data.classes == [str(d) for d in range(10)] and data.labels.dtype == np.int64


def test_mnist_5k_builtin():
    data = load_data("mnist-5k")
    assert data.images.shape == (5000, 28, 28, 1) and data.images.dtype == np.uint8
    assert data.num_classes == 10 and set(np.unique(data.labels)) == set(range(10))


@pytest.mark.skipif(
    not all((builtins.FASHION_DEBIAN_DIR / n).is_file() for n in builtins._FASHION_FILES),
    reason="Debian package dataset-fashion-mnist is not installed (make installs it only where apt runs as root)",
)
def test_fashion_mnist_builtin():
    data = load_data("fashion-mnist")
    assert data.images.shape == (70000, 28, 28, 1)
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert data.is_test.sum() == 10000 and data.is_test[-10000:].all()
    assert np.bincount(data.labels).tolist() == [7000] * 10


def test_idx_parser_and_checksum_guard(tmp_path, monkeypatch):
    raw = bytes([0, 0, 8, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(6))
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(builtins._read_idx(tmp_path / "x.gz"), np.arange(6).reshape(2, 3))
    (tmp_path / "y.gz").write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(HeadstartError, match="truncated"):
        builtins._read_idx(tmp_path / "y.gz")

    monkeypatch.setattr(builtins.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"tampered"))
    with pytest.raises(HeadstartError, match="checksum mismatch"):
        builtins._download_verified("t10k-labels-idx1-ubyte.gz", "0" * 32, tmp_path)
    assert not (tmp_path / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list(tmp_path.glob("*.part"))


def test_elpv_builtin(cache):
    data = load_data("elpv")
    assert data.images.shape == (2624, 300, 300, 1) and data.classes == ["functional", "defective"]
    assert np.bincount(data.labels).tolist() == [1508 + 295, 106 + 715]
    assert list((cache / "decoded").glob("elpv-*.npz"))  # decoded once, then cached
    grades = load_data("elpv:grades")
    assert grades.num_classes == 4 and np.bincount(grades.labels).tolist() == [1508, 295, 106, 715]
