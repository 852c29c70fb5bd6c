"""Read MNIST-format digits from the three sources ``data.name`` chooses, checking each file.

- ``mnist``: full MNIST (60,000 training digits, the official 10,000 test digits), read in
  this order: a local folder of the four official IDX files (``data.idx_folder``, checked
  against the official MD5s), then Keras' cache (``~/.keras/datasets``) or download.
- ``mnist_10k``: bundled in ``src/data/mnist_10k.npz``: the first 10,000 official training
  digits (train and validation) and the official 10,000-digit test set, SHA-256 checked.
- ``idx``: a folder holding the four standard MNIST-format IDX files.

Everything is returned as read (uint8); ``src.data.dataset`` scales and splits it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from src.data.mnist_format import IDX_FILES, IMAGE_SHAPE, NUM_CLASSES, official_mnist_mismatch
from src.errors import DataError

BUNDLED_PATH = Path(__file__).with_name("mnist_10k.npz")
# Checked at load time; `python -m src.data.build_mnist_10k` rebuilds the same bytes.
BUNDLED_SHA256 = "a6b52fefa86abb734c54abe2028725f958896ba421096aeead96e4ab290fb258"


@dataclass(frozen=True)
class RawDigits:
    """uint8 images and labels as read; ``test_*`` are None where the source has no test split."""

    images: np.ndarray
    labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    origin: str


class FullMnistUnavailable(Exception):
    """Full MNIST is neither cached nor downloadable."""


def read_full_mnist(data_cfg: Mapping[str, Any]) -> RawDigits:
    """Full MNIST from the first source that has it: a local IDX folder, then Keras."""
    folder = data_cfg.get("idx_folder")
    if folder:
        arrays = read_idx_folder(Path(folder))
        mismatch = official_mnist_mismatch(arrays)
        if mismatch:
            raise DataError(f"data.idx_folder={folder!r}: {mismatch}")
        return raw_digits(arrays, str(Path(folder).resolve()))
    return _read_keras_mnist(data_cfg["path"], data_cfg["download_timeout_s"])


def _read_keras_mnist(path: str, timeout_s: float) -> RawDigits:
    # Imported here so that the other sources load without starting the Keras backend.
    from keras.datasets import mnist

    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    origin = Path(path) if Path(path).is_absolute() else keras_home / "datasets" / path
    # Keras' downloader has no timeout of its own; bound every socket operation instead.
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        (train_images, train_labels), (test_images, test_labels) = mnist.load_data(path=path)
    except Exception as error:  # Keras wraps network errors in a bare Exception.
        # Keras' message is "URL fetch failure on <url>: <code> -- <reason>"; keep the reason.
        reason = str(error).splitlines()[0].rpartition(" -- ")[2] or type(error).__name__
        raise FullMnistUnavailable(
            f"not cached at {origin} and not downloadable: {reason}"
        ) from error
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return RawDigits(train_images, train_labels, test_images, test_labels, str(origin))


def read_npz(path: str | None) -> RawDigits:
    file = BUNDLED_PATH if path is None else Path(path)
    if not file.is_file():
        raise DataError(f"data.path={str(file)!r}: no such file")
    if path is None:
        actual = hashlib.sha256(file.read_bytes()).hexdigest()
        if actual != BUNDLED_SHA256:
            raise DataError(
                f"{file} is corrupt (SHA-256 {actual[:12]}..., expected {BUNDLED_SHA256[:12]}...); "
                "rebuild it with `python -m src.data.build_mnist_10k`"
            )
    try:
        with np.load(file, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
            has_test = "test_images" in archive and "test_labels" in archive
            test_images = archive["test_images"] if has_test else None
            test_labels = archive["test_labels"] if has_test else None
    except (KeyError, ValueError, OSError) as error:
        raise DataError(f"{file}: not an .npz with `images` and `labels` ({error})") from None
    _check_digits(images, labels, str(file))
    if has_test:
        _check_digits(test_images, test_labels, str(file))
    return RawDigits(images, labels, test_images, test_labels, str(file))


def read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    """The four IDX files of a folder (each plain or ``.gz``), keyed as in `IDX_FILES`.

    Raises:
        DataError: a file is missing, truncated or corrupt, or the digits are malformed.
    """
    arrays = {}
    for key, (stem, magic) in IDX_FILES.items():
        candidates = [folder / stem, folder / f"{stem}.gz"]
        file = next((c for c in candidates if c.is_file()), None)
        if file is None:
            raise DataError(f"{str(folder)!r}: no {stem}[.gz] in that folder")
        arrays[key] = read_idx(file, magic)
    _check_digits(arrays["train_images"], arrays["train_labels"], str(folder))
    _check_digits(arrays["test_images"], arrays["test_labels"], str(folder))
    return arrays


def raw_digits(arrays: Mapping[str, np.ndarray], origin: str) -> RawDigits:
    return RawDigits(
        arrays["train_images"],
        arrays["train_labels"],
        arrays["test_images"],
        arrays["test_labels"],
        str(origin),
    )


def read_idx(file: Path, expected_magic: int) -> np.ndarray:
    """Read one IDX file (optionally gzipped) of unsigned bytes, checking its header.

    Args:
        file: The file to read.
        expected_magic: 0x0803 for a 3-d image file, 0x0801 for a 1-d label file.

    Returns:
        A uint8 array of the shape the header declares.

    Raises:
        DataError: the file is truncated, corrupt, or not of the expected kind.
    """
    try:
        with gzip.open(file) if file.suffix == ".gz" else open(file, "rb") as stream:
            content = stream.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{file}: cannot be read ({error})") from None
    ndim = expected_magic & 0xFF
    header_size = 4 + 4 * ndim
    magic = int.from_bytes(content[:4], "big") if len(content) >= 4 else None
    if magic != expected_magic:
        found = "nothing" if magic is None else f"0x{magic:08x}"
        raise DataError(
            f"{file}: not an IDX file of {ndim}-d unsigned bytes "
            f"(magic number {found}, expected 0x{expected_magic:08x})"
        )
    if len(content) < header_size:
        raise DataError(f"{file}: truncated inside its header")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_size = int(np.prod(shape))
    payload = content[header_size:]
    if len(payload) != expected_size:
        raise DataError(
            f"{file}: header declares shape {shape} ({expected_size} bytes) but "
            f"{len(payload)} bytes follow; the file is truncated or corrupt"
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def _check_digits(images: np.ndarray, labels: np.ndarray, origin: str) -> None:
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"{origin}: images have shape {images.shape}, expected (N, {IMAGE_SHAPE[0]}, "
            f"{IMAGE_SHAPE[1]})"
        )
    if labels.shape != (len(images),):
        raise DataError(f"{origin}: {len(images)} images but labels of shape {labels.shape}")
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"{origin}: images and labels must be uint8")
    if len(images) == 0:
        raise DataError(f"{origin}: holds no images")
    if labels.max() >= NUM_CLASSES:
        raise DataError(
            f"{origin}: label {int(labels.max())} found; labels must be classes 0-{NUM_CLASSES - 1}"
        )
