"""Shared test set-up: offline, quiet, a private cache, and small synthetic image data."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Tests must never reach a hub, and must not write into the user's headstart cache (the one
# exception, the test engines' own folder, is outside it: _engine_folder).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HEADSTART_QUIET"] = "1"
# Under pytest-xdist (make test, make check) each worker gets its share of the cores: every worker
# running torch on every core would oversubscribe them. Set before torch starts, so subprocesses
# (the CLI end-to-end tests) follow it too.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


@pytest.fixture(autouse=True, scope="session")
def _private_folders(tmp_path_factory):
    """The cache and the local zoo in this session's own folder (one per xdist worker), for the
    module-scoped fixtures too: parallel workers never write one file.

    One exception: the exported extraction engines (cache/engines, ONNX files keyed by the
    backbone's architecture, weights, preprocessing and torch version) are shared by the workers
    and kept between runs (_engine_folder). Exporting Lite0 takes ~12 s per input size, and every
    worker of every run paid it again (a fifth of `make check`); an export is written atomically,
    so two workers exporting one key both leave a whole file."""
    base = tmp_path_factory.getbasetemp()
    (base / "cache").mkdir(parents=True, exist_ok=True)
    engines = base / "cache" / "engines"
    if not engines.exists():
        engines.symlink_to(_engine_folder(), target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HEADSTART_CACHE", str(base / "cache"))
        patch.setenv("HEADSTART_HOME", str(base / "home"))
        yield


ENGINE_FOLDERS_KEPT = 3  # the newest code versions' exports; older ones are removed


def _engine_folder() -> Path:
    """The test engines' folder for this version of the code, in the machine's cache (outside the
    checkout): every clone of the same code on this machine reuses its exports (CI runs in a fresh
    clone; cold, its five exports cost ~60 s of CPU). The key is a hash of every source file, so
    an export made by other code (an export bug fixed since) is never reused; the cache key alone
    would not see that. Only the newest ENGINE_FOLDERS_KEPT versions are kept."""
    import hashlib
    import shutil

    source = Path(__file__).resolve().parent.parent / "src" / "headstart"
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*.py")):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "headstart-tests" / "engines"
    folder = root / digest.hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    os.utime(folder)  # its use, for the pruning below
    for old in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)[ENGINE_FOLDERS_KEPT:]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


_THREADS: list[int] = []  # torch's thread count when the first test began


@pytest.fixture(autouse=True)
def _seeded_generators():
    """Every test starts from the same global random state, whatever ran before it on its xdist
    worker: a test that draws unseeded numbers gets the same ones each run, so it passes or fails
    the same way every time (CI once failed on an unlucky draw)."""
    import random

    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    # and on the same number of threads: a test that changed it would change how later tests round
    # (a resumed run compared to 1e-5 with one never killed failed after a tune ran in its worker)
    if not _THREADS:
        _THREADS.append(torch.get_num_threads())
    torch.set_num_threads(_THREADS[0])


# `make check` leaves out the tests marked slow: those marked in their own file and those listed in
# slow_tests.txt (a test, or a whole file), the slowest of timed runs (bench/slow_tests.py writes it).
_SLOW_LIST = Path(__file__).with_name("slow_tests.txt")
_FILE_SECONDS = Path(__file__).with_name("file_seconds.txt")


def pytest_collection_modifyitems(config, items):
    listed = {line.strip() for line in _SLOW_LIST.read_text().splitlines()
              if line.strip() and not line.startswith("#")} if _SLOW_LIST.is_file() else set()
    for item in items:
        if item.nodeid.split("[", 1)[0] in listed or item.nodeid.split("::", 1)[0] in listed:  # a test, or its file
            item.add_marker(pytest.mark.slow)
    _heaviest_files_first(items)


def _heaviest_files_first(items) -> None:
    """Run the heaviest files first (file_seconds.txt, from the last timed run: make slow-list),
    each file's tests kept together and in order (their module fixtures are built once). xdist
    hands tests out in this order, so the long ones start while the other worker still has short
    ones to take, and no minute-long file is left for the end while one worker sits idle (in
    alphabetical order that tail cost a minute)."""
    seconds: dict[str, float] = {}
    if _FILE_SECONDS.is_file():
        for line in _FILE_SECONDS.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, spent = line.rsplit(" ", 1)
                seconds[name] = float(spent)
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::", 1)[0], 0.0))  # stable: a file's order kept


# A fit's deploy row and report cost a few seconds each and most tests read neither: they are
# off (HEADSTART_SKIP, post_fit.py) unless the test, its class or its module is marked
# @pytest.mark.deploy or @pytest.mark.report. Module-scoped fixtures follow the module's marks.
CLOSING_PARTS = ("deploy", "report")


def _skip_unmarked(node, patch) -> None:
    patch.setenv("HEADSTART_SKIP", ",".join(p for p in CLOSING_PARTS if node.get_closest_marker(p) is None))


@pytest.fixture(autouse=True, scope="module")
def _closing_for_module(request):
    with pytest.MonkeyPatch.context() as patch:
        _skip_unmarked(request.node, patch)
        yield


@pytest.fixture(autouse=True)
def _closing_for_test(request, monkeypatch):
    _skip_unmarked(request.node, monkeypatch)


def make_blobs(n_per_class: int = 24, size: int = 32, classes=("red", "green", "blue"), seed: int = 0):
    """A learnable image task: each class is a noisy image dominated by one colour channel,
    with a bright square at a class-specific corner (so grey-scale models can learn it too)."""
    from headstart.data.dataset import ImageData

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k, _ in enumerate(classes):
        for _ in range(n_per_class):
            img = rng.integers(0, 90, size=(size, size, 3))
            img[..., k % 3] += 120
            q = size // 2
            r, c = divmod(k % 4, 2)
            img[r * q:(r + 1) * q, c * q:(c + 1) * q] += 40
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(k)
    return ImageData(images=np.stack(images), labels=np.array(labels, dtype=np.int64),
                     classes=list(classes), name="blobs")


@pytest.fixture
def blobs():
    return make_blobs()


def write_image_folder(root, data, per_class: int | None = None):
    """Write an ImageData as a folder of class sub-folders of PNGs."""
    from PIL import Image

    counts = {}
    for img, label in zip(data.images, data.labels):
        name = data.classes[label]
        counts[name] = counts.get(name, 0) + 1
        if per_class and counts[name] > per_class:
            continue
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.squeeze() if img.shape[-1] == 1 else img).save(folder / f"{counts[name]:04d}.png")
    return root


TOPICS = {
    "sport": "goal match team striker league cup coach score",
    "money": "bank shares market profit inflation rates stocks economy",
    "weather": "rain storm sunny forecast wind cloud snow temperature",
}
FILLER = "the a of and to in is it was on for with as by at this that from".split()


def make_texts(n_per_class: int = 24, seed: int = 0):
    """Short texts: a few topic words among filler words, so TF-IDF and a probe can learn it."""
    from headstart.data.dataset import TextData

    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for k, words in enumerate(TOPICS.values()):
        vocab = words.split()
        for _ in range(n_per_class):
            chosen = list(rng.choice(vocab, 3)) + list(rng.choice(FILLER, int(rng.integers(3, 12))))
            rng.shuffle(chosen)
            texts.append(" ".join(chosen))
            labels.append(k)
    return TextData(texts=texts, labels=np.array(labels), classes=list(TOPICS), name="topics")


def make_tiny_bert(folder) -> str:
    """A 2-layer, 32-wide BERT with a word-level vocabulary, saved as a model folder. Random
    weights, except that each topic's words share an embedding direction: a stand-in for the
    knowledge pretraining gives, so that transfer has something to transfer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for topic in TOPICS.values() for w in topic.split()} | set(FILLER))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    model = BertModel(config)
    with torch.no_grad():
        for k, topic in enumerate(TOPICS.values()):
            for word in topic.split():
                model.embeddings.word_embeddings.weight[vocab.index(word), k] += 4.0
    model.save_pretrained(str(folder))
    return str(folder)


def kill_once_it_starts(worker, started, seconds: float = 300) -> None:
    """SIGKILL `worker` (a Popen) as soon as the path `started` exists, then reap it; fails if
    the worker ends, or `seconds` pass, first."""
    import signal
    import time

    try:
        deadline = time.time() + seconds
        while not started.exists():
            assert worker.poll() is None and time.time() < deadline, f"the worker ended before {started} appeared"
            time.sleep(0.1)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait()


def tiny_image_folder(tmp_path_factory):
    """60 blob images (48 px) as a folder of class sub-folders: the data of the export and serve tests."""
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "data", make_blobs(n_per_class=20, size=48))


def fit_tiny_probe(folder, tmp_path_factory):
    """A probe on `folder` at 64 px, fitted through the command line: the run the export and serve tests read."""
    from headstart.cli import main

    out = tmp_path_factory.mktemp("runs") / "image"
    assert main(["-q", "fit", str(folder), "--strategy", "probe", "--image-size", "64", "--out", str(out),
                 "--explain-examples", "0"]) == 0
    return out
