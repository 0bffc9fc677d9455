"""What `rank`, `--backbone auto` and `tune` choose among: backbones (or a layer of one, or a
model of the local zoo) at an input size.

A candidate is written BACKBONE[:SIZE]: `tf_efficientnet_lite0:160`, `tf_efficientnet_lite0@block5`,
`mnist-resnet9` (a local zoo entry). Without a size it runs at the backbone's own.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import HeadstartError

# "one lower size" than a backbone's native one: three quarters of it, on a multiple of 32
# (224 -> 160, 240 -> 192, 260 -> 192): cheaper to embed, and for small or coarse images often
# as good, which only measuring tells.
LOWER_SIZE_SHARE = 0.75


@dataclass(frozen=True)
class Candidate:
    backbone: str
    image_size: int | None = None  # None: the backbone's own input size

    @property
    def name(self) -> str:
        return self.backbone if self.image_size is None else f"{self.backbone}:{self.image_size}"

    @classmethod
    def parse(cls, text: str) -> "Candidate":
        text = text.strip()
        backbone, _, size = text.rpartition(":") if _has_size(text) else (text, "", "")
        if not backbone:
            raise HeadstartError(f"cannot read the candidate '{text}'", hint="write BACKBONE or BACKBONE:SIZE, "
                                 "e.g. tf_efficientnet_lite0:160")
        return cls(backbone, int(size) if size else None)


def _has_size(text: str) -> bool:
    head, sep, tail = text.rpartition(":")
    return bool(sep) and tail.isdigit()


def parse_candidates(text) -> list[Candidate]:
    """'a,b:160' or a list of names -> candidates, each once, in the order given."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = list(dict.fromkeys(Candidate.parse(t) for t in items if str(t).strip()))
    if not out:
        raise HeadstartError("no candidates given", hint="e.g. --candidates tf_efficientnet_lite0,tf_efficientnet_lite1")
    return out


def lower_size(native: int) -> int:
    return max(32, int(round(native * LOWER_SIZE_SHARE / 32)) * 32)


def default_candidates(modality: str) -> list[Candidate]:
    """Every backbone of the zoo whose pretrained weights load here for this modality, at its
    native size and (images) one lower size; the intermediate layers of the modality's
    default backbone; and the local zoo's own models."""
    from ..zoo import list_backbones, resolve_backbone

    out: list[Candidate] = []
    for listed in list_backbones(modality):
        if not listed["pretrained_offline"]:
            continue
        spec = resolve_backbone(listed["name"])
        out.append(Candidate(spec.name))
        if spec.input_size and not spec.sized_to_input:  # a fixed input size (images): try one lower
            out.append(Candidate(spec.name, lower_size(spec.input_size)))
    out += [Candidate(name) for name in _layer_names(modality)]
    out += [Candidate(name) for name in _local_names(modality)]
    return list(dict.fromkeys(out))


def _layer_names(modality: str) -> list[str]:
    """The intermediate-layer candidates of the modality's default backbone (zoo/layers.py)."""
    from ..modalities import get_modality
    return list(get_modality(modality).default_layers)


def _local_names(modality: str) -> list[str]:
    """The local zoo's entries (`headstart zoo add`)."""
    from ..zoo.local import local_names
    return local_names(modality)


def decode_size_for(modality, image_size: int | None) -> int | None:
    """The size to decode data at when the backbone is chosen later (--backbone auto): the
    largest any default candidate eats, so every candidate resizes down from it."""
    from ..zoo import resolve_backbone

    sizes = [modality.decode_size(c.image_size or image_size, resolve_backbone(c.backbone))
             for c in default_candidates(modality.name)]
    sizes = [s for s in sizes if s]
    return max(sizes) if sizes else modality.decode_size(image_size, resolve_backbone(modality.default_backbone))
