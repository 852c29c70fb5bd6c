"""Data loaders: the bundled sample, IDX folders, full MNIST's offline fallback, bad files."""

from __future__ import annotations

import gzip
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from src.data import sources
from src.data.dataset import load_dataset
from src.data.sources import BUNDLED_PATH, read_idx
from src.errors import DataError

MNIST_10K = {
    "name": "mnist_10k",
    "path": None,
    "test_size": 1000,
    "split_seed": 0,
    "max_train_examples": None,
}
# Class counts of the first 10,000 official training digits, and of the official test set.
BUNDLED_CLASS_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
OFFICIAL_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_bundled_sample_splits_stratified_and_scaled():
    dataset = load_dataset(MNIST_10K, val_fraction=0.1)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (9000, 1000, 10000)
    all_labels = np.concatenate([dataset.train.labels, dataset.val.labels])
    assert np.bincount(all_labels).tolist() == BUNDLED_CLASS_COUNTS
    assert np.bincount(dataset.test.labels).tolist() == OFFICIAL_TEST_COUNTS
    # Stratified: each split holds every digit in the sample's proportions (within one digit).
    expected = np.array(BUNDLED_CLASS_COUNTS) / 10_000
    for split in (dataset.train, dataset.val):
        counts = np.bincount(split.labels, minlength=10)
        assert np.all(np.abs(counts - expected * len(split)) <= 1)
    assert dataset.train.images.shape[1:] == (28, 28, 1)
    assert dataset.train.images.dtype == np.float32
    assert dataset.train.images.min() == 0.0 and dataset.train.images.max() == 1.0
    assert dataset.name == "mnist_10k" and dataset.note is None
    assert dataset.num_classes == 10


def test_splits_depend_only_on_split_seed():
    first = load_dataset(MNIST_10K, val_fraction=0.1)
    again = load_dataset(MNIST_10K, val_fraction=0.1)
    other = load_dataset({**MNIST_10K, "split_seed": 1}, val_fraction=0.1)
    assert np.array_equal(first.val.images, again.val.images)
    assert np.array_equal(first.val.labels, again.val.labels)
    assert not np.array_equal(first.val.images, other.val.images)
    assert np.array_equal(first.test.images, other.test.images)  # the official test set
    assert first.digest == other.digest  # the digest is of the source, not the split


def test_max_train_examples_keeps_validation_and_test():
    dataset = load_dataset({**MNIST_10K, "max_train_examples": 300}, val_fraction=0.1)
    assert len(dataset.train) == 300
    assert (len(dataset.val), len(dataset.test)) == (1000, 10000)
    assert set(np.unique(dataset.train.labels)) == set(range(10))


def test_corrupt_bundled_file_is_detected(tmp_path, monkeypatch):
    damaged = tmp_path / "mnist_10k.npz"
    content = bytearray(BUNDLED_PATH.read_bytes())
    content[1000] ^= 0xFF
    damaged.write_bytes(bytes(content))
    monkeypatch.setattr(sources, "BUNDLED_PATH", damaged)
    with pytest.raises(DataError, match=r"is corrupt .*build_mnist_10k"):
        load_dataset(MNIST_10K, val_fraction=0.1)


def test_user_npz_without_the_expected_arrays_is_rejected(tmp_path):
    wrong = tmp_path / "digits.npz"
    np.savez(wrong, x=np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(DataError, match="`images` and `labels`"):
        load_dataset({**MNIST_10K, "path": str(wrong)}, val_fraction=0.1)


def test_fashion_mnist_idx_folder_loads(fashion_mnist):
    idx = {"name": "idx", "path": str(fashion_mnist), "split_seed": 0, "max_train_examples": None}
    dataset = load_dataset(idx, val_fraction=0.1)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (54000, 6000, 10000)
    assert dataset.num_classes == 10
    assert dataset.origin == str(fashion_mnist)


def _copy_idx_folder(source: Path, target: Path) -> Path:
    target.mkdir()
    for file in source.glob("*-ubyte.gz"):
        shutil.copy(file, target / file.name)
    return target


def test_truncated_idx_file_gives_a_clear_error(fashion_mnist, tmp_path):
    folder = _copy_idx_folder(fashion_mnist, tmp_path / "idx")
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    content = gzip.decompress(labels.read_bytes())
    labels.write_bytes(gzip.compress(content[:-100]))
    idx = {"name": "idx", "path": str(folder), "split_seed": 0, "max_train_examples": None}
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: header declares .* truncated"):
        load_dataset(idx, val_fraction=0.1)


def test_idx_file_of_the_wrong_kind_is_rejected(tmp_path):
    labels = tmp_path / "train-images-idx3-ubyte"
    labels.write_bytes((0x0801).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    with pytest.raises(DataError, match="magic number 0x00000801, expected 0x00000803"):
        read_idx(labels, 0x0803)


def test_corrupt_gzip_is_a_data_error(tmp_path):
    broken = tmp_path / "train-labels-idx1-ubyte.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="cannot be read"):
        read_idx(broken, 0x0801)


def test_missing_idx_file_is_named(fashion_mnist, tmp_path):
    folder = _copy_idx_folder(fashion_mnist, tmp_path / "idx")
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    idx = {"name": "idx", "path": str(folder), "split_seed": 0, "max_train_examples": None}
    with pytest.raises(DataError, match=r"no train-labels-idx1-ubyte\[.gz\]"):
        load_dataset(idx, val_fraction=0.1)


@pytest.fixture
def offline_keras_home(tmp_path, monkeypatch):
    """An empty Keras cache and a proxy that refuses, so full MNIST cannot be had."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for variable in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    yield tmp_path / "keras"
    # urllib caches its first opener with the proxies of that moment: drop it.
    urllib.request.install_opener(None)


MNIST = {
    "name": "mnist",
    "path": "mnist.npz",
    "download_timeout_s": 5,
    "split_seed": 0,
    "max_train_examples": None,
    "fallback": MNIST_10K,
}


def test_full_mnist_unavailable_falls_back_and_says_so(offline_keras_home, caplog):
    dataset = load_dataset(MNIST, val_fraction=0.1)
    assert dataset.name == "mnist_10k"
    assert "full MNIST unavailable" in dataset.note
    assert dataset.describe()["note"] == dataset.note
    assert any("bundled 10,000-digit sample" in r.getMessage() for r in caplog.records)
    assert not list(offline_keras_home.rglob("mnist.npz"))  # no half-downloaded file left


def test_full_mnist_without_fallback_is_a_clear_error(offline_keras_home):
    with pytest.raises(DataError, match=r"full MNIST is unavailable .* data=mnist_10k"):
        load_dataset({**MNIST, "fallback": None}, val_fraction=0.1)


def test_full_mnist_reads_a_local_folder_of_official_files_first(
    official_mnist, monkeypatch, tmp_path
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras-cache"))
    dataset = load_dataset(
        {**MNIST, "fallback": None, "idx_folder": str(official_mnist)}, val_fraction=0.1
    )
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (54000, 6000, 10000)
    assert dataset.name == "mnist" and dataset.note is None
    assert dataset.origin == str(official_mnist.resolve())
    bundled = load_dataset(MNIST_10K, val_fraction=0.1)
    assert dataset.test_digest == bundled.test_digest  # the same official test digits


def test_full_mnist_refuses_a_local_folder_that_is_not_official_mnist(fashion_mnist):
    with pytest.raises(DataError, match=r"data.idx_folder=.*not the official file's"):
        load_dataset({**MNIST, "idx_folder": str(fashion_mnist)}, val_fraction=0.1)


@pytest.mark.parametrize(
    ("labels", "error"),
    [
        (np.full(20, 12, np.uint8), "label 12 found; labels must be classes 0-9"),
        (np.zeros(0, np.uint8), "holds no images"),
    ],
)
def test_labels_outside_the_classes_or_an_empty_file_are_refused_naming_it(tmp_path, labels, error):
    wrong = tmp_path / "digits.npz"
    np.savez(wrong, images=np.zeros((len(labels), 28, 28), np.uint8), labels=labels)
    with pytest.raises(DataError, match=f"{wrong}: {error}"):
        load_dataset({**MNIST_10K, "path": str(wrong)}, val_fraction=0.1)


def test_max_test_examples_scores_a_stratified_subset_with_its_own_digest():
    """Smoke runs and tests score a few hundred test digits; the subset's digest differs from
    the full test set's, so the registry never compares a model across the two."""
    full = load_dataset(MNIST_10K, 0.1)
    cfg = {**MNIST_10K, "max_test_examples": 500}
    subset = load_dataset(cfg, 0.1)
    assert len(subset.test) == 500 and len(subset.train) == len(full.train)
    counts = np.bincount(subset.test.labels, minlength=10)
    assert counts.min() >= 40  # every digit is represented (stratified)
    assert subset.test_digest != full.test_digest
    assert load_dataset(cfg, 0.1).test_digest == subset.test_digest  # same seed, same digits
