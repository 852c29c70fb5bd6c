"""The final stage: retraining, testing, registration with aliases, loading and serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    REPO_ROOT,
    TINY_OVERRIDES,
    compose_config,
    http_service,
    loopback,
    sqlite_uri,
)
from mlflow import MlflowClient
from PIL import Image

from src.data.dataset import load_dataset
from src.pipeline import run_pipeline
from src.registry.versions import load_version
from src.stats import unpacked_bits

MODEL = "mnist-cnn"


def search_and_finalize(cfg):
    """A tracked tiny search followed by its final stage, as `python -m src.run` does."""
    result = run_pipeline(cfg)
    return result.search, result.final


def config(folder, *overrides):
    store = [
        f"mlflow.tracking_uri={sqlite_uri(folder)}",
        f"mlflow.artifact_location={folder / 'artifacts'}",
    ]
    return compose_config(
        [*TINY_OVERRIDES, *store, "tuner.max_trials=1", *overrides],
        output_dir=folder / f"run{len(list(folder.glob('run*')))}",
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """One store with three registered versions: weak, strong, strong again (a tie)."""
    folder = tmp_path_factory.mktemp("registry")
    weak = ("data.max_train_examples=20", "final.epochs=1")
    strong = ("data.max_train_examples=600", "final.epochs=3")
    finals = [
        search_and_finalize(config(folder, *overrides))[1] for overrides in (weak, strong, strong)
    ]
    return folder, finals


def test_versions_get_challenger_and_champion_only_when_better(registry):
    folder, (first, second, tie) = registry
    client = MlflowClient(sqlite_uri(folder))
    assert [f.model_version for f in (first, second, tie)] == ["1", "2", "3"]
    assert first.promoted and first.champion_accuracy is None
    assert second.test_accuracy > first.test_accuracy
    assert second.promoted
    assert second.champion_accuracy == first.test_accuracy  # counted the same way, exactly
    assert tie.test_accuracy == second.test_accuracy and not tie.promoted  # a tie is no win
    assert tie.champion_accuracy == second.test_accuracy
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "3"
    final_run = client.get_run(tie.run_id)
    assert final_run.data.tags["registry.promoted"] == "false"
    assert "stays behind champion version 2" in final_run.data.tags["registry.decision"]
    assert final_run.data.metrics["test_accuracy"] == pytest.approx(tie.test_accuracy)
    assert final_run.data.metrics["champion_test_accuracy"] == pytest.approx(second.test_accuracy)
    parent = client.get_run(final_run.data.tags["mlflow.parentRunId"])
    assert parent.data.metrics["test_accuracy"] == pytest.approx(tie.test_accuracy)
    assert len(final_run.data.params) > 0 and "final_epochs" in final_run.data.params


def test_figures_and_model_card_are_written_and_logged(registry):
    folder, (first, *_) = registry
    final_dir = folder / "run0" / "final"
    expected = [
        "learning_curves.png",
        "confusion_matrix.png",
        "worst_misclassified.png",
        "trial_scores.png",
        "model_card.md",
        "final.json",
    ]
    for name in expected:
        assert (final_dir / name).stat().st_size > 0, name
        if name.endswith(".png"):
            with Image.open(final_dir / name) as image:
                assert image.size[0] > 300
    card = (final_dir / "model_card.md").read_text()
    assert f"{first.test_accuracy:.4f}" in card and "models:/mnist-cnn/1" in card
    logged = {a.path for a in MlflowClient(sqlite_uri(folder)).list_artifacts(first.run_id)}
    assert set(expected) | {"model"} <= logged
    summary = json.loads((final_dir / "final.json").read_text())
    assert summary["test_accuracy"] == pytest.approx(first.test_accuracy)
    assert len(summary["per_class_accuracy"]) == 10
    # Per test digit, as packed bits: the errors recompute from them.
    right = unpacked_bits(summary["test_right_bits"], summary["test_size"])
    assert summary["test_size"] - right.sum() == summary["test_errors"]
    assert summary["evaluated_on"] == "test"
    # What the champion costs to serve: in final.json, the model card and the final run.
    cost = summary["cost"]
    assert cost["params"] > 0 and cost["latency_ms"] > 0
    assert "## Cost" in card and f"{cost['params']:,} parameters" in card
    run = MlflowClient(sqlite_uri(folder)).get_run(first.run_id)
    assert run.data.metrics["cost_params"] == cost["params"]
    # How it holds up on damaged digits: nine kinds, in all three places.
    damaged = summary["robustness"]
    assert len(damaged["accuracy"]) >= 8 and 0 <= damaged["mean"] <= 1
    assert "## Damaged digits" in card and "| rotate |" in card
    assert run.data.metrics["corrupted_accuracy_mean"] == pytest.approx(damaged["mean"])
    assert summary["parts_s"]["robustness"] < summary["wall_time_s"]


def _subprocess_env(folder):
    # `mlflow models serve` starts uvicorn by name: the environment's bin/ must be on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "MLFLOW_TRACKING_URI": sqlite_uri(folder),
        "PATH": path,
    }


@pytest.mark.slow
def test_champion_loads_in_a_fresh_process_with_pyfunc_and_keras(registry):
    folder, _ = registry
    code = """
import numpy as np, mlflow
images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
pyfunc = np.asarray(mlflow.pyfunc.load_model("models:/mnist-cnn@champion").predict(images))
keras_model = mlflow.keras.load_model("models:/mnist-cnn@champion")
direct = keras_model.predict(images, verbose=0)
print(pyfunc.shape, pyfunc.dtype, direct.shape, bool(np.allclose(pyfunc, direct, atol=1e-6)))
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_subprocess_env(folder),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "(4, 10) float32 (4, 10) True"


def _test_digits(count):
    data_cfg = {
        "name": "mnist_10k",
        "path": None,
        "test_size": 1000,
        "split_seed": 0,
        "max_train_examples": None,
    }
    test = load_dataset(data_cfg, val_fraction=0.1).test
    return test.images[:count], test.labels[:count]


@pytest.mark.slow
def test_serving_answers_invocations_on_loopback(registry):
    """`make serve` (`src.registry.server`: MLflow's scoring app) answers on loopback, and
    every refusal names what was wrong and nothing else."""
    folder, _ = registry
    images, _ = _test_digits(4)
    command = [
        sys.executable,
        "-m",
        "src.registry.server",
        "-m",
        "models:/mnist-cnn@champion",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]

    def invoke(url, pixels, body=None, content_type="application/json"):
        request = urllib.request.Request(
            f"{url}/invocations",
            data=body or json.dumps({"inputs": pixels.tolist()}).encode(),
            headers={"Content-Type": content_type},
        )
        try:
            with loopback.open(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    with http_service(command, "/ping", _subprocess_env(folder)) as url:
        status, served = invoke(url, images)
        # Raw 0-255 pixels (what an image file holds) are rescaled by the served model...
        raw_status, raw = invoke(url, np.round(images * 255))
        # ...and pixels in neither range get a 400 that says what was wrong.
        bad_status, bad = invoke(url, images * 300)
        # A blank image (all black) gets a 400 too: any label would be a guess.
        blank_status, blank = invoke(url, np.concatenate([images[:1], np.zeros_like(images[:1])]))
        # MLflow's own refusals, before the model's code runs: another shape than the
        # signature's, and a body that is no CSV. MLflow echoed the request (and a trace).
        shape_status, shape = invoke(url, images.squeeze(-1))
        csv_status, csv = invoke(url, None, b'a,b\n1,2,3,4\n"', "text/csv")
    for reply in (shape, csv):
        assert "stack_trace" not in reply and len(json.dumps(reply)) < 400, reply
    assert shape_status == 400 and shape["message"] == (
        "the request does not fit the model's input signature: Shape of input (4, 28, 28) "
        "does not match expected shape (-1, 28, 28, 1)."
    )
    assert csv_status == 400 and csv["message"].startswith("Failed to parse input")
    champion = MlflowClient(sqlite_uri(folder)).get_model_version_by_alias(MODEL, "champion")
    model = load_version(sqlite_uri(folder), MODEL, champion.version)
    local = model.predict(images, verbose=0)
    served = np.asarray(served["predictions"])
    assert status == 200 and served.shape == (4, 10)
    assert served.argmax(axis=1).tolist() == local.argmax(axis=1).tolist()
    assert raw_status == 200
    assert np.asarray(raw["predictions"]).argmax(axis=1).tolist() == local.argmax(axis=1).tolist()
    # The reply names what was wrong and nothing else: no echo of the request, no trace.
    assert bad_status == 400 and bad["message"] == (
        "image 0: pixels from 0 to 300; expected floats in [0, 1] or raw pixels in [0, 255]"
    )
    assert "stack_trace" not in bad and len(json.dumps(bad)) < 400
    assert blank_status == 400
    assert blank["message"] == "image 1 is blank (every pixel 0): nothing to classify"


@pytest.mark.slow
def _predict(folder, *args, cwd=None, timeout=180):
    """`python -m src.predict ARGS` against the registry fixture's store."""
    return subprocess.run(
        [sys.executable, "-m", "src.predict", *map(str, args)],
        env=_subprocess_env(folder),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def test_predict_cli_classifies_png_and_npz(registry, tmp_path):
    folder, _ = registry
    images, _ = _test_digits(3)
    png = tmp_path / "digit.png"
    Image.fromarray((images[0].squeeze() * 255).astype(np.uint8)).save(png)
    npz = tmp_path / "digits.npz"
    np.savez(npz, images=(images.squeeze(-1) * 255).astype(np.uint8))
    result = subprocess.run(
        [sys.executable, "-m", "src.predict", str(png), str(npz)],
        env=_subprocess_env(folder),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert [name for name, _, _ in lines] == [str(png)] + [f"{npz}[{i}]" for i in range(3)]
    assert all(0 <= int(label) <= 9 and 0 < float(p) <= 1 for _, label, p in lines)
    assert lines[0][1] == lines[1][1]  # the same digit as PNG and in the archive
    # What the champion itself says of those digits, label and probability.
    champion = MlflowClient(sqlite_uri(folder)).get_model_version_by_alias(MODEL, "champion")
    expected = load_version(sqlite_uri(folder), MODEL, champion.version).predict(images, verbose=0)
    assert [int(label) for _, label, _ in lines[1:]] == expected.argmax(axis=1).tolist()
    assert [float(p) for _, _, p in lines[1:]] == pytest.approx(expected.max(axis=1), abs=2e-3)

    bad = subprocess.run(
        [sys.executable, "-m", "src.predict", str(tmp_path / "none.png")],
        env=_subprocess_env(folder),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.strip() == f"error: no such file: {tmp_path}/none.png"


@pytest.mark.slow
def test_predict_cli_answers_a_folder_flags_blank_images_and_lists_bad_files(registry, tmp_path):
    """A folder is read whole; a blank image gets no label; an animated one is read on its
    first frame; an unreadable file is listed while the others are answered (exit 1)."""
    folder, _ = registry
    images, _ = _test_digits(2)
    scans = tmp_path / "scans"
    scans.mkdir()
    digit = (images[0].squeeze() * 255).astype(np.uint8)
    Image.fromarray(digit).save(scans / "a_digit.png")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(scans / "b_black.png")
    Image.fromarray(np.full((1, 1), 128, np.uint8)).save(scans / "c_one_pixel.png")
    frames = [Image.fromarray(digit), Image.fromarray(255 - digit)]
    frames[0].save(scans / "d_animated.gif", save_all=True, append_images=frames[1:])
    (scans / "e_broken.png").write_text("not an image")
    (scans / "notes.txt").write_text("not read: not an image suffix")
    result = _predict(folder, scans, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = {
        name: (label, p)
        for name, label, p in (line.split("\t") for line in result.stdout.splitlines())
    }
    assert sorted(Path(name).name for name in lines) == [
        "a_digit.png", "b_black.png", "c_one_pixel.png", "d_animated.gif"
    ]  # fmt: skip
    assert lines[str(scans / "b_black.png")] == ("blank", "-")
    assert lines[str(scans / "c_one_pixel.png")] == ("blank", "-")
    assert lines[str(scans / "d_animated.gif")][0] == lines[str(scans / "a_digit.png")][0]
    assert f"{scans / 'd_animated.gif'} has 2 frames: its first is classified" in result.stderr
    assert f"{scans / 'b_black.png'} is blank" in result.stderr
    assert f"error: {scans / 'e_broken.png'}: not a readable image" in result.stderr
    assert "1 of 5 file(s) could not be read" in result.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = _predict(folder, empty, timeout=60)
    assert nothing.returncode == 2
    assert nothing.stderr.strip() == f"error: {empty}: a folder with no image or .npz file"


# -- promotion rules, on a real registry with scores given directly --------------------------
def _register_version(client, name):
    from src.registry.versions import register

    return register(client, name, "file:///nowhere/model", run_id=None)


def _right(correct, total=1000, offset=0):
    """A per-digit mask with `correct` digits right, starting at `offset` (wrapping)."""
    mask = np.zeros(total, bool)
    mask[(np.arange(correct) + offset) % total] = True
    return mask


def _promote(client, right, digest="official", rule="significant", masks=None):
    from src.registry.promote import promote
    from src.stats import accuracy_with_interval

    version = _register_version(client, MODEL)
    masks = {} if masks is None else masks
    masks[version] = right
    accuracy = accuracy_with_interval(int(right.sum()), len(right))
    return promote(client, MODEL, version, accuracy, right, digest, masks.get, rule=rule)


def test_promotion_rules_compare_on_the_same_digits_only(tmp_path):
    client = MlflowClient(sqlite_uri(tmp_path))
    masks: dict = {}
    first = _promote(client, _right(950), masks=masks)
    assert first.promoted and "first champion" in first.decision
    # 5 digits better: right, but not significant (p ~ 0.06) under the default rule...
    slightly = _promote(client, _right(955), masks=masks)
    assert not slightly.promoted and "may be chance" in slightly.decision
    assert slightly.comparison.only_challenger_right == 5
    assert slightly.comparison.only_champion_right == 0
    # ...and enough under `better`.
    assert _promote(client, _right(955), rule="better", masks=masks).promoted
    # A tie is no win, under either rule.
    assert not _promote(client, _right(955), rule="better", masks=masks).promoted
    # Much better on the same digits: significant.
    clearly = _promote(client, _right(990), masks=masks)
    assert clearly.promoted and clearly.comparison.p_value < 1e-6
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    assert champion == clearly.model_version
    # Tested on other digits (another dataset): never compared, never champion.
    other = _promote(client, _right(1000), digest="fashion-mnist", masks=masks)
    assert not other.promoted and "other digits" in other.decision
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == champion
    challenger = client.get_model_version_by_alias(MODEL, "challenger")
    assert str(challenger.version) == other.model_version


def test_a_versions_test_digits_travel_in_a_tag_and_damage_reads_as_none():
    from src.registry.versions import decoded_right, encoded_right

    rng = np.random.default_rng(0)
    for digits in (10_000, 1_001):
        right = rng.random(digits) < 0.99
        value = encoded_right(right)
        assert len(value) <= 5000  # fits every store's registry tags, even random bits
        assert np.array_equal(decoded_right(value, digits), right)
        assert decoded_right(value, digits + 1) is None  # another split's
    worst = encoded_right(rng.random(10_000) < 0.5)
    assert worst is not None and len(worst) < 1700
    assert encoded_right(rng.random(60_000) < 0.5) is None  # too long for a tag: not kept
    value = encoded_right(np.ones(100, bool))
    count, _, packed = value.partition(":")
    for damaged in (None, "", "100", "x:" + packed, f"{count}:{packed[:-4]}", f"{count}:!!"):
        assert decoded_right(damaged, 100) is None, damaged


def test_a_tagged_champion_is_compared_without_loading_it_and_an_untagged_one_is_loaded(
    tmp_path, monkeypatch
):
    """The digits a version got right are tagged when it is registered; a later challenger
    is compared with them instead of loading and re-running the champion (6.2 s of the 12
    s a budget keeps after training, for a three-model ensemble on 2 cores). A champion
    registered before the tag existed is loaded and re-run, as before."""
    import src.final.register as register_module
    from src.registry.versions import TEST_RIGHT_TAG, decoded_right

    weak = ("data.max_train_examples=20", "final.epochs=1")
    first = search_and_finalize(config(tmp_path, *weak))[1]
    client = MlflowClient(sqlite_uri(tmp_path))
    tag = client.get_model_version(MODEL, first.model_version).tags[TEST_RIGHT_TAG]
    recorded = decoded_right(tag, first.test_size)
    assert int((~recorded).sum()) == first.test_errors

    loaded = []
    real_load = register_module.load_version

    def load_version(*args):
        loaded.append(args[-1])
        return real_load(*args)

    monkeypatch.setattr(register_module, "load_version", load_version)
    second = search_and_finalize(config(tmp_path, *weak))[1]
    assert loaded == [] and second.champion_version == first.model_version
    assert second.champion_accuracy == first.test_accuracy

    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    client.delete_model_version_tag(MODEL, champion, TEST_RIGHT_TAG)
    third = search_and_finalize(config(tmp_path, *weak))[1]
    assert loaded == [champion] and third.champion_version == champion
    held = next(f for f in (first, second) if f.model_version == champion)
    assert third.champion_accuracy == held.test_accuracy  # re-run, the same digits right


@pytest.mark.parametrize("locked", [True, False])
@pytest.mark.parametrize("stronger_first", [True, False])
def test_two_final_stages_promoting_at_once_leave_the_better_one_champion(
    tmp_path, monkeypatch, stronger_first, locked
):
    """Two challengers that both beat the champion decide at the same time. Without the
    promotion lock both read the old champion and, when the weaker one's comparison ends
    last, it sets the alias last, in either order of starting. Each comparison waits for the
    other to have read the champion too (a short wait where the lock should keep it out),
    and the weaker then ends only once the stronger is champion: that interleaving, certain
    rather than left to timing, shows the race in the unlocked cases and would break the
    locked ones if the lock failed. With the lock the second to decide compares against the
    first's verdict and the stronger wins."""
    import threading
    from contextlib import nullcontext

    import src.registry.promote as promote_module
    from src.registry.promote import promote
    from src.registry.versions import TEST_RIGHT_TAG
    from src.stats import accuracy_with_interval

    if not locked:
        monkeypatch.setattr(promote_module, "promotion_lock", lambda *args: nullcontext())
    uri = sqlite_uri(tmp_path)
    client = MlflowClient(uri)
    masks = {}
    _promote(client, _right(900), masks=masks)  # version 1: the champion
    # Untagged, as before the tag existed, so that each comparison calls champion_right.
    client.delete_model_version_tag(MODEL, "1", TEST_RIGHT_TAG)
    strong, weak = _register_version(client, MODEL), _register_version(client, MODEL)
    masks.update({strong: _right(990), weak: _right(960)})
    both_read_the_champion = threading.Barrier(2)

    def strong_is_champion() -> bool:
        return str(client.get_model_version_by_alias(MODEL, "champion").version) == strong

    def decide(version, start_after_s):
        time.sleep(start_after_s)
        right = masks[version]
        accuracy = accuracy_with_interval(int(right.sum()), len(right))

        def champion_right(champion_version):
            try:
                both_read_the_champion.wait(timeout=60 if not locked else 3)
            except threading.BrokenBarrierError:
                return masks[champion_version]  # the lock kept the other out: no race
            deadline = time.monotonic() + 60
            while version == weak and not strong_is_champion():
                assert time.monotonic() < deadline, "the stronger never became champion"
                time.sleep(0.05)
            return masks[champion_version]

        return promote(
            MlflowClient(uri), MODEL, version, accuracy, right, "official", champion_right
        )

    first, second = (strong, weak) if stronger_first else (weak, strong)
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(decide, [first, second], [0.0, 0.1]))
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == (strong if locked else weak), [o.decision for o in outcomes]
    names = [m.name for m in client.search_registered_models()]
    assert names == [MODEL]  # the lock is gone


def test_the_promotion_lock_excludes_and_survives_release_races(tmp_path):
    """Four threads take and release the lock in quick turns on one SQLite store. A lock
    released between MLflow's failed insert and its lookup of the taken name reads as
    "does not exist"; that must mean "try again", never an error, and no two threads may
    ever hold the lock at once."""
    import threading

    from src.registry.lock import promotion_lock

    uri = sqlite_uri(tmp_path)
    MlflowClient(uri).search_registered_models()  # create the store once, before the threads
    holders, most_at_once, guard = [0], [0], threading.Lock()

    def take_turns(_: int) -> None:
        client = MlflowClient(uri)
        for _turn in range(60):
            with promotion_lock(client, MODEL, timeout_s=60, poll_s=0.001):
                with guard:
                    holders[0] += 1
                    most_at_once[0] = max(most_at_once[0], holders[0])
                with guard:
                    holders[0] -= 1

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(take_turns, range(4)))  # re-raises any thread's error
    assert most_at_once[0] == 1
    assert MlflowClient(uri).search_registered_models() == []


def test_only_a_missing_alias_counts_as_no_champion(tmp_path, monkeypatch):
    """A store that cannot answer is an error, never "no champion, promote without
    comparing"."""
    from mlflow.exceptions import MlflowException

    from src.registry.versions import current_champion
    from src.scaleout.process import free_port

    client = MlflowClient(sqlite_uri(tmp_path))
    _register_version(client, MODEL)
    assert current_champion(client, MODEL) is None  # registered, never promoted
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    unreachable = MlflowClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(MlflowException):
        current_champion(unreachable, MODEL)


def test_a_refusal_keeps_what_was_wrong_and_drops_the_echoed_request():
    """MLflow's replies as its scoring server writes them, made plain (`make serve`)."""
    from src.registry.server import MAX_MESSAGE, plain_refusal

    pixels = "[[[0.0, 0.1], [0.2, 0.3]]]" * 500
    echoed = {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": f"Failed to predict data '{pixels}'. \nError: Failed to enforce schema of "
        f"data '{pixels}' with schema '['float32' (-1, 28, 28, 1)]'. Error: Shape of input "
        "(4, 28, 28) does not match expected shape (-1, 28, 28, 1).",
        "stack_trace": "Traceback (most recent call last): ...",
    }
    assert plain_refusal(echoed) == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "the request does not fit the model's input signature: Shape of input "
        "(4, 28, 28) does not match expected shape (-1, 28, 28, 1).",
    }
    ours = {"error_code": "INVALID_PARAMETER_VALUE", "message": "image 1 is blank"}
    assert plain_refusal(ours) == ours
    long = plain_refusal({"error_code": "BAD_REQUEST", "message": "x" * 5000})
    assert len(long["message"]) == MAX_MESSAGE and long["message"].endswith("...")
