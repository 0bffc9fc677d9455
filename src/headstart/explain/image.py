"""Image explanations: Grad-CAM (pytorch-grad-cam), Integrated Gradients and occlusion (Captum).

Every method takes the classifier as trained, uint8 pixels in (normalisation happens inside
the model), and returns one (H, W) heat-map in [0, 1] per request at the model's input size.
Grad-CAM needs a convolutional feature map: on an attention-only model (a ViT) it refuses
and `auto` falls through to Integrated Gradients, which needs nothing but gradients.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from headstart.explain.registry import register_method, weights_frozen
from headstart.heads import as_batch

IG_STEPS = 32
GRADCAM_BATCH = 16
OCCLUSION_WINDOWS = 8  # the sliding window is 1/8 of the image side, moved by half a window


def _pixels(data, index: int) -> torch.Tensor:
    """One prepared image as the model's (1, C, H, W) float input, 0..255."""
    return as_batch(data.inputs[index:index + 1]).float()


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# -- where Grad-CAM looks ----------------------------------------------------------------------

def feature_maps(model) -> dict[str, tuple[str, nn.Module, tuple[int, ...]] | None]:
    """The backbone's last feature map (what pooling reads) and the last one with more than
    one cell (what Grad-CAM can localise with: at 32 px an EfficientNet's last map is 1x1),
    each as (name, module, output shape). Both are None when linear layers run after the
    last map (a ViT: after its patch embedding, the tokens carry the features). Found by
    running one input through the model with hooks, so any CNN works without a table of
    layer names."""
    cached = getattr(model, "_headstart_feature_maps", None)
    if cached is not None:
        return cached
    size = int(model.describe()["preprocessing"]["input_size"])
    order: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    hooks = [module.register_forward_hook(
        lambda m, inputs, output, name=name: order.append((name.removeprefix("model."), m, tuple(output.shape)))
        if isinstance(output, torch.Tensor) else None)
        for name, module in model.backbone.named_modules() if name]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, getattr(model, "channels", 3), size, size, device=_device(model)))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    maps = [i for i, (_, _, shape) in enumerate(order) if len(shape) == 4]
    found = {"last": None, "localisable": None}
    # linear layers running after the last map mean the tokens, not the map, carry the features
    if maps and not any(isinstance(m, nn.Linear) for _, m, _ in order[maps[-1] + 1:]):
        # the pooling's own (B, C, 1, 1) output is not a feature map
        maps = [i for i in maps if "pool" not in order[i][0].split(".")[-1]]
        found["last"] = order[maps[-1]] if maps else None
        spatial = [i for i in maps if order[i][2][2] * order[i][2][3] > 1]
        found["localisable"] = order[spatial[-1]] if spatial else None
    model._headstart_feature_maps = found
    return found


def feature_source(model) -> str:
    """Which layer's features the head reads, in words, for the report."""
    last = feature_maps(model)["last"]
    arch = model.describe().get("architecture", "the backbone")
    if last is None:
        return f"the last block's token features of {arch}, pooled to {model.backbone.feature_dim} features"
    name, _, shape = last
    return (f"the last feature map of {arch} ({name}: {shape[1]} channels at {shape[2]}x{shape[3]}), "
            f"pooled to {model.backbone.feature_dim} features")


def _gradcam_applies(model) -> str | None:
    if not hasattr(model, "backbone"):
        return "it has no backbone network"
    maps = feature_maps(model)
    if maps["last"] is None:
        return "the model has no convolutional feature map after its patch embedding (an attention-only ViT)"
    if maps["localisable"] is None:
        return "every feature map of this model is 1x1 at this input size: there is nothing to localise"
    return None


def _gradient_applies(model) -> str | None:
    return None if isinstance(model, nn.Module) else "it is not a neural network"


# -- the methods ---------------------------------------------------------------------------------

@register_method("image", "gradcam", applies=_gradcam_applies,
                 summary="Grad-CAM: the last feature map, weighted by the class score's gradient")
def gradcam(model, data, requests: list[tuple[int, int]], **_options) -> list[np.ndarray]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    _, layer, _ = feature_maps(model)["localisable"]
    maps = []
    # Grad-CAM needs the gradient at one layer only: with the weights frozen and the gradient
    # starting at that layer's output, backward runs through the head alone (4x faster than
    # a backward to the input and into every weight: EfficientNet-Lite0, 224 px, 2 cores).
    start_gradient_here = layer.register_forward_hook(
        lambda module, inputs, output: output.requires_grad_(True) if not output.requires_grad else None)
    try:
        with torch.enable_grad(), weights_frozen(model), GradCAM(model=model, target_layers=[layer]) as cam:
            for start in range(0, len(requests), GRADCAM_BATCH):  # one forward and backward per batch
                chunk = requests[start:start + GRADCAM_BATCH]
                x = torch.cat([_pixels(data, index) for index, _ in chunk]).to(_device(model))
                batch = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls) for _, cls in chunk])
                maps.extend(np.asarray(m, np.float32) for m in batch)
    finally:
        start_gradient_here.remove()
    return maps


@register_method("image", "ig", applies=_gradient_applies,
                 summary="Integrated Gradients: pixel gradients integrated from a mean-colour image")
def integrated_gradients(model, data, requests: list[tuple[int, int]], *, steps: int = IG_STEPS,
                         **_options) -> list[np.ndarray]:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)
    with torch.enable_grad(), weights_frozen(model):
        return _captum_maps(model, data, requests, lambda x, cls, baseline: ig.attribute(
            x, baselines=baseline, target=cls, n_steps=steps, internal_batch_size=steps))


@register_method("image", "occlusion", applies=_gradient_applies,
                 summary="occlusion: how much the class score drops when a patch is greyed out")
def occlusion(model, data, requests: list[tuple[int, int]], **_options) -> list[np.ndarray]:
    from captum.attr import Occlusion

    occluder = Occlusion(model)

    def attribute(x, cls, baseline):
        window = max(2, x.shape[-1] // OCCLUSION_WINDOWS)
        stride = max(1, window // 2)
        return occluder.attribute(x, target=cls, sliding_window_shapes=(x.shape[1], window, window),
                                  strides=(x.shape[1], stride, stride), baselines=baseline,
                                  perturbations_per_eval=16)

    with torch.no_grad():
        return _captum_maps(model, data, requests, attribute)


def _captum_maps(model, data, requests, attribute) -> list[np.ndarray]:
    """attribute(x, class, baseline) for each request, as [0, 1] maps; the baseline is the
    mean-colour image."""
    model.eval()
    baseline = _mean_colour(model)
    maps = []
    for index, cls in requests:
        x = _pixels(data, index).to(_device(model))
        # grey data (ELPV, digits) enters with one channel; the model repeats it inside
        grey_or_colour = baseline if baseline.shape[1] == x.shape[1] else baseline.mean(1, keepdim=True)
        maps.append(_positive_map(attribute(x, cls, grey_or_colour.expand_as(x))))
    return maps


def _mean_colour(model) -> torch.Tensor:
    """The dataset-mean image (zero after normalisation): 'no evidence' for IG and occlusion."""
    mean = getattr(model, "mean", None)
    if mean is None:
        return torch.zeros(1, 1, 1, 1, device=_device(model))
    return mean.to(_device(model))[:, : getattr(model, "channels", 3)]


def _positive_map(attribution: torch.Tensor) -> np.ndarray:
    """Summed over colour channels, evidence for the class only, scaled to [0, 1] by its
    99th percentile so a few extreme pixels do not wash out the rest."""
    heat = attribution[0].detach().float().sum(0).clamp(min=0).cpu().numpy()
    top = float(np.percentile(heat, 99)) if heat.size else 0.0
    return np.clip(heat / top, 0, 1).astype(np.float32) if top > 0 else np.zeros_like(heat, np.float32)


# -- drawing ---------------------------------------------------------------------------------------

MIN_SIDE = 192  # small inputs (32 px digits) are enlarged so the overlay can be read


def overlay_png(image: np.ndarray, heat: np.ndarray, path) -> None:
    """The image and the heat-map over it, side by side, as a PNG (written atomically)."""
    from matplotlib import colormaps
    from PIL import Image

    from headstart.files import atomic_path

    rgb = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
    side = rgb.shape[0]
    scale = max(1, int(np.ceil(MIN_SIDE / side)))
    coloured = (colormaps["jet"](heat)[..., :3] * 255).astype(np.float32)
    alpha = 0.25 + 0.5 * heat[..., None]  # weak evidence leaves the picture visible
    blended = (rgb.astype(np.float32) * (1 - alpha) + coloured * alpha).clip(0, 255).astype(np.uint8)
    gap = np.full((side, max(2, side // 16), 3), 255, np.uint8)
    strip = np.concatenate([rgb, gap, blended], axis=1)
    picture = Image.fromarray(strip).resize((strip.shape[1] * scale, side * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def heat_mass_in(heat: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of the map's total mass inside box = (top, left, bottom, right)."""
    top, left, bottom, right = box
    total = float(heat.sum())
    return float(heat[top:bottom, left:right].sum()) / total if total > 0 else 0.0
