"""`python -m src.predict`'s reading of user files: each bad input gets one clear line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from src.registry.predict import load_images


def _npz(tmp_path, images):
    path = tmp_path / "digits.npz"
    np.savez(path, images=images)
    return path


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 28, 28, 3), np.uint8), r"images of shape \(2, 28, 28, 3\); expected"),
        (np.zeros((2, 32, 32), np.uint8), r"images of shape \(2, 32, 32\); expected"),
        (
            np.full((2, 28, 28), 200.0, np.float32),
            r"float pixels from 200 to 200; expected \[0, 1\]",
        ),
        (np.zeros((2, 28, 28), np.int64), "images of type int64; expected uint8 or floats"),
        (np.zeros((0, 28, 28), np.uint8), r"images of shape \(0, 28, 28\)"),
    ],
)
def test_an_npz_that_is_not_grey_28x28_digits_is_refused(tmp_path, images, message):
    path = _npz(tmp_path, images)
    with pytest.raises(ValueError, match=f"{path}: {message}"):
        load_images([path])


def test_npz_pixels_are_read_as_0_255_bytes_or_0_1_floats(tmp_path):
    as_bytes, _ = load_images([_npz(tmp_path, np.full((1, 28, 28, 1), 255, np.uint8))])
    as_floats, _ = load_images([_npz(tmp_path, np.full((3, 28, 28), 1.0, np.float32))])
    assert as_bytes.shape == (1, 28, 28, 1) and as_floats.shape == (3, 28, 28, 1)
    assert as_bytes.max() == as_floats.max() == 1.0


def test_a_transparent_png_is_laid_on_white_paper(tmp_path):
    # Black ink on a transparent background, as drawing programs save it.
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[8:20, 13:15] = (0, 0, 0, 255)
    path = tmp_path / "ink.png"
    Image.fromarray(rgba, "RGBA").save(path)
    (pixels,), _ = load_images([path])
    assert pixels[10, 14, 0] == 1.0 and pixels[2, 2, 0] == 0.0  # light ink on dark, as MNIST


def test_an_image_of_another_size_is_padded_resized_and_warned_about(tmp_path, capsys):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((40, 80), np.uint8)).save(path)
    images, _ = load_images([path])
    assert images.shape == (1, 28, 28, 1)
    assert f"warning: {path} is 80x40: padded to a square" in capsys.readouterr().err


def test_a_decompression_bomb_is_refused_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(path)
    # Pillow refuses images above twice this many pixels; lowered, a 28x28 image is a bomb.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ValueError, match=f"{path}: too many pixels to read safely"):
        load_images([path])


def test_a_file_that_is_no_image_is_named(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(ValueError, match=f"{path}: not a readable image"):
        load_images([path])


def test_predict_from_a_store_that_does_not_exist_creates_none(tmp_path, monkeypatch, capsys):
    from src.registry.predict import main

    image = tmp_path / "digit.png"
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(image)
    database = tmp_path / "nowhere" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    assert main([str(image)]) == 2
    assert f"error: no MLflow store at {database}" in capsys.readouterr().err
    assert not database.exists() and not database.parent.exists()


def test_blank_images_are_told_from_drawn_ones():
    from src.registry.predict import is_blank

    assert is_blank(np.zeros((28, 28, 1))) and is_blank(np.full((28, 28, 1), 0.5))
    drawn = np.zeros((28, 28, 1))
    drawn[10:18, 14] = 1.0
    assert not is_blank(drawn)


def test_the_served_models_refusals_keep_their_own_message():
    """MLflow's scoring server rewrites a refusal's message to echo the whole request; the
    served model's refusals keep theirs (what is wrong, nothing else)."""
    from src.registry.serving import InputRefused, to_unit_range

    drawn = np.zeros((2, 28, 28, 1), np.float32)
    drawn[:, 10:18, 14] = 1.0
    assert to_unit_range(drawn * 255).max() == 1.0
    with pytest.raises(InputRefused) as refused:
        to_unit_range(np.concatenate([drawn, np.zeros_like(drawn[:1])]))
    error = refused.value
    error.message = f"Failed to predict data '{drawn.tolist()}'. \nError: {error.message}"
    assert error.message == "image 2 is blank (every pixel 0): nothing to classify"
    assert "Failed to predict" not in error.serialize_as_json()
    assert error.get_http_status_code() == 400


def test_serving_from_a_store_that_does_not_exist_creates_none(tmp_path, monkeypatch, capsys):
    """`make serve` against a store path that does not exist: one line, exit 2, no store."""
    from src.registry.server import main

    database = tmp_path / "nowhere" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    assert main(["-m", "models:/mnist-cnn@champion"]) == 2
    assert f"error: no MLflow store at {database}" in capsys.readouterr().err
    assert not database.exists() and not database.parent.exists()
