"""How the champion holds up on damaged digits: accuracy on corrupted copies of test images.

Real digits come blurred, noisy, thick, thin, shifted and rotated (Mu and Gilmer's MNIST-C,
2019). Nine kinds of damage, in the spirit of MNIST-C, are made here with NumPy and SciPy
from a fixed seed, so that every run damages the same digits the same way. They are applied
to a stratified subset of the test split (`ROBUSTNESS_DIGITS`; the clean accuracy on that
same subset is reported beside them), which keeps the report under a tenth of the final
stage's time on 2 cores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import keras
import numpy as np
from scipy import ndimage

from src.data.dataset import Split, stratified_subset
from src.stats import accuracy_with_interval

# Test digits damaged per kind (stratified); the whole test split where it is smaller.
ROBUSTNESS_DIGITS = 2000
SEED = 0


def _noise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return images + rng.normal(0.0, 0.3, images.shape)


def _impulse(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    damaged = images.copy()
    draw = rng.random(images.shape)
    damaged[draw < 0.05] = 0.0
    damaged[draw > 0.95] = 1.0
    return damaged


def _blur(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return ndimage.gaussian_filter(images, sigma=(0, 1.0, 1.0, 0))


def _motion_blur(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return ndimage.uniform_filter1d(images, size=5, axis=2)


def _thick(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return ndimage.grey_dilation(images, size=(1, 2, 2, 1))


def _thin(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return ndimage.grey_erosion(images, size=(1, 2, 2, 1))


def _shift(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    moves = rng.choice([-3, 3], size=(len(images), 2))
    return np.stack(
        [
            ndimage.shift(image, (dy, dx, 0), order=0)
            for image, (dy, dx) in zip(images, moves, strict=True)
        ]
    )


def _rotate(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angles = rng.choice([-25.0, 25.0], size=len(images))
    return np.stack(
        [
            ndimage.rotate(image, angle, axes=(0, 1), reshape=False, order=1)
            for image, angle in zip(images, angles, strict=True)
        ]
    )


def _dim(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return images * 0.35


# Each kind of damage, as it is named in final.json, the model card and the final run.
CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _noise,
    "impulse_noise": _impulse,
    "gaussian_blur": _blur,
    "motion_blur": _motion_blur,
    "thick": _thick,
    "thin": _thin,
    "shift": _shift,
    "rotate": _rotate,
    "dim": _dim,
}


def corrupted(images: np.ndarray, kind: str, seed: int = SEED) -> np.ndarray:
    """``images`` (float32, [0, 1]) damaged by ``kind``, the same way for the same seed."""
    rng = np.random.default_rng([seed, list(CORRUPTIONS).index(kind)])
    return np.clip(CORRUPTIONS[kind](images, rng), 0.0, 1.0).astype("float32")


@dataclass
class Robustness:
    """Accuracy on each kind of damage, their mean, and the clean accuracy on the same digits."""

    digits: int
    clean: float
    accuracy: dict[str, float]
    mean: float

    def to_dict(self) -> dict:
        return asdict(self)


def robustness(model: keras.Model, test: Split, digits: int = ROBUSTNESS_DIGITS) -> Robustness:
    """Test ``model`` on every kind of damage to a stratified subset of ``test``."""
    test = Split(*stratified_subset(test.images, test.labels, digits, SEED))

    def accuracy(images: np.ndarray) -> float:
        predicted = model.predict(images, batch_size=512, verbose=0).argmax(axis=1)
        return accuracy_with_interval(int((predicted == test.labels).sum()), len(test)).value

    per_kind = {kind: round(accuracy(corrupted(test.images, kind)), 4) for kind in CORRUPTIONS}
    return Robustness(
        digits=len(test),
        clean=round(accuracy(test.images), 4),
        accuracy=per_kind,
        mean=round(float(np.mean(list(per_kind.values()))), 4),
    )
