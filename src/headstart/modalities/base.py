"""The Modality seam: everything that differs between images, texts (and audio, next).

A modality is one registered object. It recognises and loads its data (labelled, or
unlabelled as a pool), says which backbone, arms and scratch model a run uses by default and
how strategies' defaults change for it, builds the classifier, the training dataset and its
augmentation, reads `predict`'s inputs, and gives the words reports use. Outside the
modalities' own modules no code compares a modality's name: it asks the modality.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from headstart.registry import Registry


@dataclass(frozen=True)
class LoadOptions:
    """How to read a user's data. `size` is the decode size of image files (None: the default)."""

    size: int | None = None
    strict: bool = False          # an unusable item is an error instead of skipped-and-counted
    text_column: str | None = None
    label_column: str | None = None
    image_column: str | None = None   # Parquet/Arrow tables (data/table_sources.py)

    @property
    def names_columns(self) -> bool:
        return self.text_column is not None or self.label_column is not None or self.image_column is not None


@dataclass
class Inputs:
    """What `predict` read: names for the output rows, the usable items as an (unlabelled)
    data form, which rows they are, and why the other rows could not be used."""

    names: list[str]
    kind: str                    # what a name is: "path" or "text"
    data: object | None          # an unlabelled data form of the usable rows
    usable: list[int]
    errors: dict[int, str] = field(default_factory=dict)


class Modality:
    name: str = ""
    priority: int = 0                     # detection order: the most specific test first
    default_backbone: str = ""
    default_arms: tuple[str, ...] = ()
    default_scratch_model: str = ""
    # `headstart pretrain`'s network when --backbone is not given (adapt/pretrain.py)
    default_pretrain_backbone: str = ""
    # --strategy auto's no-transfer side: the strategy that says whether transfer pays here
    auto_baseline: str = "scratch"
    # strategy name -> overrides of that strategy's defaults (lr, epochs, layer_decay, ...)
    strategy_defaults: dict[str, dict] = {}
    # a fit's closing part -> its expected seconds before it was ever measured here, where this
    # modality's models differ from post_fit.DEFAULT_CLOSING_SECONDS (explanations: per example)
    closing_seconds: dict[str, float] = {}
    augments: bool = False                # whether the augmentation presets apply
    # words for messages and reports: input_unit ("px"), example ("image"), noun ("images"),
    # skipped ("unreadable image file(s)")
    words: dict[str, str] = {}
    formats: str = ""                     # the data it reads, for "what can I pass" hints
    # what `--extract-engine auto` runs (engines/extract.py): the fastest engine whose probe
    # accuracy stayed within 0.5 points of PyTorch eager in bench/extract_engines.py (2-core CPU)
    extraction_engine: str = "torch"
    # intermediate layers of the default backbone that ranking tries beside whole backbones
    # (ARCH@blockK, zoo/layers.py); none unless a measurement says they pay
    default_layers: tuple[str, ...] = ()

    def owns(self, obj) -> bool:
        """Whether a data form, backbone, spec or model.json is of this modality: the one
        place a modality's identity is compared."""
        return modality_of(obj) is self

    # -- data ---------------------------------------------------------------------------
    def recognises(self, path: Path, options: LoadOptions) -> bool:
        raise NotImplementedError

    def load(self, path: Path, options: LoadOptions):
        raise NotImplementedError

    def recognises_pool(self, path: Path, options: LoadOptions) -> bool:
        return False

    def load_pool(self, path: Path, options: LoadOptions):
        """Unlabelled data from a path; a labelled source is read for its items only."""
        raise NotImplementedError

    def data_notes(self, parts: list, preprocessing) -> tuple[dict, list[str]]:
        """(summary figures, sentences a user should read) about prepared data."""
        return {}, []

    # -- model --------------------------------------------------------------------------
    def decode_size(self, image_size: int | None, spec) -> int | None:
        """The size files are decoded at, so decoding happens once (None: not applicable)."""
        return None

    def backbone_options(self, config, spec, *, pretrained: bool, data) -> dict:
        """The build options of `spec` for this run (input size, tokenizer, ...)."""
        return {}

    def build_classifier(self, backbone, num_classes: int):
        raise NotImplementedError

    def training_dataset(self, data, augment: str, input_size: int):
        """A torch Dataset of (input, label) over prepared data."""
        raise NotImplementedError

    # -- the local zoo (zoo/local.py) -----------------------------------------------------
    def rebuild_backbone(self, record: dict, folder: Path, **options):
        """A local zoo entry's backbone with random weights at its recorded structure; `record`
        is its spec.json, `folder` holds what copy_backbone_files copied. By default the
        architecture is rebuilt by name with the run's build options."""
        from headstart.zoo import resolve_backbone

        return resolve_backbone(record["architecture"]).build(pretrained=False, **options)

    def copy_backbone_files(self, run_dir: Path, folder: Path) -> None:
        """Copy what rebuild_backbone reads besides the tensors from a run into an entry's folder."""

    # -- predict ------------------------------------------------------------------------
    def read_inputs(self, inputs: list[str], text_file: str | None, meta: dict) -> Inputs:
        raise NotImplementedError

    # -- diagnosis (why transfer did not pay) ----------------------------------------------
    raw_name: str = ""                    # what raw_features are, for reports ("raw pixels ...")

    def raw_features(self, train, val):
        """(train, val) as plain vectors with no learned model (pixels, word counts): what
        pretrained features must beat. Anything fitted (scaling, vocabulary) is fitted on
        train only. A NumPy or SciPy sparse matrix each; None when the modality has none."""
        return None

    def size_gap(self, data, backbone) -> dict | None:
        """The data's own size against the size `backbone` reads it at: {"native", "model",
        "unit", "measure" (what native is), "option" (the flag that sets the model's size),
        "upsampled" (the model reads the data larger than it is), "truncated_share"}; None
        when unknown."""
        return None


# "auto": detected from the data (loading.py)
_MODALITIES: Registry[Modality] = Registry("modality", extra_choices=("auto",))


def register_modality(name: str):
    """Class decorator: register an instance of the class as the modality `name`; the local
    zoo learns from it how to rebuild its backbones (the zoo sits below the modalities)."""

    def decorate(cls):
        from headstart.zoo.local import BACKBONE_REBUILDERS

        instance = cls()
        instance.name = name
        _MODALITIES.add(name, instance)
        BACKBONE_REBUILDERS.add(name, instance)
        return cls

    return decorate


def get_modality(name: str) -> Modality:
    return _MODALITIES.get(name)


def modalities() -> list[Modality]:
    """Registered modalities, most specific detection first."""
    return sorted(_MODALITIES.values(), key=lambda m: -m.priority)


def modality_of(obj) -> Modality:
    """The modality of a data form, a backbone, a spec or a model.json (its `modality`)."""
    name = obj.get("modality") if isinstance(obj, dict) else getattr(obj, "modality", None)
    return get_modality(name or "image")
