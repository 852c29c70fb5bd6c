"""`FinalResult`: what the final stage measured and what the registry decided."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class FinalResult:
    """What the final stage measured and decided.

    ``test_accuracy`` and its interval are the registered model's (the first seed's, or
    the ensemble of all seeds' when ``ensemble``); ``seed_test_accuracies`` has one entry
    per seed of ``seeds``, in order.
    """

    test_accuracy: float
    test_loss: float
    test_errors: int
    test_size: int
    test_accuracy_ci_low: float
    test_accuracy_ci_high: float
    per_class_accuracy: list[float]
    epochs: int
    hyperparameters: dict[str, Any]
    seeds: list[int]
    seed_test_accuracies: list[float]
    ensemble: bool = False
    # The retrained trial, and why it (`final.choose`).
    trial_id: str | None = None
    chosen_by: str = "the best trial"
    model_version: str | None = None
    champion_accuracy: float | None = None
    champion_version: str | None = None
    mcnemar: dict[str, Any] | None = None
    promoted: bool = False
    decision: str = "not registered"
    # What the registered model costs to serve (`src.model.cost.ModelCost.to_dict`).
    cost: dict[str, Any] | None = None
    # Accuracy on damaged test digits (`src.final.robustness.Robustness.to_dict`).
    robustness: dict[str, Any] | None = None
    run_id: str | None = None
    wall_time_s: float = 0.0
    # What wall_time_s was spent on: training (each model with its test), testing (an
    # ensemble), reporting (figures), registering (logging, registering, promoting).
    parts_s: dict[str, float] = field(default_factory=dict)
    # With ``budget``: the run's clock at the end, and how the final stage was fitted to it.
    budget: dict[str, Any] | None = None
    budget_note: str | None = None

    @property
    def registered_model(self) -> str:
        """Which trained model is the one registered, in words."""
        if self.ensemble:
            return f"the mean of the softmax outputs of seeds {', '.join(map(str, self.seeds))}"
        return f"seed {self.seeds[0]}'s"

    @property
    def test_accuracy_mean(self) -> float:
        return float(np.mean(self.seed_test_accuracies))

    @property
    def test_accuracy_std(self) -> float:
        """Sample standard deviation across seeds (0 for one seed)."""
        values = self.seed_test_accuracies
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "registered_model": self.registered_model,
            "test_accuracy_mean": self.test_accuracy_mean,
            "test_accuracy_std": self.test_accuracy_std,
        }
