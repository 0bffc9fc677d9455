"""The Python API: the scikit-learn-style estimator and the functions mirroring the CLI."""
import numpy as np

import headstart.api as hs
from headstart.api import HeadstartClassifier

from conftest import make_blobs, write_image_folder


def test_estimator_fits_arrays_and_keeps_the_callers_label_values(tmp_path):
    data = make_blobs(n_per_class=30)
    labels = np.array([10, 20, 30])[data.labels]  # int labels that are not 0..K-1
    clf = HeadstartClassifier(strategy="probe", image_size=32, out=str(tmp_path / "run"))
    assert not hasattr(clf, "classes_")  # __init__ stores settings, nothing learned
    assert clf.fit(data.images, labels) is clf
    assert list(clf.classes_) == [10, 20, 30]
    assert (tmp_path / "run" / "model.safetensors").exists() and clf.history_
    proba = clf.predict_proba(data.images[:6])
    assert proba.shape == (6, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert set(clf.predict(data.images)) <= {10, 20, 30}
    assert clf.score(data.images, labels) > 0.9


def test_functions_mirror_the_cli(tmp_path):
    folder = write_image_folder(tmp_path / "data", make_blobs(n_per_class=20))
    result = hs.fit(str(folder), strategy="probe", image_size=32, out=str(tmp_path / "run"))
    assert result.summary["test_accuracy"] > 0.9
    answers = hs.predict(result.run_dir, [str(folder / "green")])
    assert len(answers) == 20 and sum(a.label == "green" for a in answers) >= 18
