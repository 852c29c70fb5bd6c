"""Build the bundled ``mnist_10k.npz`` from the official MNIST files.

The bundle holds two parts of official MNIST:

- ``images``/``labels``: the first 10,000 digits of the official training set, in the order
  the project has always bundled them (grouped by label, official order within a label), so
  that training and validation splits are the ones of earlier releases;
- ``test_images``/``test_labels``: the official 10,000-digit test set, in its own order.
  Its writers are not the training set's (by NIST's design), so a test accuracy on it is
  comparable with the literature, unlike one on held-out training digits.

Usage::

    python -m src.data.build_mnist_10k --idx FOLDER   # the four official IDX files (.gz or not)
    python -m src.data.build_mnist_10k                # Keras' own download (or its cache)

Every source is checked against the MD5s the MNIST distribution publishes for the
uncompressed files, and the output is byte-for-byte reproducible (fixed zip timestamps), so
its SHA-256, which ``src.data.sources`` checks at load time, can be re-derived by anyone.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from src.data.mnist_format import official_mnist_mismatch

DEFAULT_OUTPUT = Path(__file__).with_name("mnist_10k.npz")
TRAINING_DIGITS = 10_000
# Fixed so that rebuilding gives the same bytes, and so the same checksum.
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


class NotOfficialMnist(ValueError):
    """A file that is not the official MNIST file it claims to be."""


def check_official(arrays: dict[str, np.ndarray]) -> None:
    """Raise `NotOfficialMnist` unless each array is the official file, byte for byte."""
    mismatch = official_mnist_mismatch(arrays)
    if mismatch:
        raise NotOfficialMnist(mismatch)


def read_official(idx_folder: Path | None) -> dict[str, np.ndarray]:
    """The four official arrays, from an IDX folder or from Keras' download, checked."""
    if idx_folder is not None:
        from src.data.sources import read_idx_folder

        arrays = read_idx_folder(idx_folder)  # raises DataError on a missing or corrupt file
    else:
        from keras.datasets import mnist

        (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
        arrays = {
            "train_images": train_images,
            "train_labels": train_labels,
            "test_images": test_images,
            "test_labels": test_labels,
        }
    check_official(arrays)
    return arrays


def bundle(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bundle's arrays: the first training digits grouped by label, and the test set."""
    images = arrays["train_images"][:TRAINING_DIGITS]
    labels = arrays["train_labels"][:TRAINING_DIGITS]
    order = np.argsort(labels, kind="stable")
    return {
        "images": images[order],
        "labels": labels[order],
        "test_images": arrays["test_images"],
        "test_labels": arrays["test_labels"],
    }


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays as a compressed ``.npz`` whose bytes depend only on the arrays."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    """Build the bundled file and print its SHA-256."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--idx", type=Path, help="folder of the official IDX files (default: Keras)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    try:
        arrays = bundle(read_official(args.idx))
    except NotOfficialMnist as error:
        print(f"error: {error}")
        return 1
    write_npz(args.output, **arrays)
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    counts = np.bincount(arrays["labels"]).tolist()
    print(f"wrote {args.output}: {len(arrays['labels'])} training digits {counts}")
    print(f"and {len(arrays['test_labels'])} official test digits; sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
