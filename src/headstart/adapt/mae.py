"""`--method mae`: masked-image modelling on a CNN, in the SimMIM style (Xie et al. 2022).

Why not lightly's ViT MAE: MAE drops the masked patches from a transformer's token sequence and
runs the encoder on the visible ones only. Our image backbones (resnet9, EfficientNet-Lite0) are
CNNs: they have no patch tokens to drop, and their convolutions need the whole pixel grid. SimMIM
is the form of the same idea that fits any encoder: random patches of the input are blanked (set
to the normalised mean, 0), the encoder sees the whole masked image, a light decoder (a 1x1
convolution and a pixel shuffle, as in SimMIM) predicts the pixels from the encoder's last
feature map, and the L1 loss counts the masked patches only. lightly's token masks
(random_token_mask) assume a token sequence with a class token at index 0, so the mask here is
drawn on the feature map's own grid: one patch per feature-map cell.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from headstart.adapt.ssl import ImageSSLModel, ImageViews, SSLModel, register_ssl_method
from headstart.errors import HeadstartError

MASK_RATIO = 0.6  # SimMIM's ratio for its 32-px patches


def final_feature_map(backbone, x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w): the map the backbone's global pool reads (the last adaptive pooling layer),
    captured with a hook so that any CNN backbone serves, whatever its module names."""
    pools = [m for m in backbone.modules() if "AdaptiveAvgPool2d" in type(m).__name__
             or "AdaptiveMaxPool2d" in type(m).__name__ or type(m).__name__ == "SelectAdaptivePool2d"]
    if not pools:
        raise HeadstartError(f"{backbone.name} has no global pooling layer to read a feature map before",
                             hint="--method mae needs a CNN backbone (resnet9, an EfficientNet); use simclr or byol")
    captured = {}
    handle = pools[-1].register_forward_pre_hook(lambda module, args: captured.update(map=args[0]))
    try:
        backbone(x)
    finally:
        handle.remove()
    return captured["map"]


class MaskedImageModel(ImageSSLModel):
    def __init__(self, backbone, mask_ratio: float = MASK_RATIO):
        super().__init__(backbone)
        size = backbone.preprocessing.input_size
        was_training = backbone.training
        backbone.eval()
        with torch.no_grad():  # the map's shape at this input size (eval: BN needs no batch)
            probe = final_feature_map(backbone, torch.zeros(1, 3, size, size))
        backbone.train(was_training)
        channels, self.grid = probe.shape[1], probe.shape[-1]
        self.stride = max(1, -(-size // self.grid))  # pixels per feature-map cell (rounded up)
        self.decoder = nn.Sequential(nn.Conv2d(channels, 3 * self.stride ** 2, kernel_size=1),
                                     nn.PixelShuffle(self.stride))
        self.mask_ratio = mask_ratio

    def dataset(self, data) -> Dataset:
        import torchvision.transforms as T

        size = int(data.images.shape[1])
        # SimMIM's light augmentation: the task is hard enough without heavy views.
        return ImageViews(data.images, T.Compose([T.RandomResizedCrop(size, scale=(0.67, 1.0)),
                                                  T.RandomHorizontalFlip(), T.ToTensor()]))

    def random_mask(self, batch: int, size: int, device) -> torch.Tensor:
        """(B, 1, size, size) with 1 on the blanked patches: mask_ratio of the grid's cells."""
        cells = self.grid * self.grid
        hidden = max(1, round(self.mask_ratio * cells))
        order = torch.rand(batch, cells, device=device).argsort(dim=1)
        mask = torch.zeros(batch, cells, device=device)
        mask.scatter_(1, order[:, :hidden], 1.0)
        grid = mask.view(batch, 1, self.grid, self.grid)
        return F.interpolate(grid, size=(size, size), mode="nearest")

    def loss(self, batch) -> torch.Tensor:
        target = self.normalize(batch)
        mask = self.random_mask(len(target), target.shape[-1], target.device)
        features = final_feature_map(self.backbone, target * (1 - mask))
        predicted = self.decoder(features)
        if predicted.shape[-2:] != target.shape[-2:]:  # a size the grid does not divide
            predicted = F.interpolate(predicted, size=target.shape[-2:], mode="bilinear", align_corners=False)
        error = (predicted - target).abs() * mask
        return error.sum() / (mask.sum() * target.shape[1]).clamp(min=1.0)


@register_ssl_method("mae", modality="image", epochs=20, batch_size=128, lr=1e-3, weight_decay=0.05,
                     summary="masked-image modelling (SimMIM-style on a CNN): predict blanked patches' pixels")
def build_mae(backbone, settings: dict) -> SSLModel:
    return MaskedImageModel(backbone)
