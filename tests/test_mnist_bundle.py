"""The bundled sample: its training digits are the ones bundled in earlier releases, its
test split is the official MNIST test set, and the build rebuilds it byte for byte."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from helpers import REPO_ROOT

from src.data import BUNDLED_PATH, BUNDLED_SHA256, DataError, load_dataset, read_idx_folder
from src.datasets.build_mnist_10k import NotOfficialMnist, bundle, check_official, write_npz
from src.mnist_format import official_mnist_mismatch

# SHA-256 of the `images` then `labels` bytes of the bundle before it held the official
# test set (the first 10,000 official training digits, grouped by label).
EARLIER_TRAINING_DIGITS_SHA256 = "bc6b63550c8a82f6ecccd9458252069fb030ee802997b8242e71d5146b0cbf0e"
SHARED_MNIST = REPO_ROOT.parent / "shared" / "datasets" / "mnist"


@pytest.fixture(scope="module")
def bundled():
    with np.load(BUNDLED_PATH) as archive:
        return {name: archive[name] for name in archive.files}


@pytest.fixture(scope="module")
def official():
    """The official files from ../shared (CI has them; a user's clone does not)."""
    if not SHARED_MNIST.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_MNIST} is missing in CI")
        pytest.skip(f"no official MNIST files at {SHARED_MNIST} (only the project's CI has them)")
    return read_idx_folder(SHARED_MNIST)


def test_training_digits_are_the_ones_bundled_so_far(bundled):
    digest = hashlib.sha256(bundled["images"].tobytes() + bundled["labels"].tobytes())
    assert digest.hexdigest() == EARLIER_TRAINING_DIGITS_SHA256


def test_test_split_is_the_official_test_set_byte_for_byte(bundled):
    arrays = {
        "train_images": np.zeros((0, 28, 28), np.uint8),  # checked by the next test
        "train_labels": np.zeros(0, np.uint8),
        "test_images": bundled["test_images"],
        "test_labels": bundled["test_labels"],
    }
    mismatch = official_mnist_mismatch(arrays)
    assert mismatch is not None and mismatch.startswith("train-images")  # the test files pass
    assert len(bundled["test_labels"]) == 10_000


def test_build_from_the_official_files_gives_the_bundled_bytes(official, tmp_path):
    check_official(official)
    rebuilt = tmp_path / "mnist_10k.npz"
    write_npz(rebuilt, **bundle(official))
    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == BUNDLED_SHA256
    assert np.array_equal(
        np.sort(bundle(official)["labels"]), np.sort(official["train_labels"][:10_000])
    )


def test_build_refuses_files_that_are_not_the_official_ones(official):
    altered = {**official, "test_labels": official["test_labels"].copy()}
    altered["test_labels"][0] = (altered["test_labels"][0] + 1) % 10
    with pytest.raises(NotOfficialMnist, match="t10k-labels-idx1-ubyte has MD5"):
        check_official(altered)


MNIST = {
    "name": "mnist",
    "path": "mnist.npz",
    "download_timeout_s": 5,
    "split_seed": 0,
    "max_train_examples": None,
    "fallback": None,
}


def test_full_mnist_reads_a_local_folder_of_official_files_first(official, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras-cache"))
    dataset = load_dataset({**MNIST, "idx_folder": str(SHARED_MNIST)}, val_fraction=0.1)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (54000, 6000, 10000)
    assert dataset.name == "mnist" and dataset.note is None
    assert dataset.origin == str(SHARED_MNIST.resolve())
    bundled = load_dataset(
        {
            "name": "mnist_10k",
            "path": None,
            "test_size": 1000,
            "split_seed": 0,
            "max_train_examples": None,
        },
        val_fraction=0.1,
    )
    assert dataset.test_digest == bundled.test_digest  # the same official test digits


def test_full_mnist_refuses_a_local_folder_that_is_not_official_mnist(fashion_mnist):
    with pytest.raises(DataError, match=r"data.idx_folder=.*not the official file's"):
        load_dataset({**MNIST, "idx_folder": str(fashion_mnist)}, val_fraction=0.1)
