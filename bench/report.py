"""Rebuild the benchmark tables of docs/benchmarks.md and the README from docs/data/*.json.

Each table lives between ``<!-- bench-report:NAME -->`` and ``<!-- /bench-report -->`` in
its page, and is rebuilt from the committed records alone: where a record holds per-digit
correctness (``right_bits``), accuracies, intervals and McNemar p-values are recomputed
from it; older records without it are shown as they were written. ``--check`` changes
nothing and fails when a page differs from its rebuild (what `tests/test_bench_report.py`
checks).

    make bench-report                         # .venv/bin/python bench/report.py
    .venv/bin/python bench/report.py --check
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from common import row_variants, unpacked

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data"
PAGES = (ROOT / "README.md", ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "decisions.md")
BLOCK = re.compile(r"(<!-- bench-report:([\w-]+) -->\n)(.*?)(<!-- /bench-report -->)", re.DOTALL)
# Each anytime record, the data it ran on, in the order the tables show them.
ANYTIME = {
    "anytime_mnist_10k.json": "MNIST, bundled sample (`data=mnist_10k`, 9,000 + 1,000 digits)",
    "anytime_mnist_10k_10m.json": "MNIST, bundled sample (`data=mnist_10k`, 9,000 + 1,000 digits)",
    "anytime_fashion.json": "Fashion-MNIST (`data=idx`, 54,000 + 6,000 images)",
    "anytime_fashion_10m.json": "Fashion-MNIST (`data=idx`, 54,000 + 6,000 images)",
    "anytime_mnist.json": "MNIST, full (`data=mnist`, 54,000 + 6,000 digits)",
}
# Anytime records scored on the development digits (--evaluate-on development): the
# evidence docs/decisions.md chooses defaults by.
DECISIONS = {
    "decide_bundled_4m.json": "MNIST, bundled sample, 4 minutes: budget share and tuner",
    "decide_fashion_4m.json": "Fashion-MNIST, 4 minutes: budget share",
}
TEST_DIGITS = 10_000  # the official test set and the development digits alike
# The variant arm the README's headline shows: the shipped configuration, retrained.
RETRAIN_ARM = "retrain"


def _arm(arm: Mapping[str, Any], against: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An arm's accuracy, interval, errors and (``against`` another arm) McNemar p: from its
    per-digit bits where it has them, else as recorded."""
    from src.stats import accuracy_with_interval, mcnemar

    figures = {
        "accuracy": arm["accuracy"],
        "interval": arm["interval"],
        "errors": arm["errors"],
        "p": None,
    }
    if "right_bits" not in arm:
        return figures
    right = unpacked(arm["right_bits"], TEST_DIGITS)
    accuracy = accuracy_with_interval(int(right.sum()), len(right))
    figures.update(
        accuracy=accuracy.value,
        interval=[accuracy.ci_low, accuracy.ci_high],
        errors=accuracy.errors,
    )
    if against is not None and "right_bits" in against:
        figures["p"] = mcnemar(unpacked(against["right_bits"], TEST_DIGITS), right).p_value
    return figures


def _percent(figures: Mapping[str, Any]) -> str:
    low, high = figures["interval"]
    return f"{100 * figures['accuracy']:.2f} % [{100 * low:.2f}, {100 * high:.2f}]"


def _p(value: float | None, recorded: float | None = None) -> str:
    value = recorded if value is None else value
    return "n/a" if value is None else f"{value:.2g}"


def _records(names: Mapping[str, str] = ANYTIME) -> list[tuple[str, dict[str, Any]]]:
    return [
        (label, json.loads((DATA / name).read_text()))
        for name, label in names.items()
        if (DATA / name).is_file()
    ]


def _provenance(record: Mapping[str, Any]) -> str:
    machine = record["machine"]
    return (
        f"`{record.get('command', 'bench/anytime.py')}`, commit {record.get('commit', 'n/a')}, "
        f"{record['date'][:10]}, {machine['cores']} cores ({machine['cpu']})"
    )


def anytime_headline() -> str:
    """The README's table: per data set and budget, the default run, the untuned example and
    the shipped configuration retrained, with McNemar's p against the default run."""
    lines = [
        "| data | budget | the default run (it searches) | untuned example | "
        "retrained shipped best, no search | commit |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for label, record in _records():
        for row in record["rows"]:
            if "tuned" not in row:
                continue
            tuned = _arm(row["tuned"])
            untuned = _arm(row["untuned"], row["tuned"])
            p = _p(untuned["p"], row["mcnemar"]["p_value"])
            cells = [
                label.split(" (")[0],
                row["budget"],
                f"{_percent(tuned)} ({row['tuned']['trials']} trials)",
                f"{_percent(untuned)} (p = {p})",
            ]
            retrain = [arm for arm in row_variants(row) if arm["name"] == RETRAIN_ARM]
            if retrain:
                variant = _arm(retrain[0], row["tuned"])
                recorded = retrain[0]["mcnemar_against_tuned"]["p_value"]
                cells.append(f"{_percent(variant)} (p = {_p(variant['p'], recorded)})")
            else:
                cells.append("not run")
            cells.append(record.get("commit", "n/a"))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def anytime_details() -> str:
    """docs/benchmarks.md's tables: every arm's accuracy, errors, wall time and what it spent
    its time on, one table per data set with the command, commit and machine."""
    return _details(_records(), "test accuracy")


def development_decisions() -> str:
    """docs/decisions.md's tables: the same, for the runs scored on development digits."""
    records = _records(DECISIONS)
    if not records:
        return "No record yet (`bench/anytime.py --evaluate-on development`).\n"
    return _details(records, "development accuracy")


def _details(records: list[tuple[str, dict[str, Any]]], scored: str) -> str:
    parts = []
    for label, record in records:
        parts.append(f"**{label}.** {_provenance(record)}.\n")
        parts.append(
            f"| budget | seed | arm | {scored} [95 %] | errors | wall | spent on | "
            "McNemar p against the default run |\n"
            "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: |"
        )
        for row in record["rows"]:
            if "tuned" not in row:
                errors = "; ".join(f"{arm}: {e}" for arm, e in row["errors"].items() if e)
                parts.append(f"| {row['budget']} | {row['seed']} | refused | {errors} | | | | |")
                continue
            arms = [("the default run", row["tuned"], None, None)]
            for variant in row_variants(row):
                recorded = variant["mcnemar_against_tuned"]["p_value"]
                arms.append((f"`{variant['name']}`", variant, row["tuned"], recorded))
            arms.append(
                ("untuned example", row["untuned"], row["tuned"], row["mcnemar"]["p_value"])
            )
            for name, arm, against, recorded in arms:
                figures = _arm(arm, against)
                if "trials" in arm and arm.get("search_examples") is None:  # from_results
                    spent = f"no search, final {arm['final_epochs']} epochs"
                elif "trials" in arm:
                    spent = f"{arm['trials']} trials, final {arm['final_epochs']} epochs"
                else:
                    spent = f"{arm['epochs']} epochs"
                p = _p(figures["p"], recorded) if against is not None else ""
                parts.append(
                    f"| {row['budget']} | {row['seed']} | {name} | {_percent(figures)} "
                    f"| {figures['errors']} | {arm['wall_s']:.0f} s | {spent} | {p} |"
                )
        parts.append("")
    return "\n".join(parts)


def trial_overhead() -> str:
    """docs/benchmarks.md's table of many cheap trials in one process."""
    path = DATA / "trial_overhead.json"
    if not path.is_file():
        return "No record yet (`bench/trial_overhead.py`).\n"
    record = json.loads(path.read_text())
    rows = [
        ("median trial", f"{record['median_trial_s']:.2f} s"),
        ("of it, epochs (tracing included)", f"{record['median_epoch_s']:.2f} s"),
        ("of it, beyond the epochs", f"{record['median_fixed_s']:.2f} s"),
    ]
    if "median_steady_epoch_s" in record:
        rows.append(
            ("a steady epoch of the same model", f"{record['median_steady_epoch_s']:.2f} s")
        )
        rows.append(
            (
                "fixed cost: the trial beyond its steady epochs",
                f"{record['median_trial_fixed_s']:.2f} s",
            )
        )
    rows += [
        (
            "resident memory after trial 10 / the last",
            f"{record['rss_mb_after_trial_10']:,.0f} / {record['rss_mb_after_last']:,.0f} MB",
        ),
        (
            "growth from the 10th trial to the last",
            f"**{record['rss_growth_mb_10_to_last']:.0f} MB**",
        ),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"{_provenance(record)}; {record['trials']} trials.\n\n| | |\n| --- | ---: |\n{table}\n"


# `make reproduce`'s records (`python -m src.final.study --record`), and their data.
STUDIES = {
    "study_mnist_10k.json": "9,000 + 1,000",
    "study_mnist.json": "54,000 + 6,000",
}


def study() -> str:
    """The README's table of the reproduced study: each stage's registered model on the
    official test set, recomputed from its per-digit bits, with the command and commit."""
    from src.stats import accuracy_with_interval

    lines = [
        "| model | training digits | test accuracy [95 % interval] | errors |",
        "| --- | ---: | ---: | ---: |",
    ]
    sources = []
    for name, digits in STUDIES.items():
        if not (DATA / name).is_file():
            continue
        record = json.loads((DATA / name).read_text())
        sources.append(_provenance(record))
        for stage in record["stages"]:
            if stage.get("test_right_bits") is None:
                continue
            right = unpacked(stage["test_right_bits"], TEST_DIGITS)
            figures = accuracy_with_interval(int(right.sum()), len(right))
            interval = {"accuracy": figures.value, "interval": [figures.ci_low, figures.ci_high]}
            lines.append(
                f"| {stage['title']} | {digits} | {_percent(interval)} | {figures.errors} |"
            )
    if not sources:
        return "No record yet (`make reproduce`).\n"
    return "\n".join(lines) + "\n\n" + "; ".join(f"From {s}." for s in sources) + "\n"


RENDERERS: dict[str, Callable[[], str]] = {
    "anytime-headline": anytime_headline,
    "anytime-details": anytime_details,
    "trial-overhead": trial_overhead,
    "development-decisions": development_decisions,
    "study": study,
}


def rebuilt(text: str) -> str:
    """``text`` with each of its bench-report blocks rebuilt from the records."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in RENDERERS:
            raise SystemExit(f"error: unknown bench-report block {name!r}")
        return match.group(1) + RENDERERS[name]() + match.group(4)

    return BLOCK.sub(replace, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a page is out of date")
    args = parser.parse_args()
    stale = []
    for page in PAGES:
        text = page.read_text()
        new = rebuilt(text)
        if new != text:
            stale.append(page.relative_to(ROOT))
            if not args.check:
                page.write_text(new)
    if args.check and stale:
        print(f"error: out of date with docs/data: {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    print("rebuilt: " + (", ".join(map(str, stale)) or "nothing changed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
