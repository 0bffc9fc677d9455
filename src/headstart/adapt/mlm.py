"""`--method mlm`: continued masked-language-model pre-training of a text encoder on the user's
own texts (domain-adaptive pre-training, Gururangan et al. 2020).

The masking is transformers' own DataCollatorForLanguageModeling (15 % of the tokens; of those
80 % [MASK], 10 % a random token, 10 % kept). The MLM head is the encoder family's own
(AutoModelForMaskedLM from the encoder's config: BertForMaskedLM for MiniLM), with the loaded
encoder put in as its base model, so the encoder's weights are trained in place; the head's
transform is new (sentence-transformers checkpoints ship no MLM head) and its decoder shares the
word embeddings, as in BERT. Only the encoder is kept.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from headstart.adapt.ssl import SSLModel, register_ssl_method
from headstart.errors import HeadstartError

MASK_SHARE = 0.15


class _TokenItems(Dataset):
    """{"input_ids": [...]} per text, from ids padded with -1 (the collator pads again)."""

    def __init__(self, tokens: np.ndarray):
        self.rows = [row[row >= 0].tolist() for row in tokens]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.rows[i]}


class MaskedLanguageModel(SSLModel):
    def __init__(self, backbone, seed: int = 0):
        from transformers import AutoConfig, AutoModelForMaskedLM, DataCollatorForLanguageModeling

        super().__init__(backbone)
        tokenizer = backbone.tokenizer
        if tokenizer.mask_token_id is None or not backbone.model_config:
            raise HeadstartError(f"{backbone.name} has no [MASK] token or no transformer config: it cannot be "
                                 "pre-trained by masked-language modelling", hint="pass a BERT-style encoder")
        config = dict(backbone.model_config)
        head = AutoModelForMaskedLM.from_config(AutoConfig.for_model(config.pop("model_type"), **config))
        prefix = head.base_model_prefix
        # The loaded encoder becomes the head's base model: one set of weights, trained in place.
        setattr(head, prefix, backbone.model)
        head.tie_weights()  # the decoder reads the encoder's word embeddings again
        self.mlm = head
        self.collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MASK_SHARE, seed=seed)

    def dataset(self, data) -> Dataset:
        return _TokenItems(data.tokens)

    def loss(self, batch) -> torch.Tensor:
        return self.mlm(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                        labels=batch["labels"]).loss


@register_ssl_method("mlm", modality="text", epochs=3, batch_size=32, lr=5e-4, continued_lr=5e-5,
                     weight_decay=0.01,
                     summary="masked-language modelling, continued on your texts (transformers' collator)")
def build_mlm(backbone, settings: dict) -> SSLModel:
    return MaskedLanguageModel(backbone, seed=int(settings.get("seed", 0)))
