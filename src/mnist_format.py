"""The MNIST file format: the image side and the four IDX files with their magic numbers.

The one home of these facts; data loading, config validation, prediction and the dataset
builder import them. It imports nothing, so the config check stays light.
"""

from __future__ import annotations

# MNIST-format images (MNIST, Fashion-MNIST, KMNIST) are IMAGE_SIDE x IMAGE_SIDE grey levels.
IMAGE_SIDE = 28
IMAGE_SHAPE = (IMAGE_SIDE, IMAGE_SIDE)
# Standard file names (each also accepted with a .gz suffix) and their IDX magic numbers:
# 0x08 (unsigned bytes) then the number of dimensions.
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", 0x0803),
    "train_labels": ("train-labels-idx1-ubyte", 0x0801),
    "test_images": ("t10k-images-idx3-ubyte", 0x0803),
    "test_labels": ("t10k-labels-idx1-ubyte", 0x0801),
}
