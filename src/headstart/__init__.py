"""headstart: train an accurate classifier in a fraction of the time, by reusing a
pre-trained model, and prove the time saved.

    from headstart import HeadstartClassifier, fit, predict

The public names load on first use (PEP 562), so `import headstart` (the CLI's first step,
and every `headstart.<submodule>` import) stays cheap and imports neither torch nor sklearn.
"""
from importlib import import_module

__version__ = "0.1.0"

# public name -> the submodule that defines it
_API = ("HeadstartClassifier", "UnknownLabelError", "compare", "explain", "export", "fit", "predict", "pretrain",
        "prune", "rank", "select", "simulate_al", "track", "tune", "zoo_add", "zoo_remove")
_LAZY = dict.fromkeys(_API, "api")

__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
