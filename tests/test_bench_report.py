"""bench/report.py: the README's and docs/benchmarks.md's benchmark tables are the committed
records' (docs/data/*.json), and what a record's per-digit bits say is what it reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))  # the scripts' sibling `common`
        yield _load("report")


@pytest.mark.parametrize("page", ["README.md", "docs/benchmarks.md", "docs/decisions.md"])
def test_the_pages_tables_are_rebuilt_from_the_committed_records(report, page):
    text = (report.ROOT / page).read_text()
    assert report.BLOCK.search(text), f"{page} has no bench-report block"
    assert report.rebuilt(text) == text, f"{page} is out of date: run `make bench-report`"


def test_a_table_that_disagrees_with_its_records_is_caught(report):
    text = (report.ROOT / "README.md").read_text()
    start = text.index("<!-- bench-report:anytime-headline -->")
    planted = text[:start] + text[start:].replace("%", "% (edited)", 1)
    assert report.rebuilt(planted) != planted


def test_packed_bits_round_trip(report):
    common = _load("common")
    right = np.random.default_rng(0).random(10_000) < 0.99
    bits = common.packed(right)
    assert len(bits) == 1668
    assert np.array_equal(common.unpacked(bits, 10_000), right)


def test_each_records_bits_give_its_reported_accuracy_and_p_value(report):
    """Anyone can recompute a figure from the bits: they agree with what the run wrote."""
    from src.stats import mcnemar

    common = _load("common")
    checked = 0
    for name in {**report.ANYTIME, **report.DECISIONS}:
        path = report.DATA / name
        if not path.is_file():
            continue
        for row in json.loads(path.read_text())["rows"]:
            if "right_bits" not in row.get("tuned", {}):
                continue
            tuned = common.unpacked(row["tuned"]["right_bits"], 10_000)
            untuned = common.unpacked(row["untuned"]["right_bits"], 10_000)
            assert 10_000 - tuned.sum() == row["tuned"]["errors"]
            assert 10_000 - untuned.sum() == row["untuned"]["errors"]
            p = mcnemar(tuned, untuned).p_value
            assert p == pytest.approx(row["mcnemar"]["p_value"])
            for variant in common.row_variants(row):
                theirs = common.unpacked(variant["right_bits"], 10_000)
                assert 10_000 - theirs.sum() == variant["errors"]
                p = mcnemar(theirs, tuned).p_value
                assert p == pytest.approx(variant["mcnemar_against_tuned"]["p_value"])
            checked += 1
    assert checked, "no record with per-digit bits"
