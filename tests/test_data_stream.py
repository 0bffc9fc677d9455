"""Images that stay on disk: the decode cache is a memory-mapped .npy written in chunks, keyed by
the file list (not the pixels), and splits index into it instead of copying."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import headstart.data.sources as sources
from headstart.modalities import load_data


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("HEADSTART_CACHE", str(root))
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    """Two classes of 6 small images each, every image a different colour."""
    root = tmp_path / "shapes"
    for k, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (12, 10), (40 * i, 100 * k, 7)).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def decodes(monkeypatch) -> list:
    """Every file the loader decodes, in order."""
    seen: list = []
    real = sources.decode_one
    monkeypatch.setattr(sources, "decode_one", lambda path, size: seen.append(path) or real(path, size))
    return seen


def _touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_images_are_a_memory_map_of_the_cache(folder, cache):
    data = load_data(str(folder), size=8)
    assert isinstance(data.images, np.memmap) and not data.images.flags.writeable
    (npy,) = (cache / "decoded").glob("*.npy")
    assert Path(data.images.filename) == npy.resolve()
    assert data.images.shape == (12, 8, 8, 3)
    assert data.notes["native_size"] == 10  # the files' own shorter side survives the cache


def test_second_load_decodes_nothing_and_reads_the_same_pixels(folder, decodes):
    first = load_data(str(folder), size=8)
    assert len(decodes) == 12
    second = load_data(str(folder), size=8)
    assert len(decodes) == 12
    np.testing.assert_array_equal(first.images, second.images)
    assert second.notes == first.notes and second.paths == first.paths


def test_decoding_in_chunks_keeps_file_order_across_chunks(folder, monkeypatch):
    whole = np.array(load_data(str(folder), size=8).images)
    monkeypatch.setattr(sources, "_DECODE_CHUNK", 5)  # 12 files: chunks of 5, 5 and 2
    monkeypatch.setenv("HEADSTART_CACHE", str(folder.parent / "other-cache"))
    np.testing.assert_array_equal(load_data(str(folder), size=8).images, whole)


def test_a_touched_or_resized_file_decodes_again(folder, decodes):
    load_data(str(folder), size=8)
    _touch(folder / "a" / "0.png")
    load_data(str(folder), size=8)
    assert len(decodes) == 24
    Image.new("RGB", (30, 20), (1, 2, 3)).save(folder / "b" / "5.png")  # another size on disk
    data = load_data(str(folder), size=8)
    assert len(decodes) == 36
    assert (np.asarray(data.images[-1]) <= 3).all()  # the new pixels, not the cached ones


@pytest.mark.parametrize("damage", ["truncate", "garbage", "lose-side-file"])
def test_a_damaged_cache_is_rebuilt(folder, cache, decodes, damage):
    first = np.array(load_data(str(folder), size=8).images)
    (npy,) = (cache / "decoded").glob("*.npy")
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:200])
    elif damage == "garbage":
        npy.write_bytes(b"not an array at all")
    else:
        npy.with_suffix(".npz").unlink()
    again = load_data(str(folder), size=8)
    assert len(decodes) == 24
    np.testing.assert_array_equal(again.images, first)
    load_data(str(folder), size=8)
    assert len(decodes) == 24  # rebuilt whole: the third load is a hit


def test_unreadable_files_are_skipped_in_the_memory_map_too(folder, decodes):
    (folder / "a" / "broken.png").write_bytes(b"not a png")
    for _ in range(2):  # decoded, then from the cache
        data = load_data(str(folder), size=8)
        assert len(data) == len(data.images) == len(data.paths) == 12
        assert [Path(p).name for p, _ in data.skipped] == ["broken.png"]
        assert isinstance(data.images, np.memmap)
    assert len(decodes) == 13


def test_fingerprint_comes_from_the_files_not_the_pixels(folder, monkeypatch):
    data = load_data(str(folder), size=8)
    same = load_data(str(folder), size=8)
    assert data.fingerprint() == same.fingerprint()
    # the pixels are never read for it: hashing them would need their buffer
    real = np.ascontiguousarray
    monkeypatch.setattr(np, "ascontiguousarray", lambda a, *r, **k: pytest.fail("pixels hashed") if np.ndim(a) == 4
                        else real(a, *r, **k))
    assert data.fingerprint() == same.fingerprint()
    monkeypatch.undo()
    assert load_data(str(folder), size=9).fingerprint() != data.fingerprint()  # decode settings count
    assert data.unlabelled().fingerprint() != data.fingerprint()  # labels count, as before
    _touch(folder / "b" / "3.png")
    assert load_data(str(folder), size=8).fingerprint() != data.fingerprint()  # a changed file counts


def test_derived_pixels_are_hashed_not_named_by_the_files(folder):
    data = load_data(str(folder), size=8)
    copied = type(data)(images=np.array(data.images), labels=data.labels, classes=data.classes, name="x")
    assert copied.fingerprint() != data.fingerprint()  # in memory: hashed, so not the files' key ...
    sliced = type(data)(images=data.images[:6], labels=data.labels[:6], classes=data.classes, name="x")
    assert sliced.fingerprint() == type(data)(images=np.array(data.images[:6]), labels=data.labels[:6],
                                              classes=data.classes, name="x").fingerprint()  # ... as a slice is


def test_splits_are_views_of_the_memory_map(folder):
    from headstart.data import make_splits
    from headstart.data.dataset import ImageRows

    data = load_data(str(folder), size=8)
    splits = make_splits(data, seed=0, train_per_class=2)
    whole = np.array(data.images)
    for part in ("train", "val", "test"):
        images, index = getattr(splits, part).images, np.array(splits.indices[part])
        assert isinstance(images, ImageRows) and images.base is data.images  # no pixel copied
        assert images.shape == (len(index), 8, 8, 3) and images.dtype == np.uint8
        np.testing.assert_array_equal(images[1:], whole[index[1:]])  # a batch: those rows, read now
        np.testing.assert_array_equal(images[0], whole[index[0]])
        np.testing.assert_array_equal(images[:, 2:4, :, 0], whole[index][:, 2:4, :, 0])
        np.testing.assert_array_equal(np.asarray(images), whole[index])
    inner = splits.train.subset(np.array([1, 0]))  # a view of a view indexes the same base
    assert inner.images.base is data.images
    np.testing.assert_array_equal(np.asarray(inner.images), whole[np.array(splits.indices["train"])[[1, 0]]])
    # its fingerprint names the files and the rows, and differs between parts
    assert len({getattr(splits, p).fingerprint() for p in ("train", "val", "test")}) == 3
    assert splits.train.fingerprint() != inner.fingerprint()


def test_views_serve_training_and_resizing(folder):
    from headstart.data import make_splits, resize_data
    from headstart.train.batches import ArrayImageDataset

    data = load_data(str(folder), size=8)
    train = make_splits(data, seed=0, train_per_class=3).train
    whole = np.array(train.images)
    x, y = ArrayImageDataset(train.images, train.labels)[2]
    assert tuple(x.shape) == (3, 8, 8) and (x.numpy() == whole[2].transpose(2, 0, 1)).all()
    assert int(y) == train.labels[2]
    small = resize_data(train, 4)
    np.testing.assert_array_equal(small.images, resize_data(type(train)(images=whole, labels=train.labels,
                                                                        classes=train.classes, name="x"), 4).images)
    assert np.asarray(train.images.reshape(len(train), -1)).shape == (6, 8 * 8 * 3)  # any other array use reads them


def test_rows_are_read_from_the_file_at_the_right_place(tmp_path):
    from headstart.data.cache import open_array
    from headstart.data.dataset import ImageRows

    pixels = np.random.default_rng(0).integers(0, 256, (9, 3, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", pixels)
    mapped = open_array(tmp_path / "a.npy")
    for base, expected in ((mapped, pixels), (mapped[2:], pixels[2:]), (mapped[:5], pixels[:5])):
        where = np.array([3, 0, -1, 3, 1])
        np.testing.assert_array_equal(ImageRows(base, where)[:], expected[where])
    with pytest.raises(IndexError):
        ImageRows(mapped, np.array([0, 9]))[:]


def test_file_paths_resolve_as_path_resolve_does_with_each_folder_resolved_once(tmp_path):
    """The folder loader resolves each folder once (a warm load of many files was mostly stat
    calls): links to folders and files, `..` and relative paths come out as Path.resolve() gives."""
    from headstart.data.sources import _resolved

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"1")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "y.jpg").symlink_to(tmp_path / "a" / "x.jpg")
    files = [tmp_path / "link" / "x.jpg", tmp_path / "a" / "y.jpg", tmp_path / "a" / ".." / "a" / "x.jpg",
             Path("relative") / "missing.jpg"]
    assert _resolved(files) == [f.resolve() for f in files]
    assert _resolved(files)[1] == (tmp_path / "a" / "x.jpg").resolve()  # a linked file is followed
