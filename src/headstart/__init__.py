"""headstart: train an accurate classifier in a fraction of the time, by reusing a
pre-trained model, and prove the time saved.

    from headstart import HeadstartClassifier, fit, predict

The public names load on first use (PEP 562), so `import headstart` (the CLI's first step,
and every `headstart.<submodule>` import) stays cheap and imports neither torch nor sklearn.
"""
import sys
import types
from importlib import import_module

__version__ = "0.1.0"

# public name -> the submodule that defines it
_LAZY = {"HeadstartClassifier": "api", "fit": "api", "predict": "api", "UnknownLabelError": "api"}

__all__ = ["HeadstartClassifier", "UnknownLabelError", "__version__", "fit", "predict"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Importing the submodule headstart.predict makes Python set the package attribute
    `predict` to that module, which would shadow the public predict() function whenever the
    CLI or anything else had imported it first. The submodule stays reachable as always with
    `from headstart.predict import ...` (via sys.modules); only the attribute is kept."""

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
