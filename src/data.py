"""Load MNIST-format digits and split them into train / validation / test.

Three sources, chosen by `data.name`:

- ``mnist``: full MNIST (60,000 training digits, the official 10,000 test digits), read in
  this order: a local folder of the four official IDX files (``data.idx_folder``, checked
  against the official MD5s), Keras' cache (``~/.keras/datasets``) or download, and only
  then the bundled sample (``data.fallback``), with a warning and a note in the record.
- ``mnist_10k``: bundled in ``src/datasets/mnist_10k.npz``: the first 10,000 official
  training digits (train and validation) and the official 10,000-digit test set.
- ``idx``: a folder holding the four standard MNIST-format IDX files.

Pixels are scaled to [0, 1] once, here. Splits are stratified and depend only on
``data.split_seed``, so the held-out digits never change with the training seed.

(About 340 lines: the three sources, the checks of their files and the split share one
record of where the digits came from, `Dataset`; splitting it would scatter that record.)
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from src.mnist_format import IDX_FILES, IMAGE_SHAPE, NUM_CLASSES, official_mnist_mismatch

log = logging.getLogger(__name__)

BUNDLED_PATH = Path(__file__).with_name("datasets") / "mnist_10k.npz"
# Checked at load time; `python -m src.datasets.build_mnist_10k` rebuilds the same bytes.
BUNDLED_SHA256 = "a6b52fefa86abb734c54abe2028725f958896ba421096aeead96e4ab290fb258"


class DataError(RuntimeError):
    """Data that cannot be loaded as configured; the message says which file and why."""


@dataclass(frozen=True)
class Split:
    """Images as float32 ``(N, 28, 28, 1)`` in [0, 1] and integer labels ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    """A dataset split three ways, with a record of where it really came from.

    Attributes:
        name: The source actually loaded (``mnist``, ``mnist_10k`` or ``idx``); after a
            fallback this is ``mnist_10k`` even though ``data=mnist`` was asked for.
        origin: The file or folder read.
        digest: SHA-256 of the raw uint8 images and labels, before splitting.
        test_digest: SHA-256 of the test split's raw images and labels: two models can be
            compared on their test scores only if these agree.
        note: Why the source differs from the one asked for, if it does.
    """

    name: str
    origin: str
    digest: str
    train: Split
    val: Split
    test: Split
    test_digest: str = ""
    note: str | None = None

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES  # every label is checked to be one of them on reading

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: source, origin, digest and split sizes."""
        return {
            "name": self.name,
            "origin": self.origin,
            "digest": self.digest,
            "test_digest": self.test_digest,
            "note": self.note,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
        }


@dataclass(frozen=True)
class _RawDigits:
    """uint8 images and labels as read; ``test_*`` are None where the source has no test split."""

    images: np.ndarray
    labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    origin: str


def load_dataset(data_cfg: Mapping[str, Any], val_fraction: float) -> Dataset:
    """Load the configured source and split it into train / validation / test.

    Args:
        data_cfg: The ``data`` config node.
        val_fraction: Fraction of the training digits held out for validation.

    Returns:
        The split dataset.

    Raises:
        DataError: the data is missing, corrupt or of the wrong shape, or full MNIST is
            unavailable and the fallback is off.
    """
    note = None
    if data_cfg["name"] == "mnist":
        try:
            raw = _read_full_mnist(data_cfg)
        except _Unavailable as error:
            fallback = data_cfg.get("fallback")
            if fallback is None:
                raise DataError(
                    f"full MNIST is unavailable ({error}); use data=mnist_10k (bundled), "
                    "data.idx_folder=FOLDER (the four official IDX files), or put mnist.npz "
                    "in ~/.keras/datasets"
                ) from None
            note = f"full MNIST unavailable ({error}); used the bundled 10,000-digit sample"
            log.warning("%s instead", note)
            data_cfg = fallback
    name = data_cfg["name"]
    if name == "mnist_10k":
        raw = _read_npz(data_cfg["path"])
    elif name == "idx":
        raw = _raw_digits(read_idx_folder(Path(data_cfg["path"])), data_cfg["path"])
    digest = _digest(raw)
    return _split(raw, name, digest, note, data_cfg, val_fraction)


def _read_full_mnist(data_cfg: Mapping[str, Any]) -> _RawDigits:
    """Full MNIST from the first source that has it: a local IDX folder, then Keras."""
    folder = data_cfg.get("idx_folder")
    if folder:
        arrays = read_idx_folder(Path(folder))
        mismatch = official_mnist_mismatch(arrays)
        if mismatch:
            raise DataError(f"data.idx_folder={folder!r}: {mismatch}")
        return _raw_digits(arrays, str(Path(folder).resolve()))
    return _read_keras_mnist(data_cfg["path"], data_cfg["download_timeout_s"])


class _Unavailable(Exception):
    """Full MNIST is neither cached nor downloadable."""


def _read_keras_mnist(path: str, timeout_s: float) -> _RawDigits:
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
        raise _Unavailable(f"not cached at {origin} and not downloadable: {reason}") from error
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return _RawDigits(train_images, train_labels, test_images, test_labels, str(origin))


def _read_npz(path: str | None) -> _RawDigits:
    file = BUNDLED_PATH if path is None else Path(path)
    if not file.is_file():
        raise DataError(f"data.path={str(file)!r}: no such file")
    if path is None:
        actual = hashlib.sha256(file.read_bytes()).hexdigest()
        if actual != BUNDLED_SHA256:
            raise DataError(
                f"{file} is corrupt (SHA-256 {actual[:12]}..., expected {BUNDLED_SHA256[:12]}...); "
                "rebuild it with `python -m src.datasets.build_mnist_10k`"
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
    return _RawDigits(images, labels, test_images, test_labels, str(file))


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


def _raw_digits(arrays: Mapping[str, np.ndarray], origin: str) -> _RawDigits:
    return _RawDigits(
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


def _digest(raw: _RawDigits) -> str:
    digest = hashlib.sha256()
    for array in (raw.images, raw.labels, raw.test_images, raw.test_labels):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _split(
    raw: _RawDigits,
    name: str,
    digest: str,
    note: str | None,
    data_cfg: Mapping[str, Any],
    val_fraction: float,
) -> Dataset:
    seed = data_cfg["split_seed"]
    images, labels = raw.images, raw.labels
    try:
        if raw.test_images is None:
            images, test_images, labels, test_labels = train_test_split(
                images, labels, test_size=data_cfg["test_size"], stratify=labels, random_state=seed
            )
        else:
            test_images, test_labels = raw.test_images, raw.test_labels
        train_images, val_images, train_labels, val_labels = train_test_split(
            images, labels, test_size=val_fraction, stratify=labels, random_state=seed
        )
        limit = data_cfg.get("max_train_examples")
        if limit is not None and limit < len(train_labels):
            train_images, _, train_labels, _ = train_test_split(
                train_images,
                train_labels,
                train_size=limit,
                stratify=train_labels,
                random_state=seed,
            )
    except ValueError as error:  # e.g. a test or validation split smaller than the classes
        raise DataError(f"cannot split {raw.origin} as configured: {error}") from None
    return Dataset(
        name=name,
        origin=raw.origin,
        digest=digest,
        train=_scaled(train_images, train_labels),
        val=_scaled(val_images, val_labels),
        test=_scaled(test_images, test_labels),
        test_digest=_digest(_RawDigits(test_images, test_labels, None, None, raw.origin)),
        note=note,
    )


def _scaled(images: np.ndarray, labels: np.ndarray) -> Split:
    pixels = np.divide(images, 255.0, dtype=np.float32)[..., np.newaxis]
    return Split(images=pixels, labels=labels.astype(np.int32))
