"""Features on disk (issue 25.2): the store is filled chunk by chunk and read memory-mapped, a pass
cut short is continued rather than redone, a damaged store is recomputed, a refused disk falls back
to memory, a second command on the same data extracts nothing, and the head trains from the file
(mini-batches beyond the memory allowance)."""
from __future__ import annotations

import errno
import importlib
import json
import os
import tracemalloc

import numpy as np
import pytest

from headstart import heads
from headstart.cli import main
from headstart.embed import embed, feature_extractor
from headstart.feature_store import FeatureStore
from headstart.zoo import resolve_backbone

from conftest import make_blobs, write_image_folder

embed_module = importlib.import_module("headstart.embed")
linear_module = importlib.import_module("headstart.strategies.linear")


def _rows(n: int = 300, dim: int = 5) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- the store itself

def test_a_store_filled_in_scattered_chunks_reads_back_every_row_memory_mapped(tmp_path):
    x, path = _rows(), tmp_path / "k.npy"
    store = FeatureStore.at(path, len(x))
    order = np.random.default_rng(1).permutation(len(x))  # the probe fills in a stratified order
    for rows in store.missing_chunks(64, order):
        assert not path.exists()  # the final name appears only once every row is there
        store.fill(rows, x[rows])
    assert store.complete and _names(tmp_path) == ["k.npy"]  # partial file and sidecar gone
    read = store.read()
    assert isinstance(read, np.memmap) and not read.flags.writeable
    np.testing.assert_array_equal(read, x)
    again = FeatureStore.at(path, len(x))
    assert again.complete and isinstance(again.read(), np.memmap)


def test_a_pass_cut_short_keeps_its_chunks_and_the_next_continues_from_the_first_missing(tmp_path):
    x, path = _rows(), tmp_path / "k.npy"
    first = FeatureStore.at(path, len(x))
    for i, rows in enumerate(first.missing_chunks(50)):
        if i == 3:
            break  # killed here: the sidecar was written after each chunk (or at flush)
        first.fill(rows, x[rows])
    first.flush()
    assert _names(tmp_path) == ["k.done.json", "k.partial.npy"]
    resumed = FeatureStore.at(path, len(x))
    np.testing.assert_array_equal(resumed.done_rows(), np.arange(150))
    np.testing.assert_array_equal(resumed.read(resumed.done_rows()), x[:150])
    computed = []
    for rows in resumed.missing_chunks(50):
        computed.extend(rows)
        resumed.fill(rows, x[rows])
    assert computed == list(range(150, 300))
    np.testing.assert_array_equal(resumed.read(), x)


@pytest.mark.parametrize("damage", ["sidecar", "partial", "final"])
def test_a_damaged_store_is_recomputed_never_trusted(tmp_path, damage):
    x, path = _rows(), tmp_path / "k.npy"
    store = FeatureStore.at(path, len(x))
    store.fill(np.arange(100), x[:100])
    store.flush()
    if damage == "sidecar":
        store.sidecar_path.write_text("{not json")
    elif damage == "partial":
        with open(store.partial_path, "r+b") as f:
            f.truncate(64)  # the header cut: no longer the shape the sidecar names
    else:
        store.fill(np.arange(100, 300), x[100:])
        path.write_bytes(path.read_bytes()[:200])  # a truncated finished file
    again = FeatureStore.at(path, len(x))
    assert len(again.done_rows()) == 0 and not again.complete
    assert not path.exists() and not again.sidecar_path.exists()


def test_a_sidecar_from_other_data_is_not_trusted(tmp_path):
    x, path = _rows(), tmp_path / "k.npy"
    store = FeatureStore.at(path, len(x))
    store.fill(np.arange(10), x[:10])
    store.flush()
    side = json.loads(store.sidecar_path.read_text())
    store.sidecar_path.write_text(json.dumps({**side, "dim": 7}))
    assert len(FeatureStore.at(path, len(x)).done_rows()) == 0


def test_a_full_disk_warns_and_the_features_stay_in_memory(tmp_path, monkeypatch):
    x, path = _rows(), tmp_path / "k.npy"
    store = FeatureStore.at(path, len(x))
    store.fill(np.arange(100), x[:100])  # these reached the disk
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "no space")))
    with pytest.warns(UserWarning, match="could not write its cache file"):
        store.fill(np.arange(100, 300), x[100:])
    monkeypatch.setattr(os, "pwrite", real)
    assert store.complete and not store.on_disk
    np.testing.assert_array_equal(store.read(), x)  # the rows written before the failure included


def test_a_reader_rank_resumes_what_the_writer_left_without_writing(tmp_path):
    x, path = _rows(), tmp_path / "k.npy"
    writer = FeatureStore.at(path, len(x))
    writer.fill(np.arange(120), x[:120])
    writer.flush()
    reader = FeatureStore.at(path, len(x), writable=False)
    assert len(reader.missing_rows()) == 180  # the same rows to compute as the writer's: the ranks agree
    reader.fill(np.arange(120, 300), x[120:])
    np.testing.assert_array_equal(reader.read(), x)
    assert not path.exists() and (tmp_path / "k.partial.npy").exists()  # it wrote nothing


# --------------------------------------------------------------------------- embed on the store

@pytest.fixture(scope="module")
def lite0():
    return resolve_backbone("tf_efficientnet_lite0").build(image_size=32)


def _count_rows(monkeypatch, module) -> list[int]:
    counted, real = [], module.compute_features
    monkeypatch.setattr(module, "compute_features", lambda c, inputs, *a, **k: counted.append(len(inputs)) or real(c, inputs, *a, **k))
    return counted


def test_embed_cut_short_is_continued_by_the_next_embed(lite0, monkeypatch):
    data = make_blobs(n_per_class=10)
    monkeypatch.setattr(embed_module, "EMBED_CHUNK", 8)
    real, calls = embed_module.compute_features, []

    def killed_at_the_third_chunk(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)
    with monkeypatch.context() as m:
        m.setattr(embed_module, "compute_features", killed_at_the_third_chunk)
        with pytest.raises(KeyboardInterrupt):
            embed(lite0, data)
    counted = _count_rows(monkeypatch, embed_module)
    features = embed(lite0, data)
    assert sum(counted) == len(data) - 16  # the two finished chunks were kept
    assert isinstance(features, np.memmap)
    np.testing.assert_allclose(features, embed(lite0, data, cache=False), rtol=0, atol=1e-4)
    assert sum(counted) == len(data) - 16 + len(data)  # (the uncached call computes all)


@pytest.mark.slow  # tracemalloc slows every allocation: ~15 s idle, minutes on a busy machine
def test_embed_never_holds_the_whole_features_in_memory(lite0, monkeypatch):
    """A pool of 1,500 tiny images: the features (7.7 MB) go to disk chunk by chunk; the numpy
    memory traced while embedding stays near one chunk's worth, and what comes back is the file."""
    data = make_blobs(n_per_class=500)
    prepared = feature_extractor(lite0).prepare(data)
    monkeypatch.setattr(embed_module, "EMBED_CHUNK", 128)
    tracemalloc.start()
    try:
        features = embed(lite0, prepared, description=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    whole = len(data) * lite0.feature_dim * 4
    assert isinstance(features, np.memmap) and features.shape == (len(data), lite0.feature_dim)
    assert peak < 0.35 * whole, f"peak {peak / 1e6:.1f} MB traced for {whole / 1e6:.1f} MB of features"


@pytest.mark.slow  # two fits
def test_a_second_command_on_the_same_data_extracts_nothing(tmp_path, monkeypatch):
    folder = write_image_folder(tmp_path / "data", make_blobs(n_per_class=8))
    fit = ["fit", str(folder), "--strategy", "probe", "--image-size", "32", "--explain-examples", "0"]
    assert main([*fit, "--out", str(tmp_path / "first")]) == 0
    counted = _count_rows(monkeypatch, embed_module) + []
    linear_counted = _count_rows(monkeypatch, linear_module)
    assert main([*fit, "--out", str(tmp_path / "second")]) == 0
    assert sum(counted) == 0 and sum(linear_counted) == 0


# --------------------------------------------------------------------------- the head from the file

def test_the_head_trains_in_mini_batches_beyond_the_memory_allowance_and_agrees(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 3000)
    x = (rng.normal(size=(3, 16))[y] + rng.normal(size=(3000, 16))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    on_disk = np.load(tmp_path / "x.npy", mmap_mode="r")
    full = heads.head_solver(on_disk, y, 3)
    monkeypatch.setattr(heads, "HEAD_MEMORY_BYTES", 1000)
    streamed = heads.head_solver(on_disk, y, 3)
    assert isinstance(full, heads.HeadProblem) and isinstance(streamed, heads.MiniBatchHeadProblem)
    accuracy = {}
    for name, problem in {"full": full, "streamed": streamed}.items():
        w, b = problem.solve(0.1)
        accuracy[name] = (heads.head_logits(x, w, b).argmax(1) == y).mean()
    assert accuracy["full"] > 0.8 and abs(accuracy["streamed"] - accuracy["full"]) < 0.01


def test_ranks_that_find_different_stores_all_compute_every_row_in_memory(tmp_path, monkeypatch):
    """torchrun across nodes without a shared disk: the main node finds the finished store, the
    others none. Ranks computing different chunks would wait on each other's exchange for ever, so
    every rank computes every row; ranks that agree keep the store."""
    from headstart import feature_store
    from headstart.data import ranks

    x, path = _rows(8), tmp_path / "k.npy"
    store = FeatureStore.at(path, len(x))
    store.fill(np.arange(len(x)), x)
    store.flush()
    assert FeatureStore.at(path, len(x)).complete
    monkeypatch.setattr(feature_store, "feature_cache_path", lambda *_: path)
    monkeypatch.setattr(ranks, "is_distributed", lambda: True)

    monkeypatch.setattr(ranks, "gather", lambda mine: [mine, "another node's: none done"])
    apart = FeatureStore.open(None, x)
    assert not apart.on_disk and len(apart.missing_rows()) == len(x)

    monkeypatch.setattr(ranks, "gather", lambda mine: [mine, mine])
    together = FeatureStore.open(None, x)
    assert together.on_disk and together.complete
