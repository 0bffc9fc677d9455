"""--balance and --synthesize: balancing lifts the minority class, synthetic samples stay in
their class and on a segment between two real ones, provenance is exact, validation and test
never see a synthetic sample, auto says what it did and why."""
import numpy as np
import pytest
import torch

from headstart.cli import main
from headstart.config import FitConfig
from headstart.imbalance.balance import class_weights, decide_balance, oversample, sample_weights
from headstart.imbalance.synthesize import provenance, smote, synthesize_features, targets
from headstart.pipeline import fit
from headstart.records import read_json
from headstart.strategies.linear import _fit

from conftest import make_blobs, make_texts, write_image_folder


def overlapping(n_major=300, n_minor=30, seed=0, shift=1.5):
    """Two overlapping Gaussians, 10:1: an unweighted fit puts the boundary deep in the minority."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, (n_major, 2)), rng.normal(0, 1, (n_minor, 2)) + [shift, 0]])
    y = np.concatenate([np.zeros(n_major, np.int64), np.ones(n_minor, np.int64)])
    return x.astype(np.float32), y


def minority_recall(weight, bias, seed=1):
    x, y = overlapping(1000, 1000, seed=seed)  # a balanced test set from the same two classes
    predicted = (x @ weight.T + bias).argmax(1)
    return float((predicted[y == 1] == 1).mean())


def test_class_weights_are_inverse_counts_with_mean_one_over_samples():
    labels = np.array([0] * 90 + [1] * 10 + [2] * 20)
    w = class_weights(labels, 4)  # class 3 has no training sample
    assert w[1] / w[0] == pytest.approx(9.0) and w[2] / w[0] == pytest.approx(4.5)
    assert sample_weights(labels, 4).mean() == pytest.approx(1.0)
    assert w[3] == 1.0


def test_weights_and_sampler_raise_the_minority_recall_of_the_logistic_head():
    x, y = overlapping()
    plain = minority_recall(*_fit(x, y, 2, c=1.0))
    weighted = minority_recall(*_fit(x, y, 2, c=1.0, sample_weight=sample_weights(y, 2)))
    xs, ys = oversample(x, y, seed=0)
    sampled = minority_recall(*_fit(xs, ys, 2, c=1.0))
    assert np.bincount(ys).tolist() == [300, 300]
    assert plain < 0.45, plain                      # the skewed prior pulls the boundary over
    assert weighted > plain + 0.25 and sampled > plain + 0.25, (plain, weighted, sampled)


class _Val:
    def __init__(self, x, y):
        self.inputs, self.labels = x, y

    def __len__(self):
        return len(self.labels)


def _train_loop(x, y, **imbalance):
    from headstart.records import Recorder
    from headstart.train.batches import ArrayTokenDataset
    from headstart.train.loop import TrainPlan, train_model

    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    plan = TrainPlan(epochs=8, batch_size=32, patience=100, seed=0, schedule="cosine", num_classes=2, **imbalance)
    groups = [{"params": list(model.parameters()), "lr": 0.1}]
    train_model(model, groups, ArrayTokenDataset(x, y), _Val(x[:64], y[:64]), plan, Recorder(None, "t"))
    return model.weight.detach().numpy(), model.bias.detach().numpy()


def test_the_training_loop_balances_with_class_weights_or_a_balanced_sampler():
    x, y = overlapping()
    plain = minority_recall(*_train_loop(x, y))
    weighted = minority_recall(*_train_loop(x, y, class_weights=tuple(class_weights(y, 2))))
    sampled_head = _train_loop(x, y, sample_weights=sample_weights(y, 2))
    sampled = minority_recall(*sampled_head)
    assert weighted > plain + 0.2 and sampled > plain + 0.2, (plain, weighted, sampled)
    again = _train_loop(x, y, sample_weights=sample_weights(y, 2))  # through Accelerate: a function of the seed
    assert np.array_equal(again[0], sampled_head[0]) and np.array_equal(again[1], sampled_head[1])


def test_the_balanced_sampler_draws_classes_equally_and_is_a_function_of_seed_and_epoch():
    from headstart.train.batches import BalancedSampler

    labels = np.array([0] * 900 + [1] * 100)
    sampler = BalancedSampler(sample_weights(labels, 2), seed=3)
    first = list(sampler)
    assert list(sampler) == first                       # same (seed, epoch): same draw
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert 0.4 < labels[first].mean() < 0.6             # the minority drawn about half the time
    assert len(first) == len(labels)


def test_auto_decides_from_the_imbalance_ratio_and_says_why():
    near = decide_balance("auto", np.array([0] * 12 + [1] * 10), 2)
    skewed = decide_balance("auto", np.array([0] * 50 + [1] * 10), 2)
    assert near.mode == "none" and "1.20" in near.reason
    assert skewed.mode == "weights" and "5.00" in skewed.reason
    record = skewed.record(["a", "b"])
    assert record["requested"] == "auto" and record["imbalance_ratio"] == 5.0
    assert record["class_weights"]["b"] / record["class_weights"]["a"] == pytest.approx(5.0)


def clusters(seed=0):
    """Three far-apart classes in 6-D, two of them minorities."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 6) * 20
    counts = (40, 8, 3)
    x = np.concatenate([rng.normal(0, 1, (n, 6)) + centres[k] for k, n in enumerate(counts)])
    y = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    return x.astype(np.float32), y, centres


def test_synthetic_samples_lie_between_two_real_samples_of_their_own_class():
    x, y, centres = clusters()
    made, made_y = smote(x, y, "auto", 3, seed=0)
    assert np.bincount(made_y, minlength=3).tolist() == [0, 32, 37]   # up to the largest class
    a, b, lam, residual = provenance(made, made_y, x, y)
    assert (y[a] == made_y).all() and (y[b] == made_y).all() and (a != b).all()
    assert residual.max() < 1e-5 and ((lam >= 0) & (lam <= 1)).all()
    rebuilt = x[a] + lam[:, None] * (x[b] - x[a])
    assert np.abs(rebuilt - made).max() < 1e-3
    nearest_centre = np.linalg.norm(made[:, None] - centres[None], axis=2).argmin(1)
    assert (nearest_centre == made_y).all()   # inside their own class's region


def test_provenance_recovery_is_exact_on_a_constructed_case():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (12, 4))
    y = np.array([0] * 6 + [1] * 6)
    pairs = [(0, 3, 0.3), (7, 11, 0.8), (2, 5, 0.05)]
    s = np.stack([x[i] + lam * (x[j] - x[i]) for i, j, lam in pairs])
    a, b, lam, residual = provenance(s, y[[i for i, _, _ in pairs]], x, y)
    for k, (i, j, true_lam) in enumerate(pairs):
        if a[k] == i:
            assert (b[k], lam[k]) == (j, pytest.approx(true_lam, abs=1e-9))
        else:  # the same segment walked from the other end
            assert (a[k], b[k], lam[k]) == (j, i, pytest.approx(1 - true_lam, abs=1e-9))
    assert residual.max() < 1e-6  # Gram-matrix arithmetic: ~sqrt(float64 eps)


def test_k_per_minority_class_and_a_single_example_class_gets_none():
    labels = np.array([0] * 10 + [1] * 4 + [2] * 1)
    assert targets("7", labels, 3) == {1: 7}
    x = np.random.default_rng(0).normal(size=(15, 3)).astype(np.float32)
    _, y2, record = synthesize_features(x, labels, "7", ["a", "b", "c"], 0, lambda i: f"#{i}")
    assert record["per_class"] == {"b": 7} and record["total"] == 7 and len(y2) == 22
    assert all(e["class"] == "b" and len(e["from"]) == 2 for e in record["examples"])


def test_a_bad_synthesize_value_is_a_clear_error(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "d", make_blobs(n_per_class=6))
    assert main(["fit", str(folder), "--synthesize", "lots", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--synthesize 'lots'" in err and "auto" in err


def skewed_blobs(minority=8):
    data = make_blobs(n_per_class=30)
    keep = np.concatenate([np.flatnonzero(data.labels < 2), np.flatnonzero(data.labels == 2)[:minority]])
    return data.subset(keep)


def small(tmp_path, name, **settings):
    base = dict(data="blobs", backbone="tf_efficientnet_lite0", image_size=32, epochs=1, batch_size=16,
                explain_examples=0, out=str(tmp_path / name))
    return FitConfig(**{**base, **settings})


def test_synthetic_samples_never_reach_validation_or_test(tmp_path):
    from headstart.data import make_splits

    data = skewed_blobs()
    config = small(tmp_path, "made", strategy="probe", synthesize="auto", balance="auto")
    made = fit(config, data=data).summary
    split = make_splits(data, seed=config.seed, val_fraction=config.val_fraction,
                        test_fraction=config.test_fraction, max_eval=config.max_eval)
    sizes = {"train": len(split.train), "val": len(split.val), "test": len(split.test)}
    assert made["sizes"] == sizes                              # val and test: real, and as many
    counts = made["train_imbalance"]["class_counts"]           # the real training counts
    largest = max(counts.values())
    assert made["synthetic"]["per_class"] == {c: largest - n for c, n in counts.items() if n < largest}
    assert made["synthetic"]["total"] == sum(made["synthetic"]["per_class"].values())
    assert made["probe_train_used"] == sizes["train"]
    assert made["synthetic"]["provenance_max_residual"] < 1e-4
    assert made["balance"]["requested"] == "auto" and made["balance"]["reason"]


def test_images_mix_batches_when_the_backbone_trains(tmp_path):
    summary = fit(small(tmp_path, "ft", strategy="finetune", synthesize="auto", epochs=2), data=skewed_blobs()).summary
    synthetic = summary["synthetic"]
    assert synthetic["method"] == "smote, then mixup/cutmix"
    assert synthetic["total"] > 0 and synthetic["mixup"]["batches"] > 0
    assert synthetic["mixup"]["total"] == sum(synthetic["mixup"]["per_class"].values())


def test_tfidf_balances_and_says_it_cannot_synthesize(tmp_path):
    texts = make_texts(n_per_class=20)
    keep = np.concatenate([np.flatnonzero(texts.labels < 2), np.flatnonzero(texts.labels == 2)[:6]])
    config = FitConfig(data="topics", strategy="tfidf", balance="weights", synthesize="5", explain_examples=0,
                       out=str(tmp_path / "t"))
    summary = fit(config, data=texts.subset(keep)).summary
    assert summary["balance"]["mode"] == "weights" and summary["balance"]["imbalance_ratio"] > 1.5
    assert summary["synthetic"]["total"] == 0 and "probe" in summary["synthetic"]["note"]


@pytest.mark.report
def test_fit_from_the_cli_with_balance_and_synthesis_auto(tmp_path, capsys):
    data = skewed_blobs(minority=6)
    folder = write_image_folder(tmp_path / "data", data)
    out = tmp_path / "run"
    assert main(["fit", str(folder), "--strategy", "probe", "--balance", "auto", "--synthesize", "auto",
                 "--image-size", "32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "balance: weights (--balance auto)" in printed and "training sample(s) by smote" in printed
    summary = read_json(out / "summary.json")
    assert summary["balance"]["mode"] == "weights" and summary["balance"]["requested"] == "auto"
    assert summary["synthetic"]["method"] == "smote" and summary["synthetic"]["total"] > 0
    example = summary["synthetic"]["examples"][0]
    assert all(str(folder) in name and name.endswith(".png") for name in example["from"])
    page = (out / "report.html").read_text()
    assert "Class balance and synthetic samples" in page and "Balancing: weights" in page
    assert example["from"][0] in page


def test_texts_synthesize_on_embeddings_and_say_the_backbone_stage_stays_real(tmp_path):
    from conftest import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "bert")
    texts = make_texts(n_per_class=20)
    data = texts.subset(np.concatenate([np.flatnonzero(texts.labels < 2), np.flatnonzero(texts.labels == 2)[:7]]))
    runs = {}
    for strategy in ("probe", "lp-ft"):
        config = FitConfig(data="topics", backbone=bert, strategy=strategy, synthesize="3", epochs=1, max_eval=30,
                           explain_examples=0, out=str(tmp_path / strategy))
        runs[strategy] = fit(config, data=data).summary["synthetic"]
    probe = runs["probe"]
    # K per class smaller than the largest: the 7-text class, and any the split left a text short
    assert probe["method"] == "smote" and probe["per_class"]["weather"] == 3
    assert set(probe["per_class"].values()) == {3} and probe["total"] == 3 * len(probe["per_class"])
    assert all(name in texts.texts for e in probe["examples"] for name in e["from"])  # the real texts, named
    assert runs["lp-ft"]["method"] == "smote" and "real examples only" in runs["lp-ft"]["note"]
