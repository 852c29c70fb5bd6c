"""Split MNIST-format digits into train / validation / test, with a record of their origin.

Pixels are scaled to [0, 1] once, here. Splits are stratified and depend only on
``data.split_seed``, so the held-out digits never change with the training seed. When full
MNIST is unavailable, ``data.fallback`` (the bundled sample) is loaded instead, with a
warning and a note in the record. The readers themselves are in ``src.data.sources``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from src.data.mnist_format import NUM_CLASSES
from src.data.sources import (
    BUNDLED_PATH,
    FullMnistUnavailable,
    RawDigits,
    raw_digits,
    read_full_mnist,
    read_idx_folder,
    read_npz,
)
from src.errors import DataError

log = logging.getLogger(__name__)


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


def load_dataset(
    data_cfg: Mapping[str, Any],
    val_fraction: float,
    development: Mapping[str, Any] | None = None,
) -> Dataset:
    """Load the configured source and split it into train / validation / test.

    Args:
        data_cfg: The ``data`` config node.
        val_fraction: Fraction of the training digits held out for validation.
        development: The ``development_digits`` node, where the run scores on them
            (``evaluate_on=development``): they become the test split, out of training.

    Returns:
        The split dataset.

    Raises:
        DataError: the data is missing, corrupt or of the wrong shape, or full MNIST is
            unavailable and the fallback is off.
    """
    note = None
    if data_cfg["name"] == "mnist":
        try:
            raw = read_full_mnist(data_cfg)
        except FullMnistUnavailable as error:
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
        raw = read_npz(data_cfg["path"])
    elif name == "idx":
        raw = raw_digits(read_idx_folder(Path(data_cfg["path"])), data_cfg["path"])
    if development is not None:
        raw = _development_as_test(raw, development)
    digest = _digest(raw)
    return _split(raw, name, digest, note, data_cfg, val_fraction)


def _development_as_test(raw: RawDigits, development: Mapping[str, Any]) -> RawDigits:
    """``raw`` with the development digits as its test split, none of them left to train on.

    A source with the official 60,000 training digits (full MNIST, an IDX folder) gives up
    its own; the bundled sample (the first 10,000, none of them) reads them from
    ``development["folder"]``, the official IDX files.
    """
    part = slice(int(development["start"]), int(development["stop"]))
    origin = f"{raw.origin}; tested on training digits {part.start}-{part.stop - 1} (development)"
    if len(raw.images) >= part.stop:
        held_out = np.zeros(len(raw.images), dtype=bool)
        held_out[part] = True
        return RawDigits(
            raw.images[~held_out], raw.labels[~held_out], raw.images[part], raw.labels[part], origin
        )
    folder = development.get("folder")
    if raw.origin != str(BUNDLED_PATH) or not folder:
        raise DataError(
            f"{raw.origin} has {len(raw.images)} training digits, not the development digits "
            f"{part.start}-{part.stop - 1}"
            + ("" if folder else ": set MNIST_IDX_FOLDER to the official IDX files")
        )
    official = read_idx_folder(Path(folder))
    images, labels = official["train_images"][part], official["train_labels"][part]
    if len(labels) != part.stop - part.start:
        raise DataError(f"{folder}: has no training digits {part.start}-{part.stop - 1}")
    return RawDigits(raw.images, raw.labels, images, labels, origin)


def _digest(raw: RawDigits) -> str:
    digest = hashlib.sha256()
    for array in (raw.images, raw.labels, raw.test_images, raw.test_labels):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _split(
    raw: RawDigits,
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
        train_images, train_labels = stratified_subset(
            train_images, train_labels, data_cfg.get("max_train_examples"), seed
        )
        # Smoke runs and tests score a few hundred test digits, not all 10,000; the test
        # digest then names the subset, so models are compared only on the same digits.
        test_images, test_labels = stratified_subset(
            test_images, test_labels, data_cfg.get("max_test_examples"), seed
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
        test_digest=_digest(RawDigits(test_images, test_labels, None, None, raw.origin)),
        note=note,
    )


def stratified_subset(
    images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified subset of ``limit`` digits (all of them when ``limit`` is None)."""
    if limit is None or limit >= len(labels):
        return images, labels
    images, _, labels, _ = train_test_split(
        images, labels, train_size=limit, stratify=labels, random_state=seed
    )
    return images, labels


def _scaled(images: np.ndarray, labels: np.ndarray) -> Split:
    pixels = np.divide(images, 255.0, dtype=np.float32)[..., np.newaxis]
    return Split(images=pixels, labels=labels.astype(np.int32))
