"""The project as a wheel: built here, installed in a fresh virtual environment, run from
another folder, with the bundled digits and the configs coming from the installed package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO_ROOT


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command[:4]}: {result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_a_quick_search_from_another_folder(tmp_path):
    # No build isolation: setuptools comes from the dev extra, so this needs no network.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO_ROOT),
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path / "dist"),
        ],
        cwd=tmp_path,
    )
    wheel = next((tmp_path / "dist").glob("mnist_hparam_search-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    # The dependencies come from this environment (a path entry, so its editable finder
    # for this checkout is not loaded); the project itself only from the wheel.
    site = Path(
        _run(
            [str(python), "-c", "import site; print(site.getsitepackages()[0])"], cwd=tmp_path
        ).strip()
    )
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        cwd=tmp_path,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    located = _run(
        [str(python), "-c", "import src.config.compose as c; print(c.__file__, c.CONFIG_DIR)"],
        cwd=elsewhere,
        env=env,
    )
    assert str(REPO_ROOT) not in located and str(venv) in located
    _run(
        [
            str(python),
            "-m",
            "src.run",
            "experiment=quick",
            "training.verbose=0",
            "search_space.filters=[8,16]",  # narrow layers: a quicker pass over the test set
            "hydra.run.dir=run",
        ],
        cwd=elsewhere,
        env=env,
    )
    results = json.loads((elsewhere / "run" / "results.json").read_text())
    assert [t["status"] for t in results["trials"]] == ["COMPLETED", "COMPLETED"]
    assert results["best"]["score"] == max(t["score"] for t in results["trials"])
    assert results["data"]["name"] == "mnist_10k"
    assert results["data"]["sizes"] == {"train": 512, "val": 1000, "test": 10000}
    log = (elsewhere / "run" / "run.log").read_text()
    assert "trial 1/2" in log and "trial 2/2" in log and "best trial" in log
    assert str(venv) in results["data"]["origin"]  # the bundled digits of the installed package
    assert (elsewhere / "run" / "final" / "final.json").is_file()
    assert (elsewhere / "mlruns" / "mlflow.db").is_file()


def test_every_subpackage_of_src_is_listed_for_the_wheel():
    """pyproject.toml lists the packages (setuptools' finder cannot map conf/ to src.conf):
    a new subpackage missing there would be left out of the wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts)
        for init in (REPO_ROOT / "src").rglob("__init__.py")
    }
    assert set(listed["packages"]) == found | {"src.conf"}
