"""embed and fit under torchrun shard the files: each rank decodes its share into the decode cache
(data/shared_cache.py), computes the rows it owns and the ranks exchange features and logits
(data/ranks.py, train/shares.py). Real subprocesses, two ways on one machine:

- `torchrun --nnodes 1 --nproc_per_node 2`: both ranks fill one cache file;
- two `torchrun --nnodes 2 --nproc_per_node 1` launchers meeting at a rendezvous on localhost,
  each with its own cache folder: the multi-node code path, where a node holds only its own
  ranks' rows and each rank trains on its own share.

Each launch runs tests/multinode_job.py (embed, a probe, a fine-tune) and is compared with the
same job in one process."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from headstart.records import read_json, read_metrics

from conftest import make_blobs, write_image_folder

pytestmark = pytest.mark.slow  # a launch is minutes of interpreter start-up and closing steps on 2 cores

BIN = Path(sys.executable).parent
JOB = Path(__file__).with_name("multinode_job.py")
PER_CLASS = 16
FILES = 3 * PER_CLASS


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "data", make_blobs(n_per_class=PER_CLASS))


def _launch(launcher: list[str], folder, out: Path, cache: Path) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HEADSTART_QUIET": "1", "HEADSTART_CACHE": str(cache)}
    return subprocess.Popen([*launcher, str(JOB), str(folder), str(out)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finished(*processes: subprocess.Popen) -> None:
    for p in processes:
        output, _ = p.communicate(timeout=900)
        assert p.returncode == 0, output[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def alone(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("alone")
    _finished(_launch([sys.executable], folder, out, out / "cache"))
    return out


def _counts(out: Path) -> list[dict]:
    return [json.loads((out / "counts" / f"rank-{r}.json").read_text()) for r in range(2)]


def _val_losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run) if r["split"] == "val" and r["phase"] == "finetune"]


def _same_features_and_probe(out: Path, alone: Path) -> None:
    assert np.array_equal(np.load(out / "features.npy"), np.load(alone / "features.npy"))
    one, two = read_json(alone / "probe" / "summary.json"), read_json(out / "probe" / "summary.json")
    assert two["processes"] == 2
    assert (two["probe_C"], two["test_accuracy"]) == (one["probe_C"], one["test_accuracy"])
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=1e-4)  # L-BFGS: 1 thread a rank vs 2


def _cache_files(cache: Path) -> tuple[np.ndarray, dict]:
    (npy,) = (cache / "decoded").glob("*.npy")
    with np.load(npy.with_suffix(".npz")) as side:
        return np.load(npy), {k: side[k] for k in side.files}


def test_two_ranks_on_one_machine_fill_one_cache_and_match_one_process(folder, alone, tmp_path, monkeypatch):
    out, cache = tmp_path / "out", tmp_path / "cache"
    _finished(_launch([str(BIN / "torchrun"), "--nnodes", "1", "--nproc_per_node", "2"], folder, out, cache))

    for counts in _counts(out):  # each rank decoded its half of the files, and only that
        assert counts["embed"] == counts["finetune"] == {"share": FILES // 2, "on_demand": 0}
        assert counts["loop"]["own_share"] is False  # every rank reads every row: one process's batches
    pixels, side = _cache_files(cache)
    assert side["present"].all() and not side["compact"] and pixels.reshape(FILES, -1).any(axis=1).all()

    _same_features_and_probe(out, alone)
    # every rank reads every row here, so the loop keeps one process's global batches
    assert _val_losses(out / "finetune") == pytest.approx(_val_losses(alone / "finetune"), rel=1e-3)
    one, two = (read_json(run / "finetune" / "summary.json") for run in (alone, out))
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"])

    # the cache both ranks filled is one process's cache too: a later run decodes nothing
    from headstart.data.ranks import DECODED
    from headstart.modalities import load_data

    monkeypatch.setenv("HEADSTART_CACHE", str(cache))
    before = dict(DECODED)
    data = load_data(str(folder), size=32)
    assert DECODED == before
    monkeypatch.setenv("HEADSTART_CACHE", str(alone / "cache"))
    assert np.array_equal(np.asarray(data.images), np.asarray(load_data(str(folder), size=32).images))


def test_two_nodes_without_a_shared_cache_each_decode_and_train_on_their_share(folder, alone, tmp_path):
    out, endpoint = tmp_path / "out", f"localhost:{_free_port()}"
    launcher = [str(BIN / "torchrun"), "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                "--rdzv_endpoint", endpoint, "--rdzv_id", "test-multinode"]
    _finished(*[_launch(launcher, folder, out, tmp_path / f"node{n}") for n in range(2)])

    # each node's cache holds its own rank's rows, the others zeros (sparse), and says so
    halves = []
    for n in range(2):
        pixels, side = _cache_files(tmp_path / f"node{n}")
        assert np.array_equal(pixels.reshape(FILES, -1).any(axis=1), side["present"])
        halves.append(np.flatnonzero(side["present"]))
    assert sorted(map(tuple, halves)) == [tuple(range(0, FILES, 2)), tuple(range(1, FILES, 2))]

    for c in _counts(out):
        assert c["embed"] == {"share": FILES // 2, "on_demand": 0}  # embed read its own rows only
        assert c["finetune"]["share"] == FILES // 2
        # the loop trained and evaluated on the rank's own rows: it never needed another node's
        assert c["loop"] == {"own_share": True, "on_demand": 0}

    _same_features_and_probe(out, alone)
    # each rank trained on its own share: the same items each epoch in other batches, so the
    # figures agree within seed-to-seed noise rather than to the digit (train/shares.py)
    one, two = (read_json(run / "finetune" / "summary.json") for run in (alone, out))
    assert len(_val_losses(out / "finetune")) == len(_val_losses(alone / "finetune"))
    assert _val_losses(out / "finetune") != _val_losses(alone / "finetune")
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 0.1
