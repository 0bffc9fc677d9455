"""Fine-tuning that cannot collapse (issue 23): pretrained batch-norm statistics stay frozen
while a pretrained network fine-tunes, and a fine-tune never delivers less than the head it
started from."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from headstart.records import Recorder
from headstart.train.batches import ArrayTokenDataset
from headstart.train.loop import TrainPlan, train_mode, train_model


class _Val:
    def __init__(self, x, y):
        self.inputs, self.labels = x, y

    def __len__(self):
        return len(self.labels)


def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _data(n=24, shift=0.0):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = (rng.normal(size=(n, 4)) + y[:, None] + shift).astype(np.float32)
    return x, y


def _train(model, plan, x, y, **kwargs):
    groups = [{"params": list(model.parameters()), "lr": 0.05}]
    return train_model(model, groups, ArrayTokenDataset(x, y), _Val(x, y), plan, Recorder(None, "t"), **kwargs)


def _norm_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


@pytest.mark.parametrize("frozen", [True, False])
def test_frozen_norm_statistics_keep_pretrained_running_statistics_but_train_their_scale(frozen):
    # the collapse: data far from what the statistics were gathered on (a shifted domain), fed at
    # batch 2, drags the running statistics; frozen, they stay and the layer's affine still learns
    model, (x, y) = _bn_net(), _data(shift=5.0)
    before, scale_before = _norm_buffers(model), model[1].weight.detach().clone()
    plan = TrainPlan(epochs=2, batch_size=2, patience=100, seed=0, schedule="constant",
                     frozen_norm_statistics=frozen, label_smoothing=0.0)
    _train(model, plan, x, y)
    after = _norm_buffers(model)
    unchanged = all(torch.equal(before[k], after[k]) for k in before)
    assert unchanged is frozen, {k: (before[k][:3], after[k][:3]) for k in before}
    assert not torch.equal(model[1].weight.detach(), scale_before)  # BN's scale trained either way


def test_in_train_mode_at_batch_2_a_frozen_model_predicts_as_in_eval_mode():
    model, (x, _) = _bn_net(), _data(shift=5.0)
    batch = torch.from_numpy(x[:2])
    model.eval()
    with torch.no_grad():
        expected = model(batch)
        train_mode(model, TrainPlan(epochs=1, frozen_norm_statistics=True))
        frozen = model(batch)
        train_mode(model, TrainPlan(epochs=1))
        batch_stats = model(batch)
    assert model.training
    torch.testing.assert_close(frozen, expected)
    assert not torch.allclose(batch_stats, expected, atol=1e-3)  # what frozen statistics prevent


def test_a_state_whose_validation_loss_is_above_the_start_is_never_kept():
    model, (x, y) = _bn_net(), _data()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    # every epoch beats the starting accuracy (0), none beats the starting loss (near 0)
    plan = TrainPlan(epochs=2, batch_size=8, patience=100, seed=0, schedule="constant", max_val_loss=1e-6)
    result = _train(model, plan, x, y, initial_val=0.0)
    assert result.best_epoch == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, start[k]), k
    # the same run with no loss ceiling keeps a trained state
    model = _bn_net()
    plan = TrainPlan(epochs=2, batch_size=8, patience=100, seed=0, schedule="constant")
    assert _train(model, plan, x, y, initial_val=0.0).best_epoch > 0


def test_lpft_with_a_destructive_rate_delivers_its_probe_head_and_says_so(tmp_path):
    from conftest import make_blobs
    from headstart.config import FitConfig
    from headstart.heads import predict_logits, score
    from headstart.pipeline import fit, split

    data = make_blobs(n_per_class=16)
    # a rate of 5 wrecks every weight in one step: fine-tuning can only hurt
    config = FitConfig(data="blobs", strategy="lp-ft", image_size=32, epochs=1, batch_size=4, lr=5.0,
                       extract_engine="torch", explain_examples=0, out=str(tmp_path / "run"), refit="no")
    result = fit(config, data=data)
    summary = result.summary
    assert summary["best_epoch"] == 0
    assert summary["kept_weights"].startswith("head (epoch 0)")
    assert summary["best_val_accuracy"] >= summary["probe_val_accuracy"]
    # the delivered model is the probe head on the pretrained backbone: it scores the probe's figure
    val = result.classifier.prepare(split(config, data).val)
    accuracy, _ = score(predict_logits(result.classifier, val.inputs), val.labels)
    assert accuracy == pytest.approx(summary["probe_val_accuracy"], abs=1e-6)
    assert summary["delivered"].startswith("trained on train")
    # by default (--refit auto) that head is then refit on train+val, as the probe's is: the same
    # C, more rows (elpv, 100/class: 0.779 on test train-only, 0.845 refit)
    refit = fit(replace(config, refit="auto", out=str(tmp_path / "refit")), data=data)
    assert refit.summary["kept_weights"].startswith("head (epoch 0)")
    assert refit.summary["delivered"].startswith("refit on train+val")
    assert refit.summary["probe_C"] == summary["probe_C"]
    assert not torch.equal(refit.classifier.head.fc.weight, result.classifier.head.fc.weight)


def test_a_mid_epoch_evaluation_that_is_the_best_is_the_state_delivered():
    """With several evaluations an epoch, the best of all of them is kept, not only of the epoch
    ends: what a run (and auto's race, which reads every evaluation) reports as its best
    validation accuracy is what its delivered model scores."""
    model, (x, y) = _bn_net(), _data(n=48)
    last = model[-1]

    def ruin_after_the_first_evaluation(step: int, total: int) -> None:
        if step > 4:  # past the first mid-epoch evaluation (step 4): every later state predicts one class
            with torch.no_grad():
                last.weight.zero_()
                last.bias.zero_()

    plan = TrainPlan(epochs=1, batch_size=4, patience=100, seed=0, schedule="constant", evals_per_epoch=3,
                     after_step=ruin_after_the_first_evaluation)
    recorder = Recorder(None, "t")
    groups = [{"params": list(model.parameters()), "lr": 0.05}]
    result = train_model(model, groups, ArrayTokenDataset(x, y), _Val(x, y), plan, recorder)
    evaluations = [r["accuracy"] for r in recorder.rows if r["split"] == "val"]
    assert len(evaluations) == 3 and evaluations[0] > evaluations[-1] == pytest.approx(1 / 3)
    assert result.best_val_accuracy == max(evaluations)
    model.eval()
    with torch.no_grad():
        delivered = float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert delivered == pytest.approx(result.best_val_accuracy)


def test_a_tie_in_validation_accuracy_goes_to_the_state_with_the_lower_loss():
    """Where validation accuracy saturates (digits: one error in 270 from mid-schedule on), the
    first state to reach it was kept over later ones that the rate's anneal made surer; now a tie
    goes to the lower validation loss, and it does not count as progress for patience."""
    model = _bn_net()
    rng = np.random.default_rng(0)
    y = np.arange(24) % 3
    x = (rng.normal(size=(24, 4)) + 10 * y[:, None]).astype(np.float32)  # separable: accuracy saturates
    plan = TrainPlan(epochs=8, batch_size=8, patience=100, seed=0, schedule="constant")
    recorder = Recorder(None, "t")
    result = train_model(model, [{"params": list(model.parameters()), "lr": 0.05}], ArrayTokenDataset(x, y),
                         _Val(x, y), plan, recorder)
    val = [(r["epoch"], r["accuracy"], r["loss"]) for r in recorder.rows if r["split"] == "val"]
    top = [v for v in val if v[1] == max(a for _, a, _ in val)]
    assert len(top) >= 2 and min(top, key=lambda v: v[2]) is not top[0]  # the case: a later tie, surer
    assert result.best_epoch == min(top, key=lambda v: v[2])[0]
    assert result.best_val_accuracy == top[0][1]
