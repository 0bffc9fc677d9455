"""embedding-bag: the cheap from-scratch text model, a fastText-style bag of embeddings."""
from __future__ import annotations

import torch
from torch import nn

from headstart.errors import HeadstartError
from headstart.zoo.registry import BackboneSpec
from headstart.zoo.text_backbones import TextBackbone, TextPreprocessing
from headstart.zoo.text_hub import ALIASES, resolve_model_folder


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


def create_embedding_bag(*, pretrained: bool = False, weights: str | None = None, tokenizer_from: str | None = None,
                         max_length: int | None = None, tokenizer=None, dim: int = EMBEDDING_BAG_DIM,
                         pooling: str | None = None) -> TextBackbone:
    """An embedding-bag classifier's body over the tokenizer of `tokenizer_from` (the
    transfer backbone's, so both arms read the same tokens; the vocabulary is not weights).
    It always mean-pools: `pooling` is accepted only so text options pass through alike."""
    from transformers import AutoTokenizer

    if pretrained and weights is None:
        raise HeadstartError("'embedding-bag' has no pretrained weights: it is the text model for --strategy scratch",
                             hint="use --strategy scratch, or a pretrained text backbone such as all-MiniLM-L6-v2")

    source = tokenizer_from or "all-MiniLM-L6-v2"
    if tokenizer is None:
        folder, _ = resolve_model_folder(source)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    model = _EmbeddingBagEncoder(len(tokenizer), dim)
    pre = TextPreprocessing(max_length=max_length or EMBEDDING_BAG_MAX_LENGTH, pooling="mean",
                            tokenizer=str(ALIASES.get(source, source)))
    backbone = TextBackbone("embedding-bag", model, dim, pre, [list(model.parameters())], "random",
                            tokenizer, architecture="embedding-bag",
                            model_config={"headstart_model": "embedding-bag", "vocab_size": len(tokenizer),
                                          "dim": dim})
    if weights is not None:
        from headstart.zoo.weights import load_into, load_weights_file
        load_into(model, load_weights_file(weights), source=str(weights))
        backbone.weights = f"file:{weights}"
    return backbone


SPECS = [BackboneSpec(name="embedding-bag", modality="text", factory=create_embedding_bag,
                      description="fastText-style bag of token embeddings: the text scratch baseline",
                      scratch_lr=EMBEDDING_BAG_LR)]
