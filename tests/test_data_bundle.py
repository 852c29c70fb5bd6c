"""The bundled sample: its training digits are the ones bundled in earlier releases, its
test split is the official MNIST test set, and the build rebuilds it byte for byte."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from src.data.build_mnist_10k import NotOfficialMnist, bundle, check_official, write_npz
from src.data.mnist_format import official_mnist_mismatch
from src.data.sources import BUNDLED_PATH, BUNDLED_SHA256, read_idx_folder

# SHA-256 of the `images` then `labels` bytes of the bundle before it held the official
# test set (the first 10,000 official training digits, grouped by label).
EARLIER_TRAINING_DIGITS_SHA256 = "bc6b63550c8a82f6ecccd9458252069fb030ee802997b8242e71d5146b0cbf0e"


@pytest.fixture(scope="module")
def bundled():
    with np.load(BUNDLED_PATH) as archive:
        return {name: archive[name] for name in archive.files}


def test_training_digits_are_the_ones_bundled_so_far(bundled):
    digest = hashlib.sha256(bundled["images"].tobytes() + bundled["labels"].tobytes())
    assert digest.hexdigest() == EARLIER_TRAINING_DIGITS_SHA256


def test_test_split_is_the_official_test_set_byte_for_byte(bundled):
    test_only = {"test_images": bundled["test_images"], "test_labels": bundled["test_labels"]}
    assert official_mnist_mismatch(test_only) is None
    altered = {**test_only, "test_labels": test_only["test_labels"].copy()}
    altered["test_labels"][-1] = (altered["test_labels"][-1] + 1) % 10
    assert "t10k-labels-idx1-ubyte has MD5" in official_mnist_mismatch(altered)


def test_build_from_the_official_files_gives_the_bundled_bytes(official_mnist, tmp_path):
    official = read_idx_folder(official_mnist)
    check_official(official)
    rebuilt = tmp_path / "mnist_10k.npz"
    write_npz(rebuilt, **bundle(official))
    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == BUNDLED_SHA256
    assert np.array_equal(
        np.sort(bundle(official)["labels"]), np.sort(official["train_labels"][:10_000])
    )


def test_build_refuses_files_that_are_not_the_official_ones(official_mnist):
    official = read_idx_folder(official_mnist)
    altered = {**official, "test_labels": official["test_labels"].copy()}
    altered["test_labels"][0] = (altered["test_labels"][0] + 1) % 10
    with pytest.raises(NotOfficialMnist, match="t10k-labels-idx1-ubyte has MD5"):
        check_official(altered)
