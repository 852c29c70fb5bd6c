"""Summarise a reproduced study: one table of baseline, tuned seed space, tuned improved space.

    python -m src.study outputs/reproduce                  # print the table
    python -m src.study outputs/reproduce --readme README.md   # and write it into the README

Reads each stage's ``results.json`` (the search) and ``final/final.json`` (the retrained
model's test metrics) from the multirun folder that ``experiment=reproduce`` writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.compose import CONFIG_DIR

README_START = "<!-- reproduce:start -->"
README_END = "<!-- reproduce:end -->"


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
                "trials": sum(t["status"] == "COMPLETED" for t in search["trials"]),
                "val_accuracy": search["best"]["score"] if search["best"] else None,
                "test_accuracy": final.get("test_accuracy"),
                "wall_time_s": search["wall_time_s"] + final.get("wall_time_s", 0.0),
                "hyperparameters": final.get("hyperparameters", {}),
                "data": search["data"],
                "decision": final.get("decision"),
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
    """A Markdown table of the stages next to the seed study's figures."""
    rows = [
        "| stage | trials | best val accuracy | test accuracy | seed study (test) | wall time |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in stages:
        test = "-" if s["test_accuracy"] is None else f"{100 * s['test_accuracy']:.2f}%"
        val = "-" if s["val_accuracy"] is None else f"{100 * s['val_accuracy']:.2f}%"
        minutes, seconds = divmod(round(s["wall_time_s"]), 60)
        rows.append(
            f"| {s['title']} | {s['trials']} | {val} | {test} | "
            f"{s['seed_study']} | {minutes} min {seconds:02d} s |"
        )
    return "\n".join(rows)


def write_into_readme(readme: Path, text: str) -> None:
    """Replace what stands between the README's reproduce markers."""
    content = readme.read_text()
    start, end = content.find(README_START), content.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} section")
    readme.write_text(content[: start + len(README_START)] + "\n" + text + "\n" + content[end:])


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    """Print the study's table, and write it into the README when asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", type=Path, help="the multirun folder of experiment=reproduce")
    parser.add_argument("--readme", type=Path, help="write the table into this README")
    args = parser.parse_args(argv)
    if not args.study_dir.is_dir():
        print(f"error: no such folder: {args.study_dir}", file=sys.stderr)
        return 2
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
        ]
    )
    print(text)
    if args.readme:
        write_into_readme(args.readme, text)
        print(f"written into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
