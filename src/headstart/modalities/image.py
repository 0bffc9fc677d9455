"""Images: class folders or CSVs of files, decoded once into uint8 arrays; CNNs and ViTs from timm."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from headstart.data import ImageData, decode_image
from headstart.data.shards import is_shard_spec, load_image_shards, shard_role
from headstart.data.sources import load_image_csv, load_image_folder, load_image_pool
from headstart.data.table_sources import is_table, load_image_table, table_role
from headstart.errors import HeadstartError
from headstart.inputs import expand_image_paths
from headstart.heads import ImageClassifier
from headstart.model_io import load_module_weights, register_model_format, save_module_weights
from headstart.modalities.base import Inputs, LoadOptions, Modality, register_modality
from headstart.train.augment import build_augmentation
from headstart.train.batches import ArrayImageDataset

DEFAULT_DECODE_SIZE = 224
# The zoo's small CNN trains at a modest resolution: it has no pretrained input size. Measured
# (bench/scratch_recipe.py, BENCHMARKS 21.1): on elpv's 300 px cells ResNet-9 from scratch reached
# a higher plateau at 32 px than at 64 px (0.790 against 0.781 validation, medians of 3) at a
# quarter of the cost per epoch, 98 % of the best plateau in 20 s against 102 s.
SMALL_INPUT_CAP = 32
# Raw pixels for the diagnosis are compared at this side at most: enough to tell classes
# apart where pixels can, small enough for k-NN on thousands of images in a blink.
RAW_SIDE = 32


@register_modality("image")
class ImageModality(Modality):
    priority = 0  # the fallback: a folder or CSV that no other modality claims holds images
    default_backbone = "tf_efficientnet_lite0"
    default_arms = ("probe", "lp-ft", "finetune", "scratch")
    default_scratch_model = "resnet9"
    default_pretrain_backbone = "resnet9"  # from random weights: what self-supervision alone makes of the data
    augments = True
    chooses_input_size = True  # --image-size auto measures its sizes (choose/image_size.py)
    words = {"input_unit": "px", "example": "image", "noun": "images", "skipped": "unreadable image file(s)"}
    formats = ("a folder with one sub-folder of images per class, a CSV with columns path,label, a Parquet file "
               "or `datasets` folder with an image column, or WebDataset .tar shards")
    extraction_engine = "onnxruntime"  # BENCHMARKS.md: fastest, probe accuracy within 0.5 points of eager
    # The default backbone's layers worth ranking beside the whole network: the two best single
    # blocks of zoo/layers.py's measurement (cut early, so cheaper to embed than the whole network)
    # and the concatenation, which also covers block 3.
    default_layers = ("tf_efficientnet_lite0@block4", "tf_efficientnet_lite0@block5", "tf_efficientnet_lite0@concat")

    def recognises(self, path: Path, options: LoadOptions) -> bool:
        if is_table(path):
            return table_role(path, options) == "image"
        if is_shard_spec(path):
            return shard_role(path) == "image"
        return path.is_dir() or path.suffix.lower() == ".csv"

    def load(self, path: Path, options: LoadOptions) -> ImageData:
        # tables and shards name their columns (data/table_sources.py, data/shards.py)
        if is_table(path):
            return load_image_table(path, _decode_size(options), options.strict, image=options.image_column,
                                    label=options.label_column)
        if is_shard_spec(path):
            return load_image_shards(path, _decode_size(options), options.strict, label=options.label_column)
        if options.names_columns:
            raise HeadstartError("--text-column, --label-column and --image-column name the columns of a Parquet "
                                 "or Arrow table (text and label: of a text CSV/JSONL); an image folder or CSV has none",
                                 "drop them, or the image modality")
        size = _decode_size(options)
        if path.is_dir():
            return load_image_folder(path, size, options.strict)
        if path.suffix.lower() == ".csv":
            return load_image_csv(path, size, options.strict)
        if path.suffix.lower() == ".jsonl":
            raise HeadstartError(f"{path} is a JSONL file, which holds texts, not images", "drop the image modality")
        raise HeadstartError(f"{path} is not an image dataset", f"pass {self.formats}")

    def recognises_pool(self, path: Path, options: LoadOptions) -> bool:
        return self.recognises(path, options)

    def load_pool(self, path: Path, options: LoadOptions) -> ImageData:
        if is_table(path):
            return load_image_table(path, _decode_size(options), options.strict, image=options.image_column,
                                    labelled=False)
        if is_shard_spec(path):
            return load_image_shards(path, _decode_size(options), options.strict, labelled=False)
        return load_image_pool(path, _decode_size(options), options.strict)

    def decode_size(self, image_size: int | str | None, spec) -> int | None:
        if image_size and image_size != "auto":  # auto: decoded at the backbone's size, the largest candidate
            return image_size
        return SMALL_INPUT_CAP if spec.sized_to_input else (spec.input_size or DEFAULT_DECODE_SIZE)

    def backbone_options(self, config, spec, *, pretrained: bool, data) -> dict:
        size = config.image_size
        if not pretrained and size is None and spec.sized_to_input:
            size = min(data.images.shape[1], SMALL_INPUT_CAP)  # a small CNN at the data's own resolution
        return {"image_size": size}

    def build_classifier(self, backbone, num_classes: int) -> ImageClassifier:
        return ImageClassifier(backbone, num_classes)

    def training_dataset(self, data: ImageData, augment: str, input_size: int):
        return ArrayImageDataset(data.images, data.labels, build_augmentation(augment, input_size))

    def rebuild_backbone(self, record: dict, folder: Path, *, image_size: int | None = None):
        # The architecture name, the preprocessing and the tensors are the whole backbone.
        from headstart.zoo import Preprocessing, resolve_backbone

        recorded = int(record["preprocessing"]["input_size"])
        size = image_size or recorded
        architecture = resolve_backbone(record["architecture"])
        # A sized architecture (resnet9) has as many stages as its training size asked for: built
        # at another size it is another network, which the saved tensors do not fit. Rebuilding it
        # at the recorded size and resizing the data instead would train a run whose model.json
        # could not be rebuilt from its architecture name alone; refusing keeps every run
        # self-contained.
        if size != recorded and architecture.sized_to_input:
            raise HeadstartError(
                f"'{record['name']}' is a {record['architecture']} trained at {recorded} px, and that "
                f"architecture's layers depend on its input size: it cannot run at {size} px",
                hint=f"leave --image-size unset (the images are resized to {recorded} px)")
        backbone = architecture.build(pretrained=False, image_size=size)
        backbone.preprocessing = replace(Preprocessing.from_dict(record["preprocessing"]), input_size=size)
        return backbone

    raw_name = f"raw pixels (at most {RAW_SIDE} px, standardised)"

    def raw_features(self, train: ImageData, val: ImageData):
        from headstart.data import resize_data

        side = min(RAW_SIDE, train.images.shape[1])
        train_x, val_x = (resize_data(d, side).images.reshape(len(d), -1).astype(np.float32) for d in (train, val))
        mean, std = train_x.mean(0), train_x.std(0) + 1e-3  # per pixel, from train only
        return (train_x - mean) / std, (val_x - mean) / std

    def size_gap(self, data: ImageData, backbone) -> dict:
        native = data.notes.get("native_size")  # set by the loaders; None for older data forms
        model = backbone.preprocessing.input_size
        return {"native": native, "model": model, "unit": "px", "measure": "median shorter side",
                "option": "--image-size", "upsampled": bool(native and native < model), "truncated_share": None}

    def read_inputs(self, inputs: list[str], text_file: str | None, meta: dict) -> Inputs:
        if text_file:
            raise HeadstartError("--file is for text runs", hint="pass image files or folders for an image run")
        if not inputs:
            raise HeadstartError("nothing to predict", hint="pass image files or folders")
        files = expand_image_paths(inputs)
        size = meta["backbone"]["preprocessing"]["input_size"]
        images, usable, errors = [], [], {}
        for i, f in enumerate(files):
            try:
                images.append(decode_image(f, size))
                usable.append(i)
            except Exception as e:  # one unreadable file must not cost the others their answers
                errors[i] = f"unreadable image: {e}"
        data = ImageData(images=np.stack(images), labels=None, classes=[], name="inputs") if images else None
        return Inputs([str(f) for f in files], "path", data, usable, errors)


def _decode_size(options: LoadOptions) -> int:
    side = DEFAULT_DECODE_SIZE if options.size is None else options.size
    if side < 1:
        raise HeadstartError(f"image size must be positive, got {side}", "pass a size such as 224")
    return side


def _load_image_classifier(run_dir: Path, meta: dict) -> ImageClassifier:
    from headstart.zoo import Preprocessing, resolve_backbone

    described = meta["backbone"]
    pre = Preprocessing.from_dict(described["preprocessing"])
    backbone = resolve_backbone(described["architecture"]).build(pretrained=False, image_size=pre.input_size)
    backbone.preprocessing = pre
    classifier = ImageClassifier(backbone, meta["num_classes"])
    if meta.get("pruned"):  # `headstart prune`: slimmer layers, recorded in model.json (no pickle)
        apply_pruned_shapes(classifier, meta["pruned"])
    return load_module_weights(classifier, run_dir)


def apply_pruned_shapes(classifier: ImageClassifier, pruned: dict) -> None:
    """Reshape, in place, the layers model.json's "pruned" record names (written by
    deploy/pruned_format.py: {"layers": {module name: {"kind", channels or features, groups}}}),
    so that a pruned run's weights load into the architecture rebuilt from its name. Parameters
    keep their identity (their data is replaced; the weights fill it), so layer groups stay valid."""
    import torch

    modules = dict(classifier.named_modules())
    for name, shape in pruned["layers"].items():
        module = modules.get(name)
        if module is None or not hasattr(module, "weight"):
            raise HeadstartError(f"the pruned model names a layer '{name}' that its architecture does not have",
                                 hint="it was pruned from another version of the architecture; prune its source again")
        for attribute, value in shape.items():
            if attribute != "kind":
                setattr(module, attribute, int(value))
        if shape["kind"] == "conv":
            weight, width = (shape["out_channels"], shape["in_channels"] // shape["groups"], *module.kernel_size), \
                shape["out_channels"]
        elif shape["kind"] == "linear":
            weight, width = (shape["out_features"], shape["in_features"]), shape["out_features"]
        else:  # batch norm: per-channel scale, shift and running statistics
            weight, width = (shape["num_features"],), shape["num_features"]
        for key in ("weight", "bias", "running_mean", "running_var"):
            tensor = getattr(module, key, None)
            if tensor is not None:
                tensor.data = torch.empty(weight if key == "weight" else (width,), dtype=tensor.dtype)
    classifier.backbone.feature_dim = int(pruned.get("feature_dim", classifier.head.fc.in_features))
    if hasattr(classifier.backbone.model, "num_features"):
        classifier.backbone.model.num_features = classifier.backbone.feature_dim
    classifier.to(memory_format=torch.channels_last)


register_model_format(
    "headstart-image-classifier", save=save_module_weights, load=_load_image_classifier,
    input="uint8 RGB or grey, (B, C, H, W) at preprocessing.input_size; normalised inside the model")
