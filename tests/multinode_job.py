"""What tests/test_multinode.py runs in one process and under torchrun: embed a folder, then fit a
probe and a fine-tune on it (one interpreter for all three: a start-up per launch, not per step).
After each step every rank writes how many files it has decoded so far (data/ranks.DECODED).

usage: python tests/multinode_job.py FOLDER OUT"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from headstart.cli import main
from headstart.data.ranks import DECODED
from headstart.embed import embed
from headstart.modalities import load_data
from headstart.zoo import resolve_backbone

# PyTorch eager extracts the probe's features: an ONNX export per launch and rank cost 20 s of each
# 25 s fit on 2 cores, and the sharding under test is the same for every engine
FIT = ["--image-size", "32", "--batch-size", "16", "--backbone", "vit_tiny_patch16_224", "--no-pretrained",
       "--explain-examples", "0", "--extract-engine", "torch"]


# what the training loop did: files it decoded because its node lacked them, and whether each rank
# trained on its own share (train/shares.py) rather than its part of one process's batches
LOOP = {"on_demand": 0, "own_share": None}


def _watch_the_loop() -> None:
    import headstart.strategies.backbone_training as training
    import headstart.train.loop as loop

    train_model, own_share_loader = training.train_model, loop.own_share_loader

    def counted(*args, **kwargs):
        before = DECODED["on_demand"]
        try:
            return train_model(*args, **kwargs)
        finally:
            LOOP["on_demand"] += DECODED["on_demand"] - before

    def noted(*args, **kwargs):
        made = own_share_loader(*args, **kwargs)
        LOOP["own_share"] = made is not None
        return made

    training.train_model, loop.own_share_loader = counted, noted


def _counts(out: Path, step: str) -> None:
    path = out / "counts" / f"rank-{os.environ.get('RANK', '0')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    seen = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**seen, step: dict(DECODED), "loop": dict(LOOP)}))


def run(folder: str, out: Path) -> None:
    _watch_the_loop()
    data = load_data(folder, size=32)
    torch.manual_seed(0)
    features = embed(resolve_backbone("vit_tiny_patch16_224").build(pretrained=False, image_size=32), data, cache=False)
    if os.environ.get("RANK", "0") == "0":
        np.save(out / "features.npy", np.asarray(features))
    _counts(out, "embed")
    assert main(["fit", folder, "--out", str(out / "probe"), "--strategy", "probe", *FIT]) == 0
    _counts(out, "probe")
    # another seed (split and initial weights): a node without a shared cache folder has no copy of
    # the features the probe cached on the main node, and the ranks must agree on what is cached
    assert main(["fit", folder, "--out", str(out / "finetune"), "--strategy", "finetune", "--epochs", "2",
                 "--augment", "none", "--seed", "1", *FIT]) == 0
    _counts(out, "finetune")


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]))
