"""The fault-injection matrix (issue 22): every file of a finished fit, its ONNX export, a zoo
entry, a comparison and a pre-training run, deleted, truncated or overwritten with random bytes
of the same size, then every command that reads it, in-process through headstart.cli.main. Each
must end with exit 2 and a message naming the file; none may raise. Each case runs twice: with
the run's manifest (the damage is caught by checksum before any parser) and without it (a run of
an earlier version, or a manifest deleted by hand: the parsers' own errors must be caught and
name the file). A fit's checkpoint, damaged under an interrupted run, then `fit --resume`: a
damaged one is refused by name, a missing one starts the run over and says so (train/checkpoint.py
says why).

The tiny runs are made once per module and copied per case. The counts (cases, tracebacks, runs
lost) are printed at the end of the module (`pytest -s`) for BENCHMARKS.md.
"""
from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.manifest import MANIFEST

from conftest import make_blobs, write_image_folder

SIZE = 16
ENTRY = "fault-matrix-entry"
PRETRAINED = "fault-matrix-pretrained"  # the pre-training run's zoo entry: the comparison's transfer arm uses it
DAMAGES = ("delete", "truncate", "random")
MODEL = ("model.json", "model.safetensors")

# Which files each command reads (the matrix crosses a file only with the commands that read it).
# A command's argv is built from the case's copy of the damaged folder (c.run: the fit, the
# comparison or the pre-training run), its data and its scratch folder.
COMMANDS = {
    "predict": lambda c: ["predict", c.run, c.image],
    "predict-onnx": lambda c: ["predict", c.run, c.image, "--engine", "onnxruntime"],
    "export": lambda c: ["export", c.run, "--out", c.scratch / "out.onnx"],
    "report": lambda c: ["report", c.run],
    "explain": lambda c: ["explain", c.run, c.image, "--out", c.scratch / "explained"],
    "select": lambda c: ["select", c.run, c.data, "--k", "2", "--out", c.scratch / "next.csv"],
    "prune": lambda c: ["prune", c.run, "--epochs", "1", "--out", c.scratch / "pruned"],
    "zoo-add": lambda c: ["zoo", "add", c.run, "--name", "fault-matrix-new"],
    "fit-from": lambda c: ["fit", c.data, "--from", c.run, "--out", c.scratch / "continued", "--explain-examples",
                           "0"],
    "fit-backbone": lambda c: ["fit", c.data, "--backbone", ENTRY, "--strategy", "probe", "--image-size", str(SIZE),
                               "--out", c.scratch / "on-entry", "--explain-examples", "0"],
    "serve": "onnxruntime",   # create_app over the run: serve's app creation, not through main
    "serve-torch": "torch",
}
RUN_FILES = {
    "config.yaml": ("export", "report", "prune", "fit-from", "zoo-add"),
    "splits.json": ("export", "prune", "fit-from"),
    "summary.json": ("predict", "export", "report", "explain", "select", "prune", "zoo-add", "fit-from"),
    "metrics.jsonl": ("report",),
    "model.json": ("predict", "export", "explain", "select", "prune", "zoo-add", "fit-from", "serve-torch"),
    "model.safetensors": ("predict", "export", "explain", "select", "prune", "zoo-add", "fit-from", "serve-torch"),
    "model.onnx": ("predict-onnx", "serve"),
    "model.onnx.json": ("serve",),
}
ENTRY_FILES = {"spec.json": ("fit-backbone",), "backbone.safetensors": ("fit-backbone",)}
# A comparison's report draws on comparison.json and, for each arm, its summary and its curve.
COMPARE_FILES = {name: ("report",) for name in (
    "comparison.json", "arms/probe/summary.json", "arms/probe/metrics.jsonl", "arms/scratch/summary.json",
    "arms/scratch/metrics.jsonl")}
PRETRAIN_FILES = {"config.yaml": ("report", "zoo-add"), "summary.json": ("report", "zoo-add"),
                  "metrics.jsonl": ("report",), "model.json": ("zoo-add",), "model.safetensors": ("zoo-add",)}
# The run's records: a refusal must leave them as they were (derived pages and plots may be redrawn).
RECORDS = ("config.yaml", "splits.json", "summary.json", "metrics.jsonl", *MODEL, "model.onnx", "model.onnx.json",
           "spec.json", "backbone.safetensors", "comparison.json", MANIFEST)
FILES = {"run": RUN_FILES, "entry": ENTRY_FILES, "compare": COMPARE_FILES, "pretrain": PRETRAIN_FILES}
CASES = [(a, f, d, c) for a, files in FILES.items() for f, cs in files.items() for d in DAMAGES for c in cs] + \
        [("run", MANIFEST, d, c) for d in DAMAGES[1:] for c in COMMANDS if c != "fit-backbone"] + \
        [("entry", MANIFEST, d, "fit-backbone") for d in DAMAGES[1:]] + \
        [("compare", m, d, "report") for m in (MANIFEST, f"arms/probe/{MANIFEST}") for d in DAMAGES[1:]] + \
        [("pretrain", MANIFEST, d, c) for d in DAMAGES[1:] for c in ("report", "zoo-add")]
CHECKPOINT = "checkpoint/scratch.pt"  # what `fit --resume` reads of the scratch fit above
TALLY: Counter = Counter()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A finished resnet9 fit at 16 px (from scratch, one epoch), exported to ONNX, and added to
    the local zoo of this module's own HEADSTART_HOME."""
    root = tmp_path_factory.mktemp("fault-matrix")
    data = write_image_folder(root / "data", make_blobs(n_per_class=8, size=SIZE))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HEADSTART_HOME", str(root / "home"))
        patch.setenv("HEADSTART_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        assert main(["-q", "fit", str(data), "--strategy", "scratch", "--backbone", "resnet9", "--image-size",
                     str(SIZE), "--epochs", "1", "--out", str(root / "run"), "--explain-examples", "0"]) == 0
        assert main(["-q", "export", str(root / "run")]) == 0
        assert main(["-q", "zoo", "add", str(root / "run"), "--name", ENTRY]) == 0
    yield root
    _print_counts()


@pytest.fixture(scope="module")
def made_more(made, tmp_path_factory):
    """A pre-training run (resnet9, one epoch) registered in the module's zoo, and a comparison
    of a probe on it against resnet9 from scratch (one epoch each), beside the fit above."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HEADSTART_HOME", str(made / "home"))
        patch.setenv("HEADSTART_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        assert main(["-q", "pretrain", str(made / "data"), "--backbone", "resnet9", "--image-size", str(SIZE),
                     "--batch-size", "16", "--epochs", "1", "--name", PRETRAINED, "--out",
                     str(made / "pretrain")]) == 0
        assert main(["-q", "compare", str(made / "data"), "--arms", "probe,scratch", "--backbone", PRETRAINED,
                     "--scratch-model", "resnet9", "--image-size", str(SIZE), "--epochs", "1", "--out",
                     str(made / "compare"), "--explain-examples", "0"]) == 0
    return made


class Case:
    def __init__(self, made: Path, tmp: Path, artifact: str = "run"):
        """A copy of the artifact's folder (the fit's when a zoo entry is damaged) and of the zoo."""
        self.run = tmp / "run"
        self.home = tmp / "home"
        shutil.copytree(made / ("run" if artifact == "entry" else artifact), self.run)
        shutil.copytree(made / "home", self.home)
        self.data = made / "data"
        self.image = next(iter(sorted(self.data.rglob("*.png"))))
        self.scratch = tmp / "scratch"
        self.scratch.mkdir()
        self.entry = self.home / "zoo" / ENTRY


def damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: size // 2])
    else:
        path.write_bytes(os.urandom(size))


def run_command(command: str, case: Case) -> tuple[int, str]:
    """(exit code, what it said); serve's app creation raises HeadstartError where main says exit 2."""
    if isinstance(COMMANDS[command], str):
        from headstart.deploy.serve import create_app

        try:
            create_app(case.run, engine=COMMANDS[command])
        except HeadstartError as e:
            return 2, f"{e}\n{e.hint or ''}"
        return 0, ""
    return main(["-q", *map(str, COMMANDS[command](case))]), ""


@pytest.mark.parametrize("verified", [True, False], ids=["manifest", "no-manifest"])
@pytest.mark.parametrize("artifact, file, how, command", CASES, ids=["-".join(c) for c in CASES])
def test_a_damaged_file_is_named_and_never_a_traceback(request, tmp_path, monkeypatch, capsys, artifact, file,
                                                       how, command, verified):
    if file.endswith(MANIFEST) and not verified:
        pytest.skip("the manifest's own damage needs the manifest")
    made = request.getfixturevalue("made_more" if artifact in ("compare", "pretrain") else "made")
    monkeypatch.setenv("HEADSTART_HOME", str(tmp_path / "home"))
    case = Case(made, tmp_path, artifact)
    folder = case.entry if artifact == "entry" else case.run
    if not verified:  # every manifest in it: a comparison's arms hold their own
        for manifest in folder.rglob(MANIFEST):
            manifest.unlink()
    damage(folder / file, how)
    before = _digests(folder)
    TALLY["cases"] += 1
    try:
        code, said = run_command(command, case)
    except BaseException as e:  # noqa: BLE001 - counted, then failed: the matrix's figure is tracebacks seen
        TALLY["tracebacks"] += 1
        raise AssertionError(f"{command} raised {type(e).__name__} on a {how} {file}: {e}") from e
    said += capsys.readouterr().err
    after = _digests(folder)
    if changed := sorted(f for f in before if after.get(f) != before[f]):  # a refusal leaves the run as it was
        TALLY["runs lost"] += 1
        raise AssertionError(f"{command} on a {how} {file} changed the run's other files: {changed}")
    assert code == 2, f"{command} on a {how} {file} exited {code}: {said[-800:]}"
    assert file in said, f"{command} on a {how} {file} did not name it: {said[-800:]}"
    TALLY["named"] += 1


def test_the_undamaged_copies_work_so_every_refusal_above_is_the_damage(made, tmp_path, monkeypatch, capsys):
    """The control: on an intact copy the commands the matrix uses succeed (the cheap ones)."""
    monkeypatch.setenv("HEADSTART_HOME", str(tmp_path / "home"))
    case = Case(made, tmp_path)
    for command in ("predict", "predict-onnx", "report", "zoo-add", "serve", "serve-torch"):
        assert run_command(command, case)[0] == 0, (command, capsys.readouterr().err)


def test_the_undamaged_comparison_and_pretraining_copies_work(made_more, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HEADSTART_HOME", str(tmp_path / "home"))
    for artifact, command in (("compare", "report"), ("pretrain", "report"), ("pretrain", "zoo-add")):
        case = Case(made_more, tmp_path / f"{artifact}-{command}", artifact)
        assert run_command(command, case)[0] == 0, (artifact, command, capsys.readouterr().err)


def test_a_run_without_a_manifest_reads_as_before_silently(made, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HEADSTART_HOME", str(tmp_path / "home"))
    case = Case(made, tmp_path)
    (case.run / MANIFEST).unlink()
    (case.entry / MANIFEST).unlink()
    assert run_command("predict", case)[0] == 0
    assert run_command("predict-onnx", case)[0] == 0
    assert "manifest" not in capsys.readouterr().err


@pytest.mark.parametrize("verified", [True, False], ids=["manifest", "no-manifest"])
@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_checkpoint_is_refused_by_name_and_a_missing_one_starts_over_saying_so(
        made, tmp_path, monkeypatch, capsys, how, verified):
    """An interrupted fit (its last checkpoint written, its closing records not), then `fit
    --resume`. A damaged checkpoint is refused (a good copy may exist: starting over would throw
    its training away); a missing one starts the run over from its first epoch and says so,
    since deleting it is how a run is started over (train/checkpoint.py)."""
    from headstart import manifest

    monkeypatch.setenv("HEADSTART_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HEADSTART_QUIET", "0")  # not -q: a restart is said on the progress stream
    case = Case(made, tmp_path)
    for name in ("summary.json", *MODEL):  # as a kill after the last checkpoint leaves it
        (case.run / name).unlink()
    manifest.record(case.run, "summary.json", *MODEL)
    if not verified:
        (case.run / MANIFEST).unlink()
    damage(case.run / CHECKPOINT, how)
    before = _digests(case.run)
    TALLY["cases"] += 1
    try:
        code = main(["fit", str(case.data), "--resume", "--out", str(case.run)])
    except BaseException as e:  # noqa: BLE001 - counted, then failed
        TALLY["tracebacks"] += 1
        raise AssertionError(f"fit --resume raised {type(e).__name__} on a {how} checkpoint: {e}") from e
    said = capsys.readouterr().err
    assert CHECKPOINT in said, f"fit --resume on a {how} checkpoint did not name it: {said[-800:]}"
    if how == "delete":
        assert code == 0 and "starts scratch over from its first epoch" in said, said[-800:]
        assert (case.run / "summary.json").is_file() and (case.run / CHECKPOINT).is_file()  # the run completed
        assert ("the run had written it" in said) == verified  # the manifest tells a lost one from none yet
        TALLY["restarted, saying so"] += 1
        return
    # config.yaml records each --resume (resume: true, and the copy's --out): it and the manifest aside,
    # a refused resume leaves the run as it was, to be resumed once the checkpoint is restored
    if changed := sorted(f for f in before if _digests(case.run).get(f) != before[f]
                         and f not in ("config.yaml", MANIFEST)):
        TALLY["runs lost"] += 1
        raise AssertionError(f"fit --resume on a {how} checkpoint changed the run's files: {changed}")
    assert code == 2, f"fit --resume on a {how} checkpoint exited {code}: {said[-800:]}"
    TALLY["named"] += 1


def _digests(folder: Path) -> dict[str, str]:
    """The run's records (at any depth: a comparison's arms, a checkpoint) by their path in it."""
    from headstart.manifest import sha256

    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and (p.name in RECORDS or p.suffix == ".pt")}


def _print_counts() -> None:
    manifests = {(a, f) for a, f, _, _ in CASES if f.endswith(MANIFEST)}
    files = sum(len(f) for f in FILES.values()) + len(manifests) + 1  # and the checkpoint
    print(f"\nfault matrix: {files} files (a fit, its export, a zoo entry, a comparison, a pre-training run, a "
          f"checkpoint) x {len(DAMAGES)} damages x the commands that read each, with and without the manifest: "
          f"{TALLY['cases']} cases, {TALLY['named']} refused naming the file, {TALLY['restarted, saying so']} "
          f"restarted saying so (a deleted checkpoint), {TALLY['tracebacks']} tracebacks, {TALLY['runs lost']} "
          "runs lost")
