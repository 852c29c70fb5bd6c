"""Classify digits with a registered model (the champion by default).

    python -m src.predict digit.png other.png          # PNG (or any image Pillow reads)
    python -m src.predict digits.npz                   # an .npz with `images` (N, 28, 28)
    python -m src.predict scans/                       # every image and .npz in a folder
    python -m src.predict digit.png --model models:/mnist-cnn@challenger

Images are converted to 28x28 grey levels; a dark digit on a light background is inverted
to MNIST's white on black. The model and the store are the project's defaults from ``conf/``
(``final.model_name``'s champion; ``mlflow.tracking_uri``, which ``MLFLOW_TRACKING_URI``
overrides).

A file that cannot be read is listed on stderr and the others are still answered (exit 1
then). A blank image (every pixel the same grey: nothing drawn) gets no label: its line
reads ``blank`` with a warning, since any answer would be a guess. An animated image is
classified on its first frame, with a warning.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from src.data.mnist_format import IMAGE_SIDE as SIDE

# The suffixes a folder's files are read for (what Pillow reads, and .npz archives).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".npz")
# Pixels in [0, 1] closer than this to one grey level everywhere: nothing is drawn.
BLANK_SPREAD = 1 / 255


def expand_folders(paths: list[Path]) -> list[Path]:
    """Each folder replaced by its image files and .npz archives, in name order.

    Raises:
        ValueError: a path that does not exist, or a folder holding no such file.
    """
    files = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise ValueError(f"{path}: a folder with no image or .npz file")
            files.extend(inside)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"no such file: {path}")
    return files


def is_blank(image: np.ndarray) -> bool:
    """Every pixel of ``image`` (in [0, 1]) the same grey: nothing to classify."""
    return float(image.max() - image.min()) < BLANK_SPREAD


def load_images(paths: list[Path]) -> tuple[np.ndarray, list[str]]:
    """Read image files and .npz archives into float32 ``(N, 28, 28, 1)`` in [0, 1].

    An .npz holds ``images`` of shape (N, 28, 28) or (N, 28, 28, 1): uint8 0-255, or
    floats in [0, 1]. An image file of another size is padded to a square (keeping its
    aspect) and resized, with a warning; transparency is laid on white paper first.

    Returns:
        The images and a name for each (the file, with an index inside an .npz).

    Raises:
        ValueError: a file that is not an image, or an .npz whose ``images`` are not
            grey 28x28 digits in one of those ranges; the message names the file.
    """
    images, names = [], []
    for path in paths:
        if path.suffix == ".npz":
            batch = _read_npz(path)
            images.extend(batch)
            names.extend(f"{path}[{i}]" for i in range(len(batch)))
        else:
            images.append(_read_image(path))
            names.append(str(path))
    return np.stack(images)[..., np.newaxis], names


def _read_npz(path: Path) -> np.ndarray:
    expected = f"`images` of shape (N, {SIDE}, {SIDE}) or (N, {SIDE}, {SIDE}, 1)"
    try:
        with np.load(path, allow_pickle=False) as archive:
            images = archive.get("images")
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npz ({error})") from None
    if images is None:
        raise ValueError(f"{path}: expected an array {expected}")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or len(images) == 0:
        raise ValueError(f"{path}: images of shape {images.shape}; expected {expected}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{path}: images of type {images.dtype}; expected uint8 or floats")
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError(
            f"{path}: float pixels from {images.min():g} to {images.max():g}; expected [0, 1] "
            "(or uint8 0-255)"
        )
    return images.astype(np.float32)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                print(
                    f"warning: {path} has {frames} frames: its first is classified",
                    file=sys.stderr,
                )
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                # Transparent pixels are the paper: lay the image on white before greying.
                paper = Image.new("RGBA", image.size, "white")
                image = Image.alpha_composite(paper, image.convert("RGBA"))
            grey = image.convert("L")
    except Image.DecompressionBombError:
        raise ValueError(
            f"{path}: too many pixels to read safely (a decompression bomb?)"
        ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None
    if grey.size != (SIDE, SIDE):
        print(
            f"warning: {path} is {grey.size[0]}x{grey.size[1]}: padded to a square and "
            f"resized to {SIDE}x{SIDE}",
            file=sys.stderr,
        )
        paper = int(np.median(np.asarray(grey)[[0, -1], :]))  # the border's grey level
        grey = ImageOps.pad(grey, (SIDE, SIDE), Image.Resampling.LANCZOS, color=paper)
    pixels = np.asarray(grey, dtype=np.float32) / 255.0
    if pixels.mean() > 0.5:  # dark ink on light paper: MNIST is light on dark
        pixels = 1.0 - pixels
    return pixels


def main(argv: list[str] | None = None) -> int:
    """Print one line per digit: the name, the predicted label and its probability."""
    from src.config.compose import compose_config
    from src.registry.versions import champion_uri

    defaults = compose_config()
    default_model = champion_uri(defaults.final.model_name)
    parser = argparse.ArgumentParser(description="Classify digits with a registered model.")
    parser.add_argument("files", nargs="+", type=Path, help="image files or .npz archives")
    parser.add_argument("--model", default=default_model, help=f"model URI ({default_model})")
    args = parser.parse_args(argv)
    try:
        files = expand_folders(args.files)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    readable, unreadable = [], []
    for path in files:  # one bad file does not cost the others their answers
        try:
            readable.append(load_images([path]))
        except ValueError as error:
            unreadable.append(str(error))
    for error in unreadable:
        print(f"error: {error}", file=sys.stderr)
    if not readable:
        return 2
    images = np.concatenate([batch for batch, _ in readable])
    names = [name for _, batch_names in readable for name in batch_names]

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import mlflow

    from src.tracking.store import use_model_store

    keras.config.disable_interactive_logging()  # no progress bar in the middle of the output

    missing = use_model_store(str(defaults.mlflow.tracking_uri), args.model)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    try:
        model = mlflow.pyfunc.load_model(args.model)
    except mlflow.exceptions.MlflowException as error:
        print(f"error: cannot load {args.model}: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    blank = np.array([is_blank(image) for image in images])
    # Blank images are not sent: the served model refuses them too (src.registry.serving).
    drawn = iter(np.asarray(model.predict(images[~blank])) if (~blank).any() else [])
    for name, is_empty in zip(names, blank, strict=True):
        if is_empty:
            print(
                f"warning: {name} is blank (every pixel the same grey): no label", file=sys.stderr
            )
            print(f"{name}\tblank\t-")
        else:
            row = next(drawn)
            print(f"{name}\t{int(row.argmax())}\t{row.max():.3f}")
    if unreadable:
        print(
            f"error: {len(unreadable)} of {len(files)} file(s) could not be read", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
