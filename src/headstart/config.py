"""Typed settings for a fit. The resolved config is saved with every run as config.yaml."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

from .errors import HeadstartError


@dataclass
class FitConfig:
    data: str
    backbone: str | None = None          # None: the default for the data's modality
    strategy: str = "probe"
    # weights
    weights: str | None = None           # a local file (safetensors or a state_dict)
    pretrained: bool = True
    image_size: int | None = None        # overrides the backbone's pretrained input size
    # data
    seed: int = 0
    train_per_class: int | None = None
    train_size: int | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    max_eval: int = 1000                 # cap on val and test sizes, to keep evaluation cheap
    strict: bool = False                 # corrupt images: error instead of skip-and-count
    elpv_grades: bool = False
    modality: str = "auto"               # auto | image | text
    text_column: str | None = None       # CSV/JSONL column names (None: guessed)
    label_column: str | None = None
    # text
    max_length: int | None = None        # tokens per text; None: the model's own (256 for MiniLM)
    pooling: str | None = None           # mean | cls; None: the model's own
    # training (None = the strategy's own default)
    epochs: int | None = None
    batch_size: int | None = None       # None: 16 on CPU (faster per image there), 64 on GPU
    lr: float | None = None
    optimizer: str = "adamw"
    schedule: str = "onecycle"
    weight_decay: float = 0.01
    augment: str | None = None
    patience: int | None = None          # epochs without validation gain before stopping
    budget_seconds: float | None = None  # the run stops cleanly inside it
    evals_per_epoch: int = 1
    mixed_precision: str = "auto"        # auto | no | bf16 | fp16
    scratch_model: str | None = None     # scratch arm architecture; None = the backbone's own
    # run
    out: str | None = None
    resume: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def load_options(self) -> dict:
        """The keyword options load_data takes from this config."""
        return {"strict": self.strict, "elpv_grades": self.elpv_grades, "modality": self.modality,
                "text_column": self.text_column, "label_column": self.label_column}


    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# The backbone a fit uses when none is named, per modality of the data.
DEFAULT_BACKBONES = {"image": "tf_efficientnet_lite0", "text": "all-MiniLM-L6-v2"}


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | float | int | None) -> float | None:
    """'90s', '5m', '1.5h' or plain seconds -> seconds."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
        if not m:
            raise HeadstartError(f"cannot read the duration '{text}'", hint="write e.g. 90s, 5m or 1.5h")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds <= 0:
        raise HeadstartError(f"the budget must be positive, got '{text}'")
    return seconds
