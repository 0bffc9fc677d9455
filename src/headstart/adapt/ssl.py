"""Self-supervised methods for `headstart pretrain`: a registry, and SimCLR and BYOL on images.

A method is registered with `@register_ssl_method(name, modality=..., ...)` on a function
build(backbone, settings) -> SSLModel: the trainable wrapper around the backbone (its heads,
its loss, how it turns the pool into batches). The training loop (train/loop.py, without
labels) knows nothing else of a method: a batch goes to the model's forward, which returns its
loss; pretrain.py imports every method's module, so all are registered there. Losses, heads and view transforms are lightly's (a well-kept library
whose recipes follow the papers); masked-image modelling is mae.py, masked-language modelling
mlm.py.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from headstart.registry import Registry


@dataclass(frozen=True)
class SSLMethod:
    name: str
    modality: str              # the data it learns from ("image", "text")
    build: Callable            # build(backbone, settings: dict) -> SSLModel
    epochs: int                # its own length when neither --epochs nor --budget says
    batch_size: int
    lr: float                  # peak AdamW rate of the new heads (and of a randomly initialised backbone)
    # the backbone's rate when it starts from pretrained weights (domain-adaptive pre-training):
    # lower, so that the new heads' first, random gradients do not wash out what it knows
    continued_lr: float
    weight_decay: float
    summary: str               # one line for messages and the report


_METHODS: Registry[SSLMethod] = Registry("pre-training method")


def register_ssl_method(name: str, *, modality: str, epochs: int, batch_size: int, lr: float,
                        continued_lr: float | None = None, weight_decay: float = 1e-4, summary: str = ""):
    def decorate(build: Callable) -> Callable:
        _METHODS.add(name, SSLMethod(name, modality, build, epochs, batch_size, lr, continued_lr or lr / 10,
                                     weight_decay, summary or name))
        return build
    return decorate


def get_ssl_method(name: str) -> SSLMethod:
    return _METHODS.get(name)


def ssl_methods(modality: str | None = None) -> list[str]:
    return [m.name for m in _METHODS.values() if modality in (None, m.modality)]


class SSLModel(nn.Module):
    """The trainable system around a backbone. `backbone` is what the zoo keeps; everything
    else (heads, decoders, a momentum target) is thrown away after pre-training."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def dataset(self, data) -> Dataset:
        """The pool as items the default (or `collate`) batches."""
        raise NotImplementedError

    collate = None  # a DataLoader collate_fn, or None for torch's default

    def loss(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch) -> torch.Tensor:
        """The loss of a batch, as the training loop calls a model: through forward, so that
        DDP's gradient sync and Accelerate's autocast see the step."""
        return self.loss(batch)

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after each optimizer step (BYOL moves its momentum target here)."""

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        mine = {id(p) for p in self.backbone.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in mine]


# ----------------------------------------------------------------------------- image helpers

class ImageViews(Dataset):
    """Serves transform(PIL image) for each uint8 (H, W, C) image of the pool. Grey images are
    made RGB (the backbones read 3 channels, as ImageClassifier repeats them)."""

    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        image = self.images[i]
        return self.transform(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert("RGB"))


class ImageSSLModel(SSLModel):
    """Normalises [0, 1] view tensors as the backbone's preprocessing says, channels-last (the
    faster layout on CPU, as in ImageClassifier)."""

    def __init__(self, backbone):
        super().__init__(backbone)
        pre = backbone.preprocessing
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre.std).view(1, -1, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))


def view_settings(size: int, grey: bool) -> dict:
    """lightly's view-transform arguments for our data. Defaults are tuned for ImageNet at 224 px;
    for small inputs we follow lightly's own CIFAR-10 benchmark (colour jitter at half strength, no
    blur: at 32-64 px a 2-px blur erases the details that tell images apart), and grey data gets
    no saturation, hue or grey-scale draws (they do nothing to a grey image but cost time)."""
    small = size <= 64
    settings = {"input_size": size, "normalize": None, "cj_strength": 0.5 if small else 1.0}
    if small:
        settings["gaussian_blur"] = 0.0
    if grey:
        settings.update(cj_sat=0.0, cj_hue=0.0, random_gray_scale=0.0)
    return settings


def _views_of(data) -> tuple[int, bool]:
    return int(data.images.shape[1]), data.images.shape[-1] == 1


# ----------------------------------------------------------------------------- SimCLR

class SimCLR(ImageSSLModel):
    """Chen et al. 2020: two augmented views of each image; the NT-Xent loss pulls their
    projections together and pushes the other images of the batch away."""

    def __init__(self, backbone, temperature: float = 0.5):
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        super().__init__(backbone)
        dim = backbone.feature_dim
        self.projection = SimCLRProjectionHead(dim, dim, 128)
        self.criterion = NTXentLoss(temperature=temperature)

    def dataset(self, data) -> Dataset:
        from lightly.transforms import SimCLRTransform

        size, grey = _views_of(data)
        return ImageViews(data.images, SimCLRTransform(**view_settings(size, grey)))

    def loss(self, batch) -> torch.Tensor:
        first, second = batch
        both = self.projection(self.embed(torch.cat([first, second])))
        return self.criterion(*both.chunk(2))


@register_ssl_method("simclr", modality="image", epochs=20, batch_size=128, lr=1e-3,
                     summary="SimCLR: contrastive (NT-Xent) on two augmented views")
def build_simclr(backbone, settings: dict) -> SSLModel:
    return SimCLR(backbone)


# ----------------------------------------------------------------------------- BYOL

class BYOL(ImageSSLModel):
    """Grill et al. 2020: the online network predicts the momentum target's projection of the
    other view; no negatives, so it is less hungry for large batches than SimCLR (a CPU's
    batches are small). The target is an exponential moving average of the online network."""

    def __init__(self, backbone, hidden: int = 1024, out: int = 256):
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__(backbone)
        self.projection = BYOLProjectionHead(backbone.feature_dim, hidden, out)
        self.prediction = BYOLPredictionHead(out, hidden, out)
        self.target_backbone = copy.deepcopy(backbone)
        self.target_projection = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.target_backbone)
        deactivate_requires_grad(self.target_projection)
        self.criterion = NegativeCosineSimilarity()

    def dataset(self, data) -> Dataset:
        from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform

        size, grey = _views_of(data)
        settings = view_settings(size, grey)
        return ImageViews(data.images, BYOLTransform(BYOLView1Transform(**settings), BYOLView2Transform(**settings)))

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.projection.parameters(), *self.prediction.parameters()]

    def loss(self, batch) -> torch.Tensor:
        first, second = batch
        online = self.prediction(self.projection(self.embed(torch.cat([first, second]))))
        with torch.no_grad():
            target = self.target_projection(self.target_backbone(self.normalize(torch.cat([first, second]))))
        p0, p1 = online.chunk(2)
        z0, z1 = target.detach().chunk(2)
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))

    def after_step(self, step: int, total_steps: int) -> None:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        momentum = cosine_schedule(step, max(1, total_steps), 0.99, 1.0)  # the paper's 0.99 -> 1
        update_momentum(self.backbone, self.target_backbone, m=momentum)
        update_momentum(self.projection, self.target_projection, m=momentum)


@register_ssl_method("byol", modality="image", epochs=20, batch_size=128, lr=1e-3,
                     summary="BYOL: predicts a momentum target's view of the other augmentation")
def build_byol(backbone, settings: dict) -> SSLModel:
    return BYOL(backbone)
