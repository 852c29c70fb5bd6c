"""Figures and the model card of the final stage: what a person would rather look at than read.

Everything here takes plain arrays and records and writes files; nothing trains or logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from src.model.search_space import is_log_scaled


def plot_learning_curves(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Loss and accuracy per epoch of the final training."""
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = np.arange(1, len(history["loss"]) + 1)
    loss_axis.plot(epochs, history["loss"], marker="o")
    loss_axis.set(title="loss", xlabel="epoch")
    accuracy_axis.plot(epochs, history["accuracy"], marker="o", color="tab:green")
    accuracy_axis.set(title="accuracy", xlabel="epoch")
    figure.suptitle("Final training on train + validation")
    return _save(figure, path)


def plot_confusion_matrix(confusion: np.ndarray, path: Path) -> Path:
    """Counts of true (rows) against predicted (columns) labels on the test split."""
    figure, axis = plt.subplots(figsize=(6, 5.5))
    image = axis.imshow(confusion, cmap="Blues")
    classes = np.arange(len(confusion))
    axis.set(
        xticks=classes,
        yticks=classes,
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix (test split)",
    )
    threshold = confusion.max() / 2
    for row in classes:
        for column in classes:
            count = confusion[row, column]
            if count:
                axis.text(
                    column,
                    row,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if count > threshold else "black",
                )
    figure.colorbar(image, ax=axis, fraction=0.046)
    return _save(figure, path)


def plot_worst_misclassified(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, path: Path, count: int = 25
) -> Path:
    """The misclassified test digits the model was most confident about, worst first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence_in_truth = probabilities[wrong, labels[wrong]]
    worst = wrong[np.argsort(confidence_in_truth)][:count]
    columns = 5
    rows = max(1, int(np.ceil(len(worst) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(1.8 * columns, 2.0 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, worst, strict=False):
        axis.imshow(images[index].squeeze(), cmap="gray_r")
        axis.set_title(
            f"true {labels[index]} → {predicted[index]} ({probabilities[index].max():.2f})",
            fontsize=8,
        )
    figure.suptitle(f"Worst misclassified test digits ({len(wrong)} wrong in all)")
    return _save(figure, path)


def plot_trial_scores(
    trials: Sequence[Mapping[str, Any]],
    objective: str,
    path: Path,
    search_space: Mapping[str, Any],
) -> Path:
    """One panel per hyperparameter: each completed trial's score against its value.

    A knob sampled on a log scale (``sampling: log`` in the search space) gets a log axis.
    """
    completed = [t for t in trials if t["score"] is not None]
    names = sorted(
        {name for t in completed for name in t["hyperparameters"] if not name.startswith("tuner/")}
    )
    columns = min(4, max(1, len(names)))
    rows = max(1, int(np.ceil(len(names) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, name in zip(axes.flat, names, strict=False):
        axis.axis("on")
        points = [
            (t["hyperparameters"][name], t["score"])
            for t in completed
            if name in t["hyperparameters"]
        ]
        values = [value for value, _ in points]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            axis.scatter(values, [score for _, score in points], alpha=0.7)
            if is_log_scaled(search_space, name):
                axis.set_xscale("log")
        else:  # categorical: one column per distinct value
            categories = sorted({str(v) for v in values})
            axis.scatter(
                [categories.index(str(v)) for v in values],
                [score for _, score in points],
                alpha=0.7,
            )
            axis.set_xticks(range(len(categories)), categories)
        axis.set(title=name, ylabel=objective)
    figure.suptitle(f"Trial {objective} against each hyperparameter ({len(completed)} trials)")
    return _save(figure, path)


def write_model_card(path: Path, facts: Mapping[str, Any]) -> Path:
    """A short Markdown card: data, hyperparameters, test metrics, and how to load the model."""
    hyperparameters = "\n".join(
        f"| `{name}` | {value} |" for name, value in facts["hyperparameters"].items()
    )
    per_class = " · ".join(
        f"{digit}: {accuracy:.3f}" for digit, accuracy in enumerate(facts["per_class_accuracy"])
    )
    model_uri = facts.get("model_uri") or "(not registered: tracking was off)"
    side = "x".join(map(str, facts["input_shape"][:2]))
    seeds = facts["seeds"]
    spread = (
        f"- over {len(seeds)} training seeds {seeds}: mean {facts['test_accuracy_mean']:.4f}, "
        f"standard deviation {facts['test_accuracy_std']:.4f} (each: "
        + ", ".join(f"{a:.4f}" for a in facts["seed_test_accuracies"])
        + f"); the registered model is {facts['registered_model']}, chosen before "
        "testing"
        if len(seeds) > 1
        else f"- one training seed ({seeds[0]})"
    )
    budget = facts.get("budget")
    budget_text = (
        f"""
## Time budget
- budget {budget["total_s"]:.0f} s: search {budget["search_s"]} s
  ({budget["search_stopped_because"]}), final stage {budget["final_s"]} s;
  {budget["spent_s"]} s spent in all
- {facts.get("budget_note") or "the final stage trained as planned"}
"""
        if budget
        else ""
    )
    cost = facts.get("cost")
    cost_text = (
        f"""
## Cost (this machine, `src.model.cost`)
- size: {cost["params"]:,} parameters; {cost["flops_per_image"] / 1e6:.1f} MFLOP per image
- latency, one image: {cost["latency_ms"]:.2f} ms (median); throughput:
  {cost["throughput_per_s"]:,.0f} images/s (batches of 128)
"""
        if cost
        else ""
    )
    damaged = facts.get("robustness")
    if damaged:
        rows = "\n".join(f"| {kind} | {value:.4f} |" for kind, value in damaged["accuracy"].items())
        cost_text += f"""
## Damaged digits (`src.final.robustness`)
Accuracy on {damaged["digits"]} test digits damaged nine ways (fixed seed); the same digits
undamaged: {damaged["clean"]:.4f}; mean over the kinds: **{damaged["mean"]:.4f}**.

| damage | accuracy |
| --- | ---: |
{rows}
"""
    text = f"""# Model card: {facts["model_name"]}

A convolutional network for {side} images in {facts["num_classes"]} classes, tuned with Keras Tuner
({facts["tuner"]} over the `{facts["search_space"]}` space) and retrained on
train + validation for {facts["epochs"]} epochs ({facts["epochs_chosen_by"]}).

## Data
- source: `{facts["data"]["name"]}` ({facts["data"]["origin"]})
- digest (SHA-256 of the raw digits): `{facts["data"]["digest"]}`; of the test digits:
  `{facts["data"]["test_digest"]}`
- splits: {facts["data"]["sizes"]["train"]} train + {facts["data"]["sizes"]["val"]} validation
  (trained on both), {facts["data"]["sizes"]["test"]} test (used once, below)
{f"- note: {facts['data']['note']}" if facts["data"].get("note") else ""}

## Hyperparameters
Trial {facts["trial_id"]}: {facts["chosen_by"]}.

| name | value |
| --- | --- |
{hyperparameters}

## Test metrics
- test accuracy: **{facts["test_accuracy"]:.4f}**, 95 % Wilson interval
  [{facts["test_accuracy_ci_low"]:.4f}, {facts["test_accuracy_ci_high"]:.4f}]:
  {facts["test_errors"]} errors in {facts["test_size"]} test digits; test loss
  {facts["test_loss"]:.4f}
{spread}
- per-digit accuracy: {per_class}
- registry decision: {facts.get("decision", "not registered")}
{cost_text}{budget_text}
## Use
Input: float32 array of shape (N, {", ".join(map(str, facts["input_shape"]))}), pixels in [0, 1]
(white on black, as in the training data).
Output: (N, {facts["num_classes"]}) class probabilities.

```python
import mlflow
model = mlflow.pyfunc.load_model("{model_uri}")
probabilities = model.predict(images)          # or mlflow.keras.load_model(...) for Keras
```

Command line: `python -m src.predict digit.png` · serving: `make serve`.
"""
    path.write_text(text)
    return path


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
