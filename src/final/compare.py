"""The comparison of a Hydra sweep's searches (``python -m src.run -m tuner=tpe,random,...``).

A Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``): when a multirun ends, it
reads each job's ``results.json`` and ``final/final.json`` and prints one table, also
written to the sweep folder as ``comparison.md`` and ``comparison.json``. Each job's MLflow
parent run carries the same ``sweep`` tag (``src.tracking.records.sweep_tags``), so the
MLflow UI groups them too. Hydra's own callbacks are the hook; nothing here runs a job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

COMPARISON_FILE = "comparison"
_HEADER = (
    "| job | tuner | trials (completed / pruned) | best validation score [95 % interval] "
    "| final test accuracy [95 % interval] | time |"
)


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder of a sweep that wrote ``results.json``, in job order."""
    rows = []
    for results_file in sorted(sweep_dir.glob("*/results.json"), key=_job_number):
        job = results_file.parent
        results = json.loads(results_file.read_text())
        final_file = job / "final" / "final.json"
        final = json.loads(final_file.read_text()) if final_file.is_file() else {}
        trials = results.get("trials", [])
        best = results.get("best") or {}
        budget = final.get("budget") or results.get("budget") or {}
        rows.append(
            {
                "job": job.name,
                "tuner": final.get("tuner") or job.name.partition("_")[2],
                "completed": sum(t.get("status") == "COMPLETED" for t in trials),
                "pruned": sum(bool(t.get("pruned_reason")) for t in trials),
                "objective": results.get("objective"),
                "best_score": best.get("score"),
                "best_interval": best.get("interval"),
                "test_accuracy": final.get("test_accuracy"),
                "test_interval": [
                    final.get("test_accuracy_ci_low"),
                    final.get("test_accuracy_ci_high"),
                ]
                if final
                else None,
                "seconds": budget.get("spent_s")
                or round(results.get("wall_time_s", 0) + final.get("wall_time_s", 0), 1),
            }
        )
    return rows


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = [_HEADER, "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(
            f"| {row['job']} | {row['tuner']} | {row['completed']} / {row['pruned']} "
            f"| {_with_interval(row['best_score'], row['best_interval'])} "
            f"| {_with_interval(row['test_accuracy'], row['test_interval'], percent=True)} "
            f"| {row['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def write_comparison(sweep_dir: Path) -> str | None:
    """Write ``comparison.md`` and ``comparison.json`` into a sweep's folder; returns the
    table, or None where no job wrote results."""
    rows = sweep_rows(sweep_dir)
    if not rows:
        return None
    table = format_comparison(rows)
    (sweep_dir / f"{COMPARISON_FILE}.md").write_text(table + "\n")
    (sweep_dir / f"{COMPARISON_FILE}.json").write_text(json.dumps(rows, indent=2) + "\n")
    return table


class CompareSweep(Callback):
    """Hydra callback: the comparison table when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = write_comparison(sweep_dir)
        if table is not None:  # printed: Hydra's job logging has ended by now
            print(f"sweep {sweep_dir}:\n{table}\n(also in {sweep_dir / COMPARISON_FILE}.md)")


def _with_interval(value: float | None, interval: Any, percent: bool = False) -> str:
    if value is None:
        return "-"
    scale, unit = (100, " %") if percent else (1, "")
    text = f"{value * scale:.2f}{unit}" if percent else f"{value:.4f}"
    if interval and None not in interval:
        low, high = (bound * scale for bound in interval)
        text += f" [{low:.2f}, {high:.2f}]" if percent else f" [{low:.4f}, {high:.4f}]"
    return text


def _job_number(results_file: Path) -> tuple[int, str]:
    number = results_file.parent.name.partition("_")[0]
    return (int(number) if number.isdigit() else 1 << 30, results_file.parent.name)
