"""`resnet9`: a small ResNet-9-style CNN trained from scratch, sized to the input images.

After the DAWNBench ResNet-9 (conv-bn-relu layers, max-pool downsampling, residual blocks of
two conv-bn-relu, a global max-pool), with two adaptations so one net serves 28 px digits
and 224 px photos:
- the number of downsampling stages follows the image size, so the last feature map is
  about 4-7 px whatever the input (then adaptive pooling);
- the width follows it too: 16 base channels (128 features) for <= 32 px inputs, which train
  in seconds on a CPU and are plenty for MNIST/CIFAR-sized data; 32 (256 features) for
  larger inputs, where there is more detail to learn from but every conv costs more pixels,
  so 64 (the original) would make scratch training on a CPU impractically slow.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from headstart.errors import HeadstartError
from headstart.zoo.backbone import Backbone, Preprocessing, check_image_size
from headstart.zoo.registry import BackboneSpec
from headstart.zoo.weights import load_into, load_weights_file

DEFAULT_IMAGE_SIZE = 32
_FINAL_MAP = 4  # stop downsampling once the feature map would drop below ~4 px
# With more downsamplings than this (inputs >= 128 px), the stem takes one of them as a
# stride-2 conv: a full-resolution first stage would cost ~4x the compute of the whole rest.
_MAX_STAGES = 4


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """stem -> stages (conv-bn-relu, max-pool, [residual]) -> global max-pool -> (B, 8*width)."""

    def __init__(self, image_size: int = DEFAULT_IMAGE_SIZE, width: int | None = None, in_chans: int = 3):
        super().__init__()
        width = width or default_width(image_size)
        downsamples = max(1, math.floor(math.log2(image_size / _FINAL_MAP)))
        stem_stride = 2 if downsamples > _MAX_STAGES else 1
        n_stages = downsamples - (stem_stride == 2)

        self.stem = _conv_bn(in_chans, width, stride=stem_stride)
        self.stages = nn.ModuleList()
        c_in = width
        for i in range(n_stages):
            # Widths double to 8*width like the original (2w, 4w, 8w) and end at 8*width so
            # the feature size does not depend on the image size.
            c_out = 8 * width if i == n_stages - 1 else width * 2 ** min(i + 1, 3)
            stage = [_conv_bn(c_in, c_out), nn.MaxPool2d(2)]
            # Residual blocks where the original has them (first and last stage), plus every
            # other stage in between for the deeper nets that large inputs get.
            if i % 2 == 0 or i == n_stages - 1:
                stage.append(_Residual(c_out))
            self.stages.append(nn.Sequential(*stage))
            c_in = c_out
        # Max rather than average pooling, as in ResNet-9: it trains faster from scratch.
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.num_features = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.pool(x).flatten(1)


def default_width(image_size: int) -> int:
    # 16 at every size: at 64 px width 32 costs 875 MFLOPs an image, twice EfficientNet-Lite0
    # at 224 px, and trained only ~2 epochs in two minutes on 2 cores; width 16 costs 221.
    # A scratch baseline strangled by its own cost would flatter every transfer arm.
    return 16


def create_resnet9(
    *, pretrained: bool = False, weights: str | None = None, image_size: int | None = None
) -> Backbone:
    if pretrained and weights is None:
        raise HeadstartError(
            "'resnet9' has no pretrained weights: it is a small CNN meant for --strategy scratch",
            hint="use --strategy scratch (or --no-pretrained), or --weights FILE to load your own resnet9 weights",
        )
    check_image_size(image_size)
    size = image_size or DEFAULT_IMAGE_SIZE
    model = ResNet9(image_size=size)
    label = "random"
    if weights is not None:
        load_into(model, load_weights_file(weights), source=str(weights))
        label = f"file:{weights}"
    return Backbone(
        name="resnet9",
        model=model,
        feature_dim=model.num_features,
        preprocessing=Preprocessing(
            input_size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear", channels=3
        ),
        groups=[list(model.stem.parameters()), *(list(s.parameters()) for s in model.stages)],
        weights=label,
        architecture="resnet9",
    )


SPECS = [BackboneSpec(
    name="resnet9", modality="image", factory=create_resnet9,
    description="small ResNet-9-style CNN for training from scratch (--strategy scratch); "
                "depth and width follow the image size (default 32 px)",
    input_size=DEFAULT_IMAGE_SIZE,
    # Sized to the input: a run trains it at the data's own resolution (up to a cap) rather
    # than at an ImageNet size it was never meant for.
    sized_to_input=True,
)]
