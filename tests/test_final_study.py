"""The study summary: the table `make reproduce` prints and writes into docs/results.md."""

from __future__ import annotations

import json

import numpy as np
import pytest

from src.final.study import collect, format_table, main, markers
from src.stats import packed_bits, unpacked_bits

SECTION_START, SECTION_END = markers("reproduce")

DATA = {
    "name": "mnist_10k",
    "origin": "bundled",
    "digest": "ab" * 32,
    "note": None,
    "sizes": {"train": 8100, "val": 900, "test": 1000},
}


def _stage(folder, score, test_accuracy, wall, seed_accuracies=None):
    folder.mkdir(parents=True)
    trials = [
        {
            "trial_id": "0",
            "status": "COMPLETED",
            "score": score,
            "best_step": 3,
            "hyperparameters": {"learning_rate": 0.001},
            "error": None,
        }
    ]
    search = {
        "objective": "val_accuracy",
        "wall_time_s": wall,
        "data": DATA,
        "stopped_early": None,
        "best": trials[0],
        "trials": trials,
    }
    (folder / "results.json").write_text(json.dumps(search))
    (folder / "final").mkdir()
    errors = round((1 - test_accuracy) * 10_000)
    final = {
        "test_accuracy": test_accuracy,
        "test_errors": errors,
        "test_accuracy_ci_low": test_accuracy - 0.002,
        "test_accuracy_ci_high": test_accuracy + 0.0015,
        "seed_test_accuracies": seed_accuracies or [test_accuracy],
        "wall_time_s": 30.0,
        "hyperparameters": {"learning_rate": 0.001},
        "decision": "first champion",
        "robustness": {"mean": test_accuracy - 0.2} if seed_accuracies else None,
        "test_right_bits": packed_bits(np.arange(10_000) >= errors),
    }
    (folder / "final" / "final.json").write_text(json.dumps(final))


@pytest.fixture
def study(tmp_path):
    _stage(tmp_path / "0_baseline", 0.97, 0.975, 60.0)
    _stage(tmp_path / "1_cnn", 0.98, 0.983, 300.0)
    _stage(tmp_path / "2_cnn_plus", 0.99, 0.992, 900.0, [0.992, 0.990, 0.994])
    return tmp_path


def test_table_lists_each_stage_beside_the_seed_study(study):
    stages = collect(study)
    assert [s["stage"] for s in stages] == ["baseline", "cnn", "cnn_plus"]
    assert stages[2]["wall_time_s"] == 930.0
    table = format_table(stages).splitlines()
    assert table[2] == (
        "| seed study's default model (no search) | 1 | 97.00% | 97.50% [97.30, 97.65] (250) "
        "| 1 seed | - | 96% | 1 min 30 s |"
    )
    assert table[4].endswith(
        "| 99.20% [99.00, 99.35] (80) | 99.20% ± 0.20 (3) | 79.20% | - | 15 min 30 s |"
    )


def test_results_section_is_replaced_in_place(study, tmp_path, capsys):
    doc = tmp_path / "results.md"
    doc.write_text(f"# Title\n{SECTION_START}\nold table\n{SECTION_END}\nafter\n")
    assert main([str(study), "--doc", str(doc)]) == 0
    content = doc.read_text()
    assert "old table" not in content and content.endswith(f"{SECTION_END}\nafter\n")
    row = "| tuned, improved space (32 filters; ensemble of 3 seeds) | 1 | 99.00% | 99.20% "
    row += "[99.00, 99.35] (80) |"
    assert row in content
    assert "official MNIST test set" in content  # the table states its scope
    assert "Whole study: 22.5 min" in capsys.readouterr().out


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error: no such folder")


def test_the_record_holds_each_stages_per_digit_results_and_where_it_ran(study, tmp_path):
    """`--record` writes what the README's study table is rebuilt from: each stage's
    per-digit bits (the errors recompute), the commit, the machine and the command."""
    record_file = tmp_path / "data" / "study_mnist_10k.json"
    assert main([str(study), "--record", str(record_file)]) == 0
    record = json.loads(record_file.read_text())
    assert record["command"] == "make reproduce" and record["commit"]
    assert record["machine"]["cores"] >= 1 and "cpu_flags" in record["machine"]
    errors = [
        10_000 - int(unpacked_bits(stage["test_right_bits"], 10_000).sum())
        for stage in record["stages"]
    ]
    assert errors == [stage["test_errors"] for stage in record["stages"]] == [250, 170, 80]
