"""The one classifier protocol, and the classifiers built from a backbone and a linear head.

Every model a run trains or loads answers the same five calls, whatever it eats:
    prepare(data) -> data        the data as the model eats it (resized, tokenised, as is)
    logits(data) -> Tensor       (N, classes) for prepared data; no gradient
    warm_up(data)                one untimed pass (kernel and allocator start-up is not training)
    describe() -> dict           what model.json records about it
    format                       the model.json "format" that saving and loading dispatch on
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .log import progress_bar
from .zoo.backbone import Backbone


def as_batch(chunk: np.ndarray) -> torch.Tensor:
    """A slice of a data's inputs as the model's input tensor: images (N, H, W, C) uint8 become
    (N, C, H, W); token ids (N, L) and feature vectors (N, D) pass as they are."""
    if chunk.ndim == 4:
        return torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 3, 1, 2)))
    return torch.from_numpy(np.ascontiguousarray(chunk))


def inference_batch_size() -> int:
    # On CPU, small batches keep activations in cache: 16 ran 2.5x faster per image than 64
    # (EfficientNet-Lite0, 224 px, 2 cores). GPUs want large batches.
    return 128 if torch.cuda.is_available() else 16


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: np.ndarray, batch_size: int | None = None,
                   description: str | None = None) -> torch.Tensor:
    """Outputs of `model` for a data's inputs: (N, H, W, C) uint8 images (the model normalises
    internally), (N, L) token ids padded with -1, or any (N, ...) array the model takes."""
    batch_size = batch_size or inference_batch_size()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    with progress_bar(description, total=len(inputs)) as advance:
        for start in range(0, len(inputs), batch_size):
            chunk = as_batch(inputs[start:start + batch_size])
            out.append(model(chunk.to(device)).float().cpu())
            advance(len(chunk))
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


class LinearHead(nn.Module):
    """A linear layer over pooled features, with optional dropout before it."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))


class Classifier(nn.Module):
    """backbone -> pooled features -> linear head. Takes whatever its backbone takes (token
    ids padded with -1 for text backbones, which mask and pool themselves)."""

    def __init__(self, backbone: Backbone, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.head = LinearHead(backbone.feature_dim, num_classes, dropout)

    @property
    def format(self) -> str:
        return f"headstart-{self.backbone.modality}-classifier/1"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def prepare(self, data):
        return self.backbone.prepare(data)

    def logits(self, data, *, batch_size: int | None = None, description: str | None = None) -> torch.Tensor:
        return predict_logits(self, data.inputs, batch_size, description)

    def warm_up(self, data) -> None:
        predict_logits(self, data.inputs[:2])

    def describe(self) -> dict:
        return self.backbone.describe()


class ImageClassifier(Classifier):
    """Takes uint8 (or 0..255 float) images (B, C, H, W) at the backbone's input size.

    Normalisation lives inside the model so that a saved model needs nothing but resized
    pixels: predict, export and the trainer all feed the same thing. Grey (C=1) inputs are
    repeated to the backbone's channel count.
    """

    def __init__(self, backbone: Backbone, num_classes: int, dropout: float = 0.0):
        super().__init__(backbone, num_classes, dropout)
        pre = backbone.preprocessing
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, -1, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(pre.std).view(1, -1, 1, 1) * 255.0, persistent=False)
        self.channels = pre.channels
        # channels_last runs convolutions 1.5-2.5x faster on CPU (measured: EfficientNet-Lite0
        # at 224 px, 2 cores: 67 vs 26 img/s inference) and is what GPUs prefer too.
        self.to(memory_format=torch.channels_last)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[1] == 1 and self.channels != 1:
            x = x.expand(-1, self.channels, -1, -1)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))
