"""The Python API: the package's exports, the scikit-learn estimator, and the functions
mirroring the CLI. Fits are small (32 px probe on packaged weights, or TF-IDF on texts) so the
file runs in well under a minute on 2 cores."""
import dataclasses
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import get_tags
from sklearn.utils import estimator_checks as checks

import headstart.api as hs
from headstart import HeadstartClassifier
from headstart.config import FitConfig
from headstart.errors import HeadstartError

from conftest import make_blobs, write_image_folder

# make_blobs images are 32 px: no resizing. Eager extraction: the default (onnxruntime) first exports
# the backbone with torch.export, slower than extracting these few images eagerly in every fit here
FAST = {"strategy": "probe", "image_size": 32, "extract_engine": "torch"}
TOPICS = {"sport": "goal match team striker league cup coach score",
          "money": "bank shares market profit inflation rates stocks economy"}
FILLER = "the a of and to in is it was on for with as by at this that from".split()


def make_texts(n_per_class: int = 20, seed: int = 0) -> tuple[list[str], list[str]]:
    """Two topics: a few topic words among filler words, learnable by TF-IDF."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for name, words in TOPICS.items():
        for _ in range(n_per_class):
            chosen = list(rng.choice(words.split(), 3)) + list(rng.choice(FILLER, int(rng.integers(3, 9))))
            rng.shuffle(chosen)
            texts.append(" ".join(chosen))
            labels.append(name)
    return texts, labels


def to_uint8(images):
    """A preprocessing step for a Pipeline: float images in 0..1 to the uint8 pixels headstart takes."""
    return (np.asarray(images) * 255).round().astype(np.uint8)


# ------------------------------------------------------------------------------ exports

def test_the_package_exports_its_api_lazily():
    # nor does the command line's own module (every command's start, `--help` included)
    code = ("import sys, headstart, headstart.cli; print(headstart.__version__); "
            "assert not {'torch', 'sklearn'} & set(sys.modules), 'import headstart loaded torch or sklearn'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    import headstart
    from headstart.prediction import predict_inputs  # noqa: F401  (importing a submodule must not shadow the function)
    from headstart import HeadstartClassifier as C, fit, predict
    assert (C, fit, predict) == (hs.HeadstartClassifier, hs.fit, hs.predict)
    assert headstart.predict is hs.predict  # importing the submodule did not shadow the function
    assert {"HeadstartClassifier", "fit", "predict", "__version__"} <= set(headstart.__all__) <= set(dir(headstart))
    with pytest.raises(AttributeError):
        headstart.no_such_name


def test_the_estimator_parameters_are_fitconfig_fields_with_its_defaults():
    params = HeadstartClassifier().get_params()
    defaults = {f.name: f.default for f in dataclasses.fields(FitConfig)}
    assert params.pop("verbose") is False  # the estimator's own: silent unless asked, as sklearn's are
    assert params.pop("budget") is None and defaults.pop("budget_seconds") is None  # budget: a duration
    # data is X; every fit starts over (no resume); scratch_model serves compare's baselines;
    # track_parent is how compare nests its arms' tracked runs
    # add_labels: X already holds every labelled item; exclude: X holds only what is to be kept
    # adapt, from_run and their settings are fit's keep-learning forms over run directories
    # (api.run_fit); classes: y already says which classes there are
    not_parameters = {"data", "resume", "scratch_model", "track_parent", "add_labels", "exclude", "adapt", "adapt_method",
                      "from_run", "continual", "memory_per_class", "classes"}
    assert params == {k: v for k, v in defaults.items() if k not in not_parameters}


def test_the_tags_say_images_and_texts_not_feature_tables():
    tags = get_tags(HeadstartClassifier())
    assert is_classifier(HeadstartClassifier()) and tags.target_tags.required
    assert not tags.input_tags.two_d_array
    assert tags.input_tags.three_d_array and tags.input_tags.string


# scikit-learn's checks that apply to an estimator whose inputs are images or texts: they test
# the API contract (parameters, cloning, repr, tags, unfitted behaviour) without fitting. Every
# other check fits on 2-D float arrays (make_blobs, iris, uniform noise), which are neither
# images nor texts and which fit rightly rejects; with two_d_array=False, check_estimator and
# parametrize_with_checks yield none of them. The fitted ones that carry over (parameters not
# overwritten by fit, fit returns self, pickling, subset invariance, clone of a fitted
# estimator, refit) are tested below on images.
APPLICABLE_CHECKS = [
    checks.check_estimator_cloneable,
    checks.check_estimator_tags_renamed,
    checks.check_valid_tag_types,
    checks.check_estimator_repr,
    checks.check_no_attributes_set_in_init,
    checks.check_mixin_order,
    checks.check_parameters_default_constructible,
    checks.check_get_params_invariance,
    checks.check_set_params,
    checks.check_do_not_raise_errors_in_init_or_set_params,
    checks.check_estimators_unfitted,
]


@pytest.mark.parametrize("check", APPLICABLE_CHECKS, ids=lambda c: c.__name__)
def test_the_applicable_sklearn_checks_pass(check):
    check("HeadstartClassifier", HeadstartClassifier(**FAST))


def test_clone_gives_an_unfitted_copy_with_the_same_parameters():
    clf = HeadstartClassifier(backbone="tf_efficientnet_lite0", epochs=3, budget="5m", **FAST)
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == clf.get_params()
    assert copy.set_params(lr=0.1) is copy and copy.lr == 0.1 and clf.lr is None
    with pytest.raises(NotFittedError):
        copy.predict(make_blobs(n_per_class=1).images)


# ------------------------------------------------------------------------------ fitting

def test_estimator_fits_arrays_and_keeps_the_callers_label_values(tmp_path):
    data = make_blobs(n_per_class=20)
    labels = np.array([10, 20, 30])[data.labels]  # int labels that are not 0..K-1
    clf = HeadstartClassifier(out=str(tmp_path / "run"), **FAST)
    params = clf.get_params()
    assert not hasattr(clf, "classes_")  # __init__ stores settings, nothing learned
    assert clf.fit(data.images, labels) is clf
    assert clf.get_params() == params  # fit changes no parameter (sklearn's overwrite checks)
    assert all(k.endswith("_") for k in set(vars(clf)) - set(params))  # learned state ends in _
    assert list(clf.classes_) == [10, 20, 30]
    assert clf.run_dir_ == tmp_path / "run" and (tmp_path / "run" / "model.safetensors").exists()
    assert clf.history_ and clf.summary_["test_accuracy"] > 0.9
    proba = clf.predict_proba(data.images[:6])
    assert proba.shape == (6, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert np.allclose(proba, clf.predict_proba(data.images)[:6], atol=1e-5)  # a subset: same answers
    assert set(clf.predict(data.images)) <= {10, 20, 30}
    assert clf.score(data.images, labels) > 0.9
    assert clf.score(list(data.images), labels) > 0.9  # a list of images works too
    assert np.allclose(pickle.loads(pickle.dumps(clf)).predict_proba(data.images[:6]), proba, atol=1e-5)
    assert not hasattr(clone(clf), "model_")  # a clone of a fitted estimator is unfitted

    # a label the model never saw is an error naming it, never silently some class
    with pytest.raises(hs.UnknownLabelError, match="40") as raised:
        clf.score(data.images[:3], [10, 20, 40])
    assert isinstance(raised.value, HeadstartError) and isinstance(raised.value, ValueError)
    with pytest.raises(ValueError, match="'10'"):  # the string '10' is not the label 10
        clf.score(data.images[:2], ["10", "20"])
    with pytest.raises(HeadstartError, match="fitted on image data"):
        clf.predict(["a text"])
    with pytest.raises(HeadstartError, match="uint8"):
        clf.predict(data.images.astype(np.float32))

    # refitting the same out would overwrite a finished run: refused, and the old state is gone
    with pytest.raises(HeadstartError, match="already holds a run"):
        clf.fit(data.images, labels)
    assert not hasattr(clf, "model_")


def test_a_second_fit_starts_over(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # out=None: no run folder, here or anywhere
    data = make_blobs(n_per_class=20)
    clf = HeadstartClassifier(**FAST).fit(data.images, data.labels)
    first_run, first_model = clf.run_dir_, clf.model_
    assert list(clf.classes_) == [0, 1, 2]

    two = data.labels < 2  # different data and classes: nothing of the first fit may remain
    names = np.array(["red", "green"])[data.labels[two]]
    clf.fit(data.images[two], names)
    assert list(clf.classes_) == ["green", "red"]
    assert clf.model_ is not first_model and first_run is None and clf.run_dir_ is None
    assert list(tmp_path.iterdir()) == []  # out=None writes no run folder
    assert clf.predict_proba(data.images[:4]).shape == (4, 2)
    assert clf.score(data.images[two], names) > 0.9
    with pytest.raises(ValueError, match="blue"):
        clf.score(data.images[:2], ["red", "blue"])


def test_cross_val_score_on_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_blobs(n_per_class=20)
    scores = cross_val_score(HeadstartClassifier(**FAST), data.images, data.labels, cv=2, error_score="raise")
    assert scores.shape == (2,) and scores.min() > 0.8  # chance is 1/3
    assert not (tmp_path / "runs").exists()  # out=None: no run directory per fold


def test_cross_val_score_and_grid_search_on_texts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    texts, labels = make_texts()
    clf = HeadstartClassifier(strategy="tfidf", max_eval=30)
    scores = cross_val_score(clf, texts, labels, cv=2, error_score="raise")
    assert scores.min() > 0.8  # chance is 1/2

    search = GridSearchCV(clf, {"train_per_class": [3, 6]}, cv=2, error_score="raise").fit(texts, labels)
    assert list(search.cv_results_["param_train_per_class"]) == [3, 6]
    assert search.best_params_["train_per_class"] in (3, 6) and search.best_score_ > 0.8
    assert list(search.predict(["goal cup match the striker", "bank shares of stocks"])) == ["sport", "money"]
    assert search.best_estimator_.get_params()["strategy"] == "tfidf"


def test_grid_search_over_a_pipeline_with_a_function_transformer_on_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_blobs(n_per_class=20)
    floats = data.images / 255.0  # fit rejects floats: only the transformer's uint8 reach it
    pipe = make_pipeline(FunctionTransformer(to_uint8), HeadstartClassifier(**FAST))
    grid = {"headstartclassifier__train_per_class": [3, 6]}  # nested parameters reach the estimator
    search = GridSearchCV(pipe, grid, cv=2, error_score="raise").fit(floats, data.labels)
    assert list(search.cv_results_["param_headstartclassifier__train_per_class"]) == [3, 6]
    assert search.best_score_ > 0.8  # chance is 1/3
    best = search.best_estimator_
    assert best[-1].train_per_class == search.best_params_["headstartclassifier__train_per_class"]
    assert list(best.classes_) == [0, 1, 2] and search.score(floats, data.labels) > 0.9


def test_functions_mirror_the_cli(tmp_path):
    folder = write_image_folder(tmp_path / "data", make_blobs(n_per_class=20))
    result = hs.fit(str(folder), out=str(tmp_path / "run"), **FAST)
    assert result.summary["test_accuracy"] > 0.9
    answers = hs.predict(result.run_dir, [str(folder / "green")])
    assert len(answers) == 20 and sum(a.label == "green" for a in answers) >= 18
