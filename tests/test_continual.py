"""`headstart fit NEW --from RUN`: continual learning without forgetting (adapt/continual.py).

Six learnable blob classes at 32 px, a frozen EfficientNet-Lite0: task 1 = classes 0-1 (a
plain probe run, shared by the module), later tasks add two classes each."""
import shutil

import numpy as np
import pytest
import torch

from headstart.adapt.continual_methods import distillation_objective
from headstart.adapt.continual import grown_classifier
from headstart.adapt.memory import herding
from headstart.api import fit
from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.files import read_json
from headstart.heads import LinearHead

from conftest import make_blobs, make_texts, write_image_folder

NAMES = ("c0", "c1", "c2", "c3", "c4", "c5")
FAST = dict(backbone="tf_efficientnet_lite0", image_size=32, batch_size=16, epochs=1, explain_examples=0,
            extract_engine="torch")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The six-class folder and a finished probe run on c0, c1."""
    root = tmp_path_factory.mktemp("continual")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADSTART_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        folder = write_image_folder(root / "blobs", make_blobs(n_per_class=24, classes=NAMES))
        fit(str(folder), classes="c0,c1", strategy="probe", out=str(root / "task1"), **FAST)
    return {"root": root, "folder": str(folder), "task1": str(root / "task1")}


def _continue(world, name, classes="c2,c3", data=None, from_run=None, **settings):
    out = world["root"] / name
    if out.exists():
        shutil.rmtree(out)
    return fit(data or world["folder"], classes=classes, from_run=from_run or world["task1"], out=str(out),
               **{**FAST, "memory_per_class": 6, **settings})


@pytest.fixture(scope="module")
def head_run(world):
    """Task 2 (c2, c3) by head refit, shared by the tests that read it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADSTART_CACHE", str(world["root"].parent / "cache"))
        return _continue(world, "head", continual="head")


def test_head_refit_keeps_the_old_classes_while_naive_fine_tuning_forgets(world, head_run):
    head = head_run.summary["continual"]
    naive = _continue(world, "naive", continual="naive").summary["continual"]
    assert head_run.summary["weights"] == f"run:{world['task1']}"  # not the rebuild's "random"
    assert [r["class"] for r in head["old_classes"]] == ["c0", "c1"]
    assert [r["class"] for r in head["new_classes"]] == ["c2", "c3"]
    assert head["old_accuracy_before"] >= 0.9
    # the head refit trains on the old classes' stored features: they stay; naive never sees them
    assert head["old_accuracy_after"] >= head["old_accuracy_before"] - 0.1
    assert naive["old_accuracy_after"] < head["old_accuracy_after"] - 0.3
    assert naive["average_forgetting"] > head["average_forgetting"] + 0.3
    assert head["new_accuracy"] >= 0.75


def test_lwf_distillation_is_zero_for_the_old_model_and_positive_otherwise():
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = LinearHead(6, 3)

        def forward(self, x):
            return self.head(x)

    torch.manual_seed(0)
    old, x, y = Tiny(), torch.randn(8, 6), torch.zeros(8, dtype=torch.long)
    model = grown_classifier(old, 5)
    objective = distillation_objective(old, 3)
    logits, same = objective(model, x, y)
    assert logits.shape == (8, 5) and float(same.detach()) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.head.fc.weight[:3] += 0.5 * torch.randn(3, 6)
    assert float(objective(model, x, y)[1].detach()) > 1e-3
    assert not any(p.requires_grad for p in old.parameters())  # the old model is frozen


def test_herding_exemplars_approximate_the_class_mean_better_than_random():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 16)) * np.linspace(0.2, 3.0, 16) + 1.0
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)

    def gap(index):
        return np.linalg.norm(unit[index].mean(0) - unit.mean(0))

    chosen = herding(features, 10)
    assert len(set(chosen.tolist())) == 10
    random_gaps = [gap(rng.choice(400, 10, replace=False)) for _ in range(100)]
    assert gap(chosen) < 0.5 * np.median(random_gaps)


def test_a_chain_of_two_continuations_carries_its_memory(world, head_run):
    second = head_run
    assert (second.run_dir / "memory" / "features.safetensors").exists()
    third = _continue(world, "chain3", classes="c4,c5", from_run=str(second.run_dir), continual="rehearsal")
    part = third.summary["continual"]
    assert third.summary["classes"] == list(NAMES)
    assert [r["class"] for r in part["old_classes"]] == ["c0", "c1", "c2", "c3"]
    assert part["tasks"] == 3 and len(read_json(third.run_dir / "continual.json")["tasks"]) == 3
    # task 1's test items were reloaded through the lineage, and the old memory rehearsed
    assert third.summary["sizes"]["test"] > len(read_json(third.run_dir / "splits.json")["test"])
    assert third.summary["rehearsal_items"] == 4 * 6
    assert part["memory"]["exemplars_per_class"] == {c: 6 for c in NAMES}
    assert part["memory"]["features"] == 0  # the backbone trained: stored features would be stale


def test_one_new_class_is_enough_to_continue(world):
    # make_splits alone refuses one-class data; a continuation adds to the old run's classes
    one = _continue(world, "one-new", classes="c4", continual="head")
    assert one.summary["classes"] == ["c0", "c1", "c4"]
    assert [r["class"] for r in one.summary["continual"]["new_classes"]] == ["c4"]


@pytest.mark.report
def test_cli_continues_a_run_and_reports_forgetting_per_class(world, capsys):
    out = world["root"] / "cli"
    assert main(["fit", world["folder"], "--classes", "c2,c3", "--from", world["task1"], "--out", str(out),
                 "--image-size", "32", "--explain-examples", "0", "--memory-per-class", "5"]) == 0
    assert "continual: head: +2 class(es)" in capsys.readouterr().out  # auto: head for a probe run
    summary = read_json(out / "summary.json")
    rows = {r["class"]: r for r in summary["continual"]["old_classes"]}
    assert set(rows) == {"c0", "c1"} and all({"before", "after", "change"} <= set(r) for r in rows.values())
    page = (out / "report.html").read_text()
    assert "Continual learning" in page and "before (old run)" in page and "continual_forgetting.png" in page
    assert (out / "continual_forgetting.png").stat().st_size > 1000


def _unfinished(world):
    copy = world["root"] / "unfinished"
    shutil.copytree(world["task1"], copy, dirs_exist_ok=True)
    (copy / "summary.json").unlink()
    return str(copy)


def _texts(world):
    path = world["root"] / "texts.csv"
    data = make_texts()
    path.write_text("text,label\n" + "".join(f"{t},{data.classes[k]}\n" for t, k in zip(data.texts, data.labels)))
    return str(path)


@pytest.mark.parametrize("case, says", [
    ("modality", "is text data but"),
    ("backbone", "keeps its run's backbone"),
    ("unfinished", "unfinished"),
])
def test_refusals_are_clear_and_leave_no_run_directory(world, case, says):
    out = world["root"] / f"refused-{case}"
    settings = {"modality": dict(data=_texts(world), classes=None),
                "backbone": dict(backbone="tf_efficientnet_lite1"),
                "unfinished": dict(from_run=_unfinished(world) if case == "unfinished" else None)}[case]
    config = {**FAST, "classes": "c2,c3", "from_run": world["task1"], **{k: v for k, v in settings.items() if v}}
    config.setdefault("data", world["folder"])
    if case == "modality":
        config["classes"] = None
    with pytest.raises(HeadstartError) as refused:
        fit(config.pop("data"), out=str(out), **config)
    assert says in str(refused.value) + refused.value.hint
    assert not out.exists()


def _renamed_folder(world, name, images_of: str, seed: int):
    """A folder whose class 'c0' holds the images of `images_of`, plus a genuinely new c5."""
    blobs = make_blobs(n_per_class=24, classes=NAMES, seed=seed)
    keep = np.isin(blobs.labels, [NAMES.index(images_of), 5])
    part = blobs.subset(np.flatnonzero(keep))
    part.labels = np.where(part.labels == NAMES.index(images_of), 0, part.labels)
    return str(write_image_folder(world["root"] / name, part))


def test_a_same_named_class_of_other_content_is_warned_about_and_more_data_is_not(world):
    other = _continue(world, "collide", classes=None, data=_renamed_folder(world, "collide-data", "c4", 3),
                      continual="head").summary["continual"]
    assert [f["class"] for f in other["collisions"]] == ["c0"]
    assert "collides in name but not in content" in other["collisions"][0]["message"]
    more = _continue(world, "more", classes=None, data=_renamed_folder(world, "more-data", "c0", 4),
                     continual="head").summary["continual"]
    assert more["collisions"] == [] and more["more_data_for"] == ["c0"] and more["added_classes"] == ["c5"]
