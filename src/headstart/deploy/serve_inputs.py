"""What a `headstart serve` request may carry, and the limits on it.

A request brings images (multipart files, or JSON `{"images": [base64, ...]}`) or texts
(JSON `{"texts": [...]}`), whichever the model reads. Every refusal is a ServeError with a
status and a message a person can act on; the rule for the status:

    413  too large: the body's bytes, the number of inputs, an image's pixels, a text's length
    415  a content type this endpoint does not read (or not the one this model's inputs need)
    422  a body that is not what it should be: bad JSON, an unknown field, not base64, nothing

Only bytes and texts come in: no value in a request is ever used as a path on the server
(an upload's file name is echoed back as its name, and that is all).
"""
from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# The formats `predict` reads (headstart.inputs.IMAGE_EXTENSIONS; phones' multi-picture JPEGs
# open as JPEG); PIL's many other decoders are not exposed to the network.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
UPLOAD_FIELDS = ("file", "files")


@dataclass(frozen=True)
class ServeLimits:
    """What one request may hold; beyond it the server answers 413 before the model runs."""

    max_request_mb: float = 16.0      # the whole body, counted as it arrives
    max_items: int = 64               # images or texts in one /predict request
    max_pixels: int = 40_000_000      # width x height of one image, read from its header before decoding
    max_text_chars: int = 20_000      # characters in one text
    max_explain_items: int = 4        # inputs in one /explain request (each costs a backward pass)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1e6)

    def as_dict(self) -> dict:
        return asdict(self)


class ServeError(Exception):
    """A request the server will not answer, and why (the JSON body is {"error", "hint"})."""

    def __init__(self, status: int, message: str, hint: str | None = None):
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint

    def body(self) -> dict:
        return {"error": self.message, **({"hint": self.hint} if self.hint else {})}


class PredictJSON(BaseModel):
    """The JSON body of /predict and /explain: one of the two lists, as the model reads."""

    model_config = ConfigDict(extra="forbid")

    images: list[str] | None = Field(None, description="images as base64 strings (plain or data: URLs)")
    texts: list[str] | None = Field(None, description="texts to classify")


@dataclass
class Received:
    """The inputs of one request: a name for each (for the answer), the values (image bytes or
    texts), and the ones refused before the model saw them, by index."""

    names: list[str]
    values: list
    errors: dict[int, str] = field(default_factory=dict)


async def read_request(request, reads: str, limits: ServeLimits, max_items: int) -> Received:
    """The inputs of a /predict or /explain request for a model that reads `reads`."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    reader = _BODY_READERS.get(media)
    if reader is None:
        raise ServeError(415, f"this endpoint does not read {media or 'a body without a content type'}",
                         hint=READS[reads].how)
    received = await reader(request, READS[reads], max_items)
    if not received.values:
        raise ServeError(422, "nothing to predict", hint=READS[reads].how)
    _refuse_too_many(len(received.values), max_items)
    READS[reads].check(received, limits)
    return received


def _refuse_too_many(count: int, max_items: int) -> None:
    if count > max_items:
        raise ServeError(413, f"{count} inputs in one request; this server takes at most {max_items}",
                         hint="send them in several requests")


async def _read_json(request, reads: "_Reads", max_items: int) -> Received:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as e:
        raise ServeError(422, f"the body is not valid JSON: {e}", hint=reads.how) from e
    if not isinstance(body, dict):
        raise ServeError(422, "the body must be a JSON object", hint=reads.how)
    try:
        parsed = PredictJSON.model_validate(body)
    except ValidationError as e:
        raise ServeError(422, "; ".join(_describe(error) for error in e.errors()), hint=reads.how) from e
    given = [name for name in PredictJSON.model_fields if getattr(parsed, name) is not None]
    if given and given != [reads.field]:
        raise ServeError(422, f"this model reads {reads.field}, and the body has {' and '.join(given)}",
                         hint=reads.how)
    values = getattr(parsed, reads.field) or []
    _refuse_too_many(len(values), max_items)  # before decoding any of them
    names = [f"{reads.field}[{i}]" for i in range(len(values))]
    return Received(names, [reads.from_json(value, name) for value, name in zip(values, names)])


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()))
    if error.get("type") == "extra_forbidden":
        return f"unknown field '{where}' (the body takes 'images' or 'texts')"
    return f"{where}: {error.get('msg')}"


def _base64_image(value: str, name: str) -> bytes:
    if value.startswith("data:") and "," in value:  # a data: URL, as a browser's FileReader makes it
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ServeError(422, f"{name} is not base64: {e}", hint="encode each image file's bytes as base64") from e


async def _read_multipart(request, reads: "_Reads", max_items: int) -> Received:
    from starlette.exceptions import HTTPException

    if not reads.uploads:
        raise ServeError(415, f"this model reads {reads.field}, not uploaded files", hint=reads.how)
    try:
        form = await request.form(max_files=max_items, max_fields=max_items)
    except HTTPException as e:  # starlette's multipart parser: too many parts, or a malformed body
        if "too many" in str(e.detail).lower():
            raise ServeError(413, f"more than {max_items} inputs in one request; this server takes at most "
                                  f"{max_items}", hint="send them in several requests") from e
        raise ServeError(422, f"the multipart body could not be read: {e.detail}",
                         hint=f"attach images as files named {UPLOAD_FIELDS[0]}") from e
    names, values = [], []
    try:
        for key, value in form.multi_items():
            if key not in UPLOAD_FIELDS:
                raise ServeError(422, f"unknown field '{key}'", hint=f"attach images as files named {UPLOAD_FIELDS[0]}")
            if isinstance(value, str):
                raise ServeError(422, f"the field '{key}' holds text, not a file", hint=reads.how)
            names.append(value.filename or f"file {len(names)}")
            values.append(await value.read())
    finally:
        await form.close()
    return Received(names, values)


_BODY_READERS = {"application/json": _read_json, "multipart/form-data": _read_multipart}


def _check_images(received: Received, limits: ServeLimits) -> None:
    """Refuse a decompression bomb from its header, before a pixel is decoded; an input that
    is not an image in a format `predict` reads is that input's error, not the request's."""
    from PIL import Image, UnidentifiedImageError

    Image.init()
    formats = [name for name in IMAGE_FORMATS if name in Image.OPEN]  # as this Pillow names them
    for i, blob in enumerate(received.values):
        try:
            with Image.open(io.BytesIO(blob), formats=formats) as image:
                width, height = image.size
        except UnidentifiedImageError:
            received.errors[i] = f"unreadable image: not a {', '.join(formats)} file"
            continue
        except Exception as e:  # noqa: BLE001  (any reason PIL refuses it is this input's error)
            received.errors[i] = f"unreadable image: {e}"
            continue
        if width * height > limits.max_pixels:
            raise ServeError(413, f"{received.names[i]} is {width} x {height} = {width * height:,} pixels; "
                                  f"this server decodes at most {limits.max_pixels:,}",
                             hint="send a smaller image (the model reads it far smaller anyway)")


def _check_texts(received: Received, limits: ServeLimits) -> None:
    for name, text in zip(received.names, received.values):
        if len(text) > limits.max_text_chars:
            raise ServeError(413, f"{name} has {len(text):,} characters; this server reads at most "
                                  f"{limits.max_text_chars:,}", hint="send a shorter text, or split it")


@dataclass(frozen=True)
class _Reads:
    """How requests carry what a model reads (keyed by the modality's word for one example)."""

    field: str                                 # the JSON field
    uploads: bool                              # whether multipart files carry it too
    how: str                                   # the hint that says how to send it
    from_json: Callable[[str, str], object]    # (JSON value, its name) -> the value the engine takes
    check: Callable[[Received, ServeLimits], None]


READS = {
    "image": _Reads("images", True, 'this model reads images: POST multipart/form-data with files named "file", '
                                    'or application/json {"images": ["<base64>", ...]}', _base64_image, _check_images),
    "text": _Reads("texts", False, 'this model reads texts: POST application/json {"texts": ["...", ...]}',
                   lambda text, name: text, _check_texts),
}
