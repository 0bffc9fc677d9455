"""`headstart select RUN POOL`: rank an unlabelled pool and write the k items to label next.

The run's own model scores the pool: its backbone embeds the pool (cached, so a second round
on the same pool costs only the query), its head gives the probabilities uncertainty methods
read, and its training data is what core-set and TypiClust cover and what the pool must not
repeat. Items already labelled (same content, whatever the file is called) and repeats within
the pool are dropped and reported. The CSV has a blank `label` column: fill it in and pass the
file to `headstart fit ... --add-labels FILE`.
"""
from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..embed import embed
from ..errors import HeadstartError
from ..files import atomic_write_text
from ..log import say
from ..run import Run
from .al_classifier import fixed_classifier, head_on_standardised, standardiser
from .queries import QueryInput, get_query, run_query


def drop_known(pool, labelled) -> tuple[np.ndarray, dict]:
    """Indices of the pool items to rank: repeats of a labelled item, and second copies within
    the pool, are dropped (by content hash) and counted with a few examples."""
    known = set(labelled.item_hashes()) if labelled is not None else set()
    names = pool.item_names()
    keep, seen, labelled_again, repeated = [], set(), [], []
    for i, h in enumerate(pool.item_hashes()):
        if h in known:
            labelled_again.append(names[i])
        elif h in seen:
            repeated.append(names[i])
        else:
            seen.add(h)
            keep.append(i)
    dropped = {"already_labelled": len(labelled_again), "repeated_in_pool": len(repeated),
               "examples": (labelled_again + repeated)[:5]}
    return np.array(keep, dtype=np.int64), dropped


def select_from_run(run: Run, pool: str, *, k: int, method: str, out: str | Path | None = None,
                    seed: int = 0, format: str = "csv") -> dict:
    """`headstart select RUN POOL`: rank the pool with a finished run's model, given the data it
    trained on (its split, with the labels it added); write the k items to label next (default
    RUN/select-METHOD.csv, or Label Studio tasks in RUN/select-METHOD.json with
    format="label-studio"). Needs Run.reload_data's reloader, which headstart.pipeline registers."""
    from ..modalities import load_pool

    if format not in WRITERS:
        raise HeadstartError(f"unknown select format {format!r}", hint=f"choose one of: {', '.join(WRITERS)}")
    model = run.model()
    labelled = run.reload_data("select reads the run's training data, to skip what is labelled already and "
                               "cover what is not").splits.train
    items = load_pool(pool, modality=run.model_info["modality"], size=labelled.decoded_size)
    out = Path(out) if out else run.path / f"select-{method}.{WRITERS[format].suffix}"
    done = select(model, labelled, items, k=k, method=method, out=out, seed=seed, write=WRITERS[format].write,
                  model_version=f"headstart:{run.name}")
    return {**done, "format": format}


def select(model, labelled, pool, *, k: int, method: str, out: Path, seed: int = 0, write=None,
           model_version: str = "headstart") -> dict:
    """Rank `pool` under the run's `model` (a backbone + linear head) given its `labelled`
    training data; write the top k to `out` (CSV) and return what was done."""
    query = get_query(method)  # an unknown method fails before any embedding
    if not hasattr(model, "head"):
        raise HeadstartError("select needs a run with a pretrained backbone and a linear head (probe, lp-ft, "
                             "finetune, lora); this run's model has no embedding to rank a pool by",
                             hint="fit a probe on the same data (`headstart fit DATA --strategy probe`) and select with it")
    started = time.perf_counter()
    keep, dropped = drop_known(pool, labelled)
    if dropped["already_labelled"] or dropped["repeated_in_pool"]:
        say(f"dropped {dropped['already_labelled']} pool item(s) already in the training data and "
            f"{dropped['repeated_in_pool']} repeated in the pool, e.g. {dropped['examples'][0]}")
    if len(keep) == 0:
        raise HeadstartError("every item of the pool is already labelled: there is nothing to select",
                             hint="pass items the run has not been trained on")
    if k > len(keep):
        raise HeadstartError(f"--k {k} is more than the {len(keep)} new item(s) in the pool"
                             + (f" ({len(pool) - len(keep)} were dropped as duplicates)" if len(keep) < len(pool) else ""),
                             hint=f"ask for at most --k {len(keep)}")
    candidates = pool.subset(keep)
    train_x = embed(model, labelled, description="features (labelled)")
    pool_x = embed(model, candidates, description="features (pool)")
    mean, std = standardiser(train_x, pool_x)
    train_z, pool_z = (train_x - mean) / std, (pool_x - mean) / std
    weight = model.head.fc.weight.detach().cpu().numpy().astype(np.float64)
    bias = model.head.fc.bias.detach().cpu().numpy().astype(np.float64)
    classifier = fixed_classifier(*head_on_standardised(weight, bias, mean, std), train_z, labelled.labels)
    chosen, scores = run_query(method, QueryInput(train_z, labelled.labels, pool_z, classifier, seed), k)
    probabilities = classifier.predict_proba(pool_z[chosen])
    rows = _rows(candidates, chosen, scores, probabilities, labelled.classes, keep)
    (write or _write_csv)(out, rows, candidates.item_column, classes=labelled.classes, model_version=model_version)
    seconds = round(time.perf_counter() - started, 3)
    say(f"{method}: the {k} item(s) to label next are in {out} ({seconds:.1f} s)")
    return {"method": method, "summary": query.summary, "k": k, "column": candidates.item_column,
            "pool_size": len(pool), "ranked": len(keep),
            "dropped": dropped, "seconds": seconds, "csv": str(out), "rows": rows}


def _rows(candidates, chosen, scores, probabilities, classes, keep) -> list[dict]:
    names = candidates.item_names()
    column = candidates.item_column
    rows = []
    for rank, (i, s, p) in enumerate(zip(chosen, scores, probabilities), 1):
        guess = int(np.argmax(p))
        row = {"rank": rank, column: names[i], "score": float(s), "guess": classes[guess],
               "guess_probability": float(p[guess]), "label": ""}
        if column != "path" and candidates.paths is not None:
            row["source"] = candidates.paths[i]  # where a text came from (file, line)
        row["pool_index"] = int(keep[i])
        rows.append(row)
    return rows


def _write_csv(out: Path, rows: list[dict], column: str, **_) -> None:
    fields = ["rank", column, "score", "guess", "guess_probability", "label"]
    fields += [f for f in ("source", "pool_index") if any(f in r for r in rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "score": f"{row['score']:.6g}", "guess_probability": f"{row['guess_probability']:.4f}"})
    atomic_write_text(Path(out), buffer.getvalue())


def _write_label_studio(out: Path, rows: list[dict], column: str, *, classes: list[str], model_version: str) -> None:
    """Label Studio tasks (the model's guess as a prediction) and the labelling config beside them."""
    from .label_studio import write_tasks

    write_tasks(rows, Path(out), kind=column, classes=classes, model_version=model_version)


@dataclass(frozen=True)
class _Writer:
    suffix: str
    write: Callable[..., None]


# what `select --format` writes: the file people fill in, or what their labelling tool imports
WRITERS = {"csv": _Writer("csv", _write_csv), "label-studio": _Writer("json", _write_label_studio)}
