"""Every command declared once: the parser, the API's signatures and the choices come from the
configs' declarations; the top-level parser starts without torch or any registry. Fast: no fit."""
import inspect
import subprocess
import sys
from dataclasses import fields
from importlib import import_module

import pytest
import yaml

import headstart.api as api
import headstart.cli  # noqa: F401  (registers the commands)
from headstart.cli_options import COMMANDS, parse, registry_choices
from headstart.config import FitConfig, PruneConfig, build, offered, python_name
from headstart.config.settings import IMAGE_SIZE_AUTO_HELP
from headstart.errors import HeadstartError

REGISTRY_BACKED = sorted({(name, f.name) for name, cmd in COMMANDS.items() for f, _ in offered(cmd.config)
                          if isinstance(f.metadata.get("choices"), str)})


def _setting(command: str, name: str):
    return next(f for f, _ in offered(COMMANDS[command].config) if f.name == name)


def _registry_entries(f) -> list[str]:
    """The registry's own names, read here without the derivation's helper."""
    module, _, attribute = f.metadata["choices"].partition(":")
    held = getattr(import_module(f"headstart.{module}"), attribute)
    if inspect.isfunction(held):
        held = held()
    names = held.choices() if hasattr(held, "choices") else list(held)
    return [n if isinstance(n, str) else n.name for n in names]


def _action(command: str, dest: str):
    """The argparse action of `dest` in the command's derived parser (argparse's own records)."""
    import argparse

    captured = {}
    original = argparse.ArgumentParser.parse_args

    def spy(self, args=None, namespace=None):
        captured["parser"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = spy
    try:
        with pytest.raises(SystemExit):
            parse([*command.split(), "--help"])
    finally:
        argparse.ArgumentParser.parse_args = original
    sub = next(a for a in captured["parser"]._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command.split()[0]]
    return next(a for a in parser._actions if a.dest == dest)


@pytest.mark.parametrize("command, name", REGISTRY_BACKED, ids=[f"{c}:{n}" for c, n in REGISTRY_BACKED])
def test_a_registry_backed_setting_offers_exactly_the_registrys_names(command, name):
    f = _setting(command, name)
    entries = _registry_entries(f)
    assert entries, f"{f.metadata['choices']} holds nothing"
    expected = set(entries) | set(f.metadata["extra_choices"])
    assert set(registry_choices(f)) == expected
    action = _action(command, name)
    if action.choices is not None:  # argparse checks it (not for comma-lists or names the registry checks)
        assert set(action.choices) == expected
    else:
        assert f.metadata["parse"] is not None or f.metadata["checked_when_used"]


def test_every_command_lists_each_setting_with_its_help(capsys):
    for name, cmd in COMMANDS.items():
        with pytest.raises(SystemExit):
            parse([*name.split(), "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for f, _ in offered(cmd.config):
            flag = f.metadata["flag"] or ("--" + f.name.replace("_", "-") if not f.metadata["positional"] else f.name)
            assert flag in text, (name, flag)
            words = " ".join(f.metadata["help"].split("{")[0].split())[:40]
            assert words in text, (name, f.name)


def test_the_flags_given_win_over_the_config_file_and_data_may_come_from_it(tmp_path):
    best = tmp_path / "best.yaml"
    best.write_text(yaml.safe_dump({"data": "digits", "epochs": 3, "train_per_class": 5, "budget_seconds": 60.0,
                                    "out": "elsewhere", "resume": True}))
    config = parse(["fit", "--config", str(best), "--epochs", "2", "--budget", "2m"]).config()
    assert (config.data, config.epochs, config.train_per_class, config.budget_seconds) == ("digits", 2, 5, 120.0)
    assert config.out is None and config.resume is False  # the file's run is not this one
    assert parse(["fit", "other", "--config", str(best)]).config().data == "other"
    with pytest.raises(HeadstartError, match="fit needs DATA"):
        parse(["fit", "--epochs", "2"]).config()


def test_only_the_options_typed_are_given():
    invocation = parse(["-q", "fit", "digits", "--no-pretrained"])
    assert invocation.quiet and invocation.command.name == "fit"
    assert invocation.given == {"data": "digits", "pretrained": False}
    assert parse(["zoo", "add", "RUN", "--name", "mine"]).given == {"run": "RUN", "name": "mine"}
    assert parse(["zoo"]).command.name == "zoo"


def test_a_duration_is_read_by_its_declared_parse_from_the_command_line_and_from_python():
    assert parse(["prune", "RUN", "--budget", "2m"]).config().budget_seconds == 120.0
    echo = api._declared(PruneConfig, command="prune")(lambda config: config)
    assert echo("RUN", budget="1.5h").budget_seconds == 5400.0 and echo("RUN", budget=30).budget_seconds == 30.0
    with pytest.raises(HeadstartError, match="duration"):
        echo("RUN", budget="soon")


@pytest.mark.parametrize("name", sorted(n for n in COMMANDS if n.replace(" ", "_").replace("-", "_") in dir(api)),
                         ids=str)
def test_the_api_function_takes_the_commands_settings_as_keywords(name):
    fn = getattr(api, name.replace(" ", "_").replace("-", "_"))
    cmd = COMMANDS[name]
    params = inspect.signature(fn).parameters
    declared = {python_name(f) for f, _ in offered(cmd.config)} | ({"config"} if cmd.defaults_file else set())
    assert set(params) == declared
    for f, _ in offered(cmd.config):
        default = params[python_name(f)].default
        assert default is inspect.Parameter.empty or default == f.default or (cmd.defaults_file and default is None)


def test_the_estimator_reads_budget_and_synthesize_as_fit_does():
    config = api.HeadstartClassifier(budget="5m", synthesize=50)._config("data")
    assert config.budget_seconds == 300.0 and config.synthesize == "50"
    assert config == build(FitConfig, {"data": "data", "budget_seconds": "5m", "synthesize": "50"}, command="fit")


# ------------------------------------------------------------------------------ fast start

def _modules_after(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code + "; import sys; print(' '.join(sys.modules))"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_help_imports_neither_torch_nor_any_registry():
    loaded = _modules_after("import contextlib, io\nfrom headstart.cli import main\n"
                            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): "
                            "main(['--help'])")
    heavy = {"torch", "timm", "transformers", "sklearn", "headstart.strategies", "headstart.modalities",
             "headstart.pipeline"}
    assert not heavy & loaded, heavy & loaded


def test_predict_with_onnxruntime_parses_without_torch():
    loaded = _modules_after("from headstart.cli_options import parse\nimport headstart.cli\n"
                            "c = parse(['predict', '--engine', 'onnxruntime', 'RUN', 'x.png']).config()\n"
                            "assert c.engine == 'onnxruntime' and c.inputs == ['x.png']")
    assert "torch" not in loaded and "headstart.strategies" not in loaded


def test_one_declaration_per_shared_setting():
    """compare's and tune's fit settings are FitConfig's own fields; simulate-al's image size and
    DATA are the shared declarations (the same words, written once)."""
    for name in ("compare", "tune", "rank"):
        shared = {f.name: f for f in fields(FitConfig)}
        assert all(f is shared[f.name] for f, holder in offered(COMMANDS[name].config) if holder == "fit")
    for name in ("image_size", "data"):
        # the same words everywhere; fit's (and so compare's) --image-size also takes auto, and says so
        helps = {_setting(c, name).metadata["help"].removesuffix(IMAGE_SIZE_AUTO_HELP)
                 for c in ("fit", "simulate-al", "compare", "tune")}
        assert len(helps) == 1
