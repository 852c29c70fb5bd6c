"""The MNIST file format: the image side and the four IDX files with their magic numbers.

The one home of these facts; data loading, config validation, prediction and the dataset
builder import them. It imports nothing heavy, so the config check stays light.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

# MNIST-format images (MNIST, Fashion-MNIST, KMNIST) are IMAGE_SIDE x IMAGE_SIDE grey levels.
IMAGE_SIDE = 28
IMAGE_SHAPE = (IMAGE_SIDE, IMAGE_SIDE)
# MNIST's digits, and Fashion-MNIST's garments (the `idx` source): ten classes each.
NUM_CLASSES = 10
# Standard file names (each also accepted with a .gz suffix) and their IDX magic numbers:
# 0x08 (unsigned bytes) then the number of dimensions.
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", 0x0803),
    "train_labels": ("train-labels-idx1-ubyte", 0x0801),
    "test_images": ("t10k-images-idx3-ubyte", 0x0803),
    "test_labels": ("t10k-labels-idx1-ubyte", 0x0801),
}
# MD5 of each uncompressed official MNIST file, as the MNIST distribution publishes them.
OFFICIAL_MNIST_MD5 = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}


def idx_bytes(array: Any, magic: int) -> bytes:
    """The IDX file content of a uint8 array: the header, then the data."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def official_mnist_mismatch(arrays: Mapping[str, Any]) -> str | None:
    """None if the arrays given (any of the four keys of `IDX_FILES`) are the official MNIST
    files byte for byte, else which one is not; a missing key is reported as such."""
    if not arrays.keys() & OFFICIAL_MNIST_MD5.keys():
        return "none of the four MNIST files given"
    for key, expected in OFFICIAL_MNIST_MD5.items():
        if key not in arrays:
            continue
        actual = hashlib.md5(idx_bytes(arrays[key], IDX_FILES[key][1])).hexdigest()
        if actual != expected:
            return f"{IDX_FILES[key][0]} has MD5 {actual}, not the official file's {expected}"
    return None
