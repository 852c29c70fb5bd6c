"""Accuracy against cost: the search's Pareto front of validation score against latency.

Keras Tuner sums several objectives into one number; a front keeps them apart. It is drawn
over the completed trials (pruned ones were scored at a lower fidelity) whose cost was
measured (`src.search.behaviours.MeasuresCost`): a trial is on it when no other trial is at
least as accurate and at least as fast, and better in one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from src.search.results import SearchResult, TrialSummary


def pareto_front(trials: Sequence[TrialSummary], maximize: bool = True) -> list[TrialSummary]:
    """The trials no other beats on both score and latency, fastest first."""
    measured = [t for t in trials if t.score is not None and t.cost is not None]
    sign = 1.0 if maximize else -1.0

    def dominates(a: TrialSummary, b: TrialSummary) -> bool:
        better_or_equal = sign * a.score >= sign * b.score and (
            a.cost["latency_ms"] <= b.cost["latency_ms"]
        )
        strictly = sign * a.score > sign * b.score or a.cost["latency_ms"] < b.cost["latency_ms"]
        return better_or_equal and strictly

    front = [t for t in measured if not any(dominates(o, t) for o in measured if o is not t)]
    return sorted(front, key=lambda t: t.cost["latency_ms"])


def front_record(result: SearchResult) -> list[dict[str, Any]]:
    """The front as rows: trial id, score and the four cost figures."""
    maximize = "loss" not in result.objective
    return [
        {"trial_id": t.trial_id, "score": t.score, **t.cost}
        for t in pareto_front(result.scored, maximize)
    ]


def format_front(rows: Sequence[dict[str, Any]], objective: str) -> str:
    """A few lines for the terminal."""
    if not rows:
        return "accuracy against latency: no completed trial with a measured cost"
    lines = [f"accuracy against latency, the Pareto front ({len(rows)} trials):"]
    lines += [
        f"  trial {row['trial_id']}: {objective}={row['score']:.4f}, "
        f"{row['latency_ms']:.2f} ms, {row['params']:,} parameters, "
        f"{row['flops_per_image'] / 1e6:.1f} MFLOP"
        for row in rows
    ]
    return "\n".join(lines)


def front_figure(result: SearchResult) -> Any:
    """Every completed, measured trial's score against its latency, the front joined."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    measured = [t for t in result.scored if t.cost is not None]
    front = front_record(result)
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.scatter(
        [t.cost["latency_ms"] for t in measured],
        [t.score for t in measured],
        label="completed trials",
        alpha=0.6,
    )
    axis.plot(
        [row["latency_ms"] for row in front],
        [row["score"] for row in front],
        "o-",
        color="C3",
        label="Pareto front",
    )
    axis.set_xlabel("latency, one image (ms, this machine)")
    axis.set_ylabel(result.objective)
    axis.set_title("Accuracy against latency")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure
