"""Summarise a reproduced study: one table of baseline, tuned seed space, tuned improved space.

    python -m src.final.study outputs/reproduce                          # print the table
    python -m src.final.study outputs/reproduce --doc docs/results.md    # and write it there

Reads each stage's ``results.json`` (the search) and ``final/final.json`` (the retrained
model's test metrics) from the multirun folder that ``experiment=reproduce`` writes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.config.compose import CONFIG_DIR
from src.provenance import provenance

# The section of docs/results.md a table goes into:
# between <!-- NAME:start --> and <!-- NAME:end -->.
DEFAULT_SECTION = "reproduce"


def collect(study_dir: Path) -> list[dict[str, Any]]:
    """One record per stage folder (``<n>_<stage>``), in the order the study ran them."""
    stages = []
    for folder in sorted(p for p in study_dir.iterdir() if (p / "results.json").is_file()):
        search = json.loads((folder / "results.json").read_text())
        final_file = folder / "final" / "final.json"
        final = json.loads(final_file.read_text()) if final_file.is_file() else {}
        stage = folder.name.split("_", 1)[1] if "_" in folder.name else folder.name
        shown = _stage_description(folder, stage)
        stages.append(
            {
                "stage": stage,
                "title": shown.get("title") or stage,
                "seed_study": shown.get("seed_study_test_accuracy") or "-",
                "trials": sum(
                    t["status"] == "COMPLETED" and t["score"] is not None for t in search["trials"]
                ),
                "val_accuracy": (search["best"] or {}).get("score"),
                "test_accuracy": final.get("test_accuracy"),
                "test_errors": final.get("test_errors"),
                "test_accuracy_ci": (
                    final.get("test_accuracy_ci_low"),
                    final.get("test_accuracy_ci_high"),
                ),
                "seed_test_accuracies": final.get("seed_test_accuracies", []),
                "wall_time_s": search["wall_time_s"] + final.get("wall_time_s", 0.0),
                "hyperparameters": final.get("hyperparameters", {}),
                "data": search["data"],
                "decision": final.get("decision"),
                "damaged_accuracy": (final.get("robustness") or {}).get("mean"),
                "test_right_bits": final.get("test_right_bits"),
            }
        )
    return stages


def _stage_description(folder: Path, stage: str) -> dict[str, Any]:
    """The stage's ``study_stage`` node: from the config it ran with, else from conf/study."""
    ran_with = folder / ".hydra" / "config.yaml"
    source = ran_with if ran_with.is_file() else CONFIG_DIR / "study" / f"{stage}.yaml"
    if not source.is_file():
        return {}
    node = OmegaConf.select(OmegaConf.load(source), "study_stage", default=None)
    return OmegaConf.to_container(node) if node is not None else {}


def format_table(stages: list[dict[str, Any]]) -> str:
    """A Markdown table of the stages next to the seed study's figures: test accuracy with
    its errors and 95 % Wilson interval, and the spread over the final stage's seeds."""
    rows = [
        "| stage | trials | best val accuracy | test accuracy [95 % interval] (errors) "
        "| over seeds: mean ± sd (n) | damaged digits (mean of 9 kinds) "
        "| seed study (test; 60,000 training digits) | wall time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in stages:
        val = "-" if s["val_accuracy"] is None else f"{100 * s['val_accuracy']:.2f}%"
        minutes, seconds = divmod(round(s["wall_time_s"]), 60)
        damaged = "-" if s["damaged_accuracy"] is None else f"{100 * s['damaged_accuracy']:.2f}%"
        rows.append(
            f"| {s['title']} | {s['trials']} | {val} | {_test_cell(s)} | {_seeds_cell(s)} | "
            f"{damaged} | {s['seed_study']} | {minutes} min {seconds:02d} s |"
        )
    return "\n".join(rows)


def _test_cell(stage: dict[str, Any]) -> str:
    if stage["test_accuracy"] is None:
        return "-"
    low, high = stage["test_accuracy_ci"]
    cell = f"{100 * stage['test_accuracy']:.2f}%"
    if low is not None:
        cell += f" [{100 * low:.2f}, {100 * high:.2f}] ({stage['test_errors']})"
    return cell


def _seeds_cell(stage: dict[str, Any]) -> str:
    accuracies = stage["seed_test_accuracies"]
    if len(accuracies) < 2:
        return "1 seed"
    mean, sd = statistics.mean(accuracies), statistics.stdev(accuracies)
    return f"{100 * mean:.2f}% ± {100 * sd:.2f} ({len(accuracies)})"


SCOPE = (
    "Scope: test accuracies are on the official MNIST test set (10,000 digits from other "
    "writers than the training digits), each with its errors and 95 % Wilson interval: "
    "the registered model's (the first seed's, or the mean of all seeds' outputs where the "
    "stage says ensemble), next to the spread of the seeds' own models. "
    "Validation digits come from the training writers and overstate what the official test "
    "set shows. Rerun on the same machine, the study is deterministic (fixed seeds, "
    "TensorFlow op determinism); on another CPU the low digits of every score differ and a "
    "Bayesian search can take another path, so read differences within the intervals, and "
    "within the spread over seeds, as noise."
)


def markers(section: str) -> tuple[str, str]:
    """A document's start and end markers of a section."""
    return f"<!-- {section}:start -->", f"<!-- {section}:end -->"


def write_into_doc(doc: Path, text: str, section: str = DEFAULT_SECTION) -> None:
    """Replace what stands between a document section's markers."""
    content = doc.read_text()
    begin, finish = markers(section)
    start, end = content.find(begin), content.find(finish)
    if start < 0 or end < start:
        raise ValueError(f"{doc} has no {begin} ... {finish} section")
    doc.write_text(content[: start + len(begin)] + "\n" + text + "\n" + content[end:])


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    """Print the study's table, and write it into a document (docs/results.md) when asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", type=Path, help="the multirun folder of experiment=reproduce")
    parser.add_argument("--doc", type=Path, help="write the table into this Markdown file")
    parser.add_argument("--section", default=DEFAULT_SECTION, help="the section's marker name")
    parser.add_argument(
        "--record",
        type=Path,
        help="also write the stages, with per-digit test results, to this JSON file "
        "(docs/data/study_<data>.json: the README's study table is rebuilt from it)",
    )
    args = parser.parse_args(argv)
    if not args.study_dir.is_dir():
        print(f"error: no such folder: {args.study_dir}", file=sys.stderr)
        return 2
    measured_at = provenance()  # before this command writes into the tree
    stages = collect(args.study_dir)
    if not stages:
        print(f"error: no stage with results.json in {args.study_dir}", file=sys.stderr)
        return 1
    total = sum(s["wall_time_s"] for s in stages)
    data = stages[0]["data"]
    best = max(stages, key=lambda s: s["test_accuracy"] or 0)
    text = "\n".join(
        [
            format_table(stages),
            "",
            f"Data: `{data['name']}`, {data['sizes']['train']} train / {data['sizes']['val']} "
            f"validation / {data['sizes']['test']} test digits (digest `{data['digest'][:12]}`). "
            f"Whole study: {total / 60:.1f} min. Best: {best['title']}, "
            f"{', '.join(f'{k}={_short(v)}' for k, v in best['hyperparameters'].items())}.",
            "",
            SCOPE,
        ]
    )
    print(text)
    if args.doc:
        write_into_doc(args.doc, text, args.section)
        print(f"written into {args.doc}")
    if args.record:
        command = f"make reproduce{' DATA=mnist' if data['name'] == 'mnist' else ''}"
        record = {**measured_at, "command": command, "total_s": total, "stages": stages}
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps(record, indent=2) + "\n")
        print(f"written to {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
