"""Does `headstart audit` find wrong labels, and does dropping them pay? Issue 26's benchmark.

For each dataset: the splits `fit` draws (fashion-mnist at 100 training images per class), the
default backbone's frozen features (cached `embed`, as the audit computes them), then per seed
5 % of the TRAINING labels flipped at random to another class. The audit's finder runs on the
training split with the noisy labels (cross-validated head, cleanlab), and we score:

- precision and recall at k = the number flipped: of the first k items the audit flags (most
  likely wrong first), how many were flipped, and how many of the flipped are among them;
- the test accuracy of a probe (logistic head, C picked on validation) trained on the clean
  labels (the ceiling), on the noisy labels, and on the noisy labels minus every flagged item
  (what a user who confirms every flag gets), and the share of the noise's cost recovered.

Goal: precision >= 0.6 at k, and cleaning recovers at least half of what the noise cost.

    .venv/bin/python bench/audit_noise.py                        # elpv, fashion-mnist, bbc-news, 3 seeds
    .venv/bin/python bench/audit_noise.py --datasets digits --seeds 1 --per-class 20 --results /tmp/a.json  # tiny
    .venv/bin/python bench/audit_noise.py --measure-threshold    # the near-duplicate threshold (see below)

--measure-threshold measures what NEAR_DUPLICATE_SIMILARITY rests on: the cosine similarity
(centred features) between an item and a lightly changed copy (images: JPEG re-encoding at
quality 75, a 2-pixel shift, +8 brightness; texts: one word replaced), against the similarity
of each original to its nearest distinct item.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from headstart.compare import machine_info  # noqa: E402
from headstart.embed import embed  # noqa: E402
from headstart.label.al_classifier import fit_classifier, standardiser  # noqa: E402
from headstart.label.audit import find_problems, subject_of_data  # noqa: E402

PROBE_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)  # the probe's grid (strategies/linear.py C_GRID)
PER_CLASS = {"fashion-mnist": 100}          # training items per class; others: all of the data


def features_of(name: str, per_class: int | None, max_eval: int):
    """(subject, {split: (features, labels)}) as `headstart audit NAME` embeds them."""
    subject = subject_of_data(name, train_per_class=per_class, max_eval=max_eval)
    parts = {}
    for split, positions in subject.parts():
        part = subject.data.subset(subject.index[positions])
        parts[split] = (embed(subject.feature_model, part, description=f"{name} {split}"), part.labels)
    return subject, parts


def flip(labels: np.ndarray, num_classes: int, rate: float, rng) -> tuple[np.ndarray, np.ndarray]:
    noisy = labels.copy()
    flipped = rng.choice(len(labels), int(round(rate * len(labels))), replace=False)
    noisy[flipped] = (noisy[flipped] + rng.integers(1, num_classes, len(flipped))) % num_classes
    return noisy, flipped


def probe_accuracy(train_x, train_y, val_x, val_y, test_x, test_y, num_classes, seed) -> float:
    """Test accuracy of the logistic head whose C scored best on validation."""
    mean, std = standardiser(train_x)
    z = lambda x: (x - mean) / std  # noqa: E731
    best = None
    for c in PROBE_C_GRID:
        head = fit_classifier(z(train_x), train_y, num_classes, seed, c)
        val = float((head.predict(z(val_x)) == val_y).mean())
        if best is None or val > best[0]:
            best = (val, head)
    return float((best[1].predict(z(test_x)) == test_y).mean())


def one_dataset(name: str, args) -> dict:
    started = time.perf_counter()
    subject, parts = features_of(name, args.per_class or PER_CLASS.get(name), args.max_eval)
    embed_seconds = time.perf_counter() - started
    (train_x, clean), (val_x, val_y), (test_x, test_y) = parts["train"], parts["val"], parts["test"]
    k_classes = subject.data.num_classes
    clean_acc = probe_accuracy(train_x, clean, val_x, val_y, test_x, test_y, k_classes, 0)
    seeds = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(1000 + seed)
        noisy, flipped = flip(clean, k_classes, args.noise, rng)
        t0 = time.perf_counter()
        found = find_problems(train_x, noisy, k_classes, np.array(["train"] * len(noisy)), folds=args.folds, seed=seed)
        audit_seconds = time.perf_counter() - t0
        flagged = np.array([e["position"] for e in found["label_errors"]], dtype=np.int64)
        k = len(flipped)
        hits = np.isin(flagged[:k], flipped).sum()
        keep = np.setdiff1d(np.arange(len(noisy)), flagged)
        noisy_acc = probe_accuracy(train_x, noisy, val_x, val_y, test_x, test_y, k_classes, seed)
        cleaned_acc = probe_accuracy(train_x[keep], noisy[keep], val_x, val_y, test_x, test_y, k_classes, seed)
        cost = clean_acc - noisy_acc
        seeds.append({
            "seed": seed, "flipped": int(k), "flagged": int(len(flagged)),
            "precision_at_k": round(float(hits / min(k, len(flagged))) if len(flagged) else 0.0, 4),
            "recall_at_k": round(float(hits / k), 4),
            "precision_all_flagged": round(float(np.isin(flagged, flipped).mean()) if len(flagged) else 0.0, 4),
            "recall_all_flagged": round(float(np.isin(flipped, flagged).mean()), 4),
            "test_accuracy_noisy": round(noisy_acc, 4), "test_accuracy_cleaned": round(cleaned_acc, 4),
            "recovered_share": None if cost <= 0 else round((cleaned_acc - noisy_acc) / cost, 3),
            "audit_seconds": round(audit_seconds, 2), "probe_C": found["probe"]["C"],
        })
        print(f"{name} seed {seed}: {seeds[-1]}", flush=True)
    mean = lambda key: round(float(np.mean([s[key] for s in seeds])), 4)  # noqa: E731
    recovered = [s["recovered_share"] for s in seeds if s["recovered_share"] is not None]
    return {
        "backbone": subject.backbone, "sizes": {s: len(p[1]) for s, p in parts.items()}, "classes": k_classes,
        "test_accuracy_clean": round(clean_acc, 4), "embed_seconds": round(embed_seconds, 1), "per_seed": seeds,
        "precision_at_k": mean("precision_at_k"), "recall_at_k": mean("recall_at_k"),
        "test_accuracy_noisy": mean("test_accuracy_noisy"), "test_accuracy_cleaned": mean("test_accuracy_cleaned"),
        "recovered_share": round(float(np.mean(recovered)), 3) if recovered else None,
        "goal_met": bool(mean("precision_at_k") >= 0.6 and recovered and np.mean(recovered) >= 0.5),
    }


# -- the near-duplicate threshold --------------------------------------------------------------

def _changed_images(images: np.ndarray, rng) -> np.ndarray:
    from PIL import Image

    out = []
    for img in images:
        buffer = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buffer, format="JPEG", quality=75)
        copy = np.asarray(Image.open(buffer)).reshape(img.shape).astype(np.int16)
        copy = np.roll(copy, shift=2, axis=int(rng.integers(0, 2)))
        out.append(np.clip(copy + 8, 0, 255).astype(np.uint8))
    return np.stack(out)


def _changed_texts(texts: list[str], rng) -> list[str]:
    out = []
    for text in texts:
        words = text.split()
        words[int(rng.integers(0, len(words)))] = "indeed"
        out.append(" ".join(words))
    return out


def measure_threshold(name: str, sample: int) -> dict:
    import dataclasses

    from headstart.label.audit_find import nearest_neighbours

    subject = subject_of_data(name)
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(subject.index, min(sample, len(subject.index)), replace=False))
    originals = subject.data.subset(chosen)
    if hasattr(originals, "images"):
        copies = dataclasses.replace(originals, images=_changed_images(originals.images, rng))
    else:
        copies = dataclasses.replace(originals, texts=_changed_texts(originals.texts, rng), tokens=None)
    x = embed(subject.feature_model, originals.unlabelled(), description=f"{name} originals")
    y = embed(subject.feature_model, copies.unlabelled(), description=f"{name} copies")
    both = nearest_neighbours(np.vstack([x, y]), 1)  # centred on originals and copies, as an audit centres
    n = len(x)
    copy_similarity = both.similarity[n:, 0][both.index[n:, 0] == np.arange(n)]
    distinct = nearest_neighbours(x, 1).similarity[:, 0]
    pct = lambda a, q: round(float(np.percentile(a, q)), 4)  # noqa: E731
    return {"items": int(n), "copy_found_as_nearest": round(float(len(copy_similarity) / n), 4),
            "copy_similarity": {"min": pct(copy_similarity, 0), "p1": pct(copy_similarity, 1),
                                "p5": pct(copy_similarity, 5), "median": pct(copy_similarity, 50)},
            "distinct_nearest_similarity": {"median": pct(distinct, 50), "p99": pct(distinct, 99),
                                            "p99.9": pct(distinct, 99.9), "max": pct(distinct, 100)}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="elpv,fashion-mnist,bbc-news")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=None, help="training items per class (default: "
                                                                     "fashion-mnist 100, others all)")
    parser.add_argument("--max-eval", type=int, default=1000)
    parser.add_argument("--measure-threshold", action="store_true")
    parser.add_argument("--sample", type=int, default=400, help="items per dataset for --measure-threshold")
    parser.add_argument("--results", default=None)
    args = parser.parse_args()
    default = "bench/results/audit_threshold.json" if args.measure_threshold else "bench/results/audit_noise.json"
    results_path = Path(args.results or default)
    results = {"machine": machine_info(), "settings": vars(args), "datasets": {}}
    for name in args.datasets.split(","):
        result = measure_threshold(name, args.sample) if args.measure_threshold else one_dataset(name, args)
        results["datasets"][name] = result
        print(f"{name}: {json.dumps({k: v for k, v in result.items() if k != 'per_seed'})}", flush=True)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
