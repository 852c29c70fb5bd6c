"""Accuracy against cost: the search's Pareto front of validation score against latency.

Keras Tuner sums several objectives into one number; a front keeps them apart. It is drawn
over the completed trials (pruned ones were scored at a lower fidelity) whose cost was
measured (`src.search.behaviours.MeasuresCost`): a trial is on it when no other trial is at
least as accurate and at least as fast, and better in one. Trials of one architecture share
one latency, the median of their measurements (`architecture_latency`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from src.search.results import SearchResult, TrialSummary


def architecture_latency(trials: Sequence[TrialSummary]) -> dict[str, float]:
    """Each measured trial's latency as its architecture's: the median over the trials whose
    models have the same parameters and FLOPs. One model timed twice differs by up to 29 % on
    a busy 2-core machine (8.8-11.3 ms); the same model must not look faster than itself."""
    groups: dict[tuple[int, int], list[float]] = {}
    for t in trials:
        groups.setdefault(_architecture(t), []).append(t.cost["latency_ms"])
    return {t.trial_id: statistics.median(groups[_architecture(t)]) for t in trials}


def _architecture(trial: TrialSummary) -> tuple[int, int]:
    return trial.cost["params"], trial.cost["flops_per_image"]


def pareto_front(trials: Sequence[TrialSummary], maximize: bool = True) -> list[TrialSummary]:
    """The trials no other beats on both score and latency (`architecture_latency`),
    fastest first."""
    measured = [t for t in trials if t.score is not None and t.cost is not None]
    latency = architecture_latency(measured)
    sign = 1.0 if maximize else -1.0

    def dominates(a: TrialSummary, b: TrialSummary) -> bool:
        faster_or_equal = latency[a.trial_id] <= latency[b.trial_id]
        better_or_equal = sign * a.score >= sign * b.score
        strictly = sign * a.score > sign * b.score or latency[a.trial_id] < latency[b.trial_id]
        return faster_or_equal and better_or_equal and strictly

    front = [t for t in measured if not any(dominates(o, t) for o in measured if o is not t)]
    return sorted(front, key=lambda t: (latency[t.trial_id], t.trial_id))


def front_record(result: SearchResult) -> list[dict[str, Any]]:
    """The front as rows: trial id, score, the four cost figures (latency as measured) and
    the architecture's latency the front was drawn on."""
    maximize = "loss" not in result.objective
    measured = [t for t in result.scored if t.cost is not None]
    latency = architecture_latency(measured)
    return [
        {
            "trial_id": t.trial_id,
            "score": t.score,
            **t.cost,
            "front_latency_ms": latency[t.trial_id],
        }
        for t in pareto_front(measured, maximize)
    ]


def format_front(rows: Sequence[dict[str, Any]], objective: str) -> str:
    """A few lines for the terminal."""
    if not rows:
        return "accuracy against latency: no completed trial with a measured cost"
    lines = [f"accuracy against latency, the Pareto front ({len(rows)} trials):"]
    lines += [
        f"  trial {row['trial_id']}: {objective}={row['score']:.4f}, "
        f"{row['front_latency_ms']:.2f} ms, {row['params']:,} parameters, "
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
        [row["front_latency_ms"] for row in front],
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
