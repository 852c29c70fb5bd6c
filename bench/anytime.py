"""Tuning against not tuning, at the same time budget: `python -m src.run budget=B` against the
untuned Keras MNIST example given the same B, side by side, on the official test set.

The untuned baseline is Keras' documented MNIST convnet ("Simple MNIST convnet",
https://keras.io/examples/vision/mnist_convnet/, by fchollet): two 3x3 convolutions of 32
and 64 filters, each followed by 2x2 max-pooling, flatten, dropout 0.5, a 10-way softmax;
Adam, batch 128, 15 epochs, 10 % of the training digits held out (``validation_split``).
Here it trains on the same digits as the run (the run's train + validation), for as many
epochs as fit in B (its documented 15, or more where B allows: Adam's constant rate and
dropout 0.5 keep it from overfitting), and is tested once on the official 10,000 digits.

Both arms run as fresh processes (``python -m src.run ...`` and ``python bench/anytime.py
untuned ...``), so both pay the same start-up, and their wall times are measured from
outside. For each budget and seed: wall time, test accuracy with its 95 % Wilson interval,
errors, and an exact McNemar test of the run's registered model against the baseline on
the same digits. Writes ``anytime.json``, ``anytime.md`` and ``anytime.png`` to ``--out``.
``--variant NAME OVERRIDE...`` (repeatable) adds an arm, the tuned run with those overrides
(e.g. ``--variant cold tuner.warm_start=null``: what the warm start buys), interleaved with
the other two and tested against the tuned arm on the same digits. ``--evaluate-on
development`` scores every arm on the development digits instead (official training digits
50,000-59,999, out of every arm's training): the way to choose a default by this benchmark.

    .venv/bin/python bench/anytime.py --budgets 1m 3m 10m --seeds 42 43 --out outputs/bench/anytime
    MNIST_IDX_FOLDER=../shared/datasets/mnist .venv/bin/python bench/anytime.py --data mnist \\
        --budgets 3m 10m 20m --seeds 42 --out outputs/bench/anytime_full
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import composed_dataset, machine, packed, row_variants, write_json

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "anytime"
# Enough epochs for any budget: the budget, not this, ends the example's training.
MAX_EPOCHS = 1000
# What each --evaluate-on scores every arm on (`evaluate_on` in conf/config.yaml).
DIGITS_SCORED = {
    "test": "official test set (10,000 digits)",
    "development": "development digits (official training digits 50,000-59,999, out of training)",
}


def untuned_example(data: str, budget_s: float, seed: int, out: Path, evaluate_on: str) -> None:
    """Train and test Keras' MNIST example within ``budget_s`` (counted from the process's
    start, as the tuned run counts it); write what it measured."""
    from src.budget import process_started

    started = process_started()
    import keras

    _, dataset = composed_dataset([f"data={data}", f"evaluate_on={evaluate_on}"])
    images = np.concatenate([dataset.train.images, dataset.val.images])
    labels = np.concatenate([dataset.train.labels, dataset.val.labels])
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

    class WithinBudget(keras.callbacks.Callback):
        """Stops before an epoch that would end past the budget (the slowest so far)."""

        def __init__(self) -> None:
            super().__init__()
            self.longest = 0.0
            self.epoch_start = 0.0
            self.epochs = 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch_start = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.epochs += 1
            self.longest = max(self.longest, time.monotonic() - self.epoch_start)
            # Testing 10,000 digits costs about a tenth of an epoch on 54,000 training digits.
            if time.monotonic() - started + 1.1 * self.longest > budget_s:
                self.model.stop_training = True

    within = WithinBudget()
    model.fit(
        images,
        labels,
        batch_size=128,
        epochs=MAX_EPOCHS,
        validation_split=0.1,
        verbose=0,
        callbacks=[within],
    )
    right = model.predict(dataset.test.images, verbose=0).argmax(axis=1) == dataset.test.labels
    np.save(out / "right.npy", right)
    (out / "untuned.json").write_text(
        json.dumps({"epochs": within.epochs, "test_digest": dataset.test_digest}) + "\n"
    )


def run_arm(command: list[str], env: dict[str, str], log: Path) -> tuple[float, str | None]:
    """Run one arm as a fresh process: its wall time, and its error line if it failed."""
    start = time.monotonic()
    with open(log, "w") as stream:
        code = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=stream, stderr=stream)
    elapsed = time.monotonic() - start
    if code.returncode != 0:
        lines = log.read_text().strip().splitlines()
        return elapsed, next((ln for ln in reversed(lines) if ln.startswith("error:")), lines[-1])
    return elapsed, None


@functools.cache
def _test_split(data: str, evaluate_on: str) -> Any:
    """The digits a data source is scored on, loaded once for every row."""
    return composed_dataset([f"data={data}", f"evaluate_on={evaluate_on}"])[1].test


def tuned_right(run_dir: Path, store: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Per test digit, whether the run's registered model got it right; and its final.json."""
    from src.registry.versions import load_version

    final = json.loads((run_dir / "final" / "final.json").read_text())
    test = _test_split(final["data"]["name"], final.get("evaluated_on", "test"))
    model = load_version(store, MODEL_NAME, final["model_version"])
    right = model.predict(test.images, verbose=0).argmax(axis=1) == test.labels
    return right, final


def _with_folder(command: list[str], folder: Path, place: Path) -> list[str]:
    """The tuned arm's command with its store, artifacts and run folder moved to ``place``."""
    return [part.replace(str(folder), str(place)) for part in command]


def tuned_arm(folder: Path, wall_s: float) -> tuple[np.ndarray, dict[str, Any]]:
    """A tuned arm's per-digit rights and its row: accuracy, trials, epochs, wall time."""
    from src.stats import accuracy_with_interval

    right, final = tuned_right(folder / "run", f"sqlite:///{folder / 'mlflow.db'}")
    ours = accuracy_with_interval(int(right.sum()), len(right))
    search = json.loads((folder / "run" / "results.json").read_text())
    return right, {
        "wall_s": round(wall_s, 1),
        "accuracy": ours.value,
        "right_bits": packed(right),
        "interval": [ours.ci_low, ours.ci_high],
        "errors": ours.errors,
        "trials": len(search["trials"]),
        "completed": sum(t["status"] == "COMPLETED" for t in search["trials"]),
        "search_examples": search["data"].get("search_examples"),
        "final_epochs": final["epochs"],
        "final_seeds": final["seeds"],
        "stopped": (search.get("budget") or {}).get("search_stopped_because"),
    }


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Both arms at every budget and seed, the order alternating; one row each."""
    from src.budget import parse_duration
    from src.stats import accuracy_with_interval, mcnemar

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = []
    for index, (budget, seed) in enumerate((b, s) for b in args.budgets for s in args.seeds):
        seconds = parse_duration(budget)
        folder = (args.out / f"{budget}_seed{seed}").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        store = f"sqlite:///{folder / 'mlflow.db'}"
        tuned = [
            sys.executable, "-m", "src.run", f"budget={budget}", f"data={args.data}",
            f"training.seed={seed}", f"final.model_name={MODEL_NAME}",
            f"mlflow.tracking_uri={store}", f"mlflow.artifact_location={folder / 'artifacts'}",
            f"hydra.run.dir={folder / 'run'}", f"evaluate_on={args.evaluate_on}", *args.set,
        ]  # fmt: skip
        untuned = [
            sys.executable, str(Path(__file__).resolve()), "untuned", "--data", args.data,
            "--budget", budget, "--seed", str(seed), "--out", str(folder),
            "--evaluate-on", args.evaluate_on,
        ]  # fmt: skip
        arms = [("tuned", tuned)]
        for name, *overrides in args.variant:
            place = folder / name
            place.mkdir(exist_ok=True)
            arms.append((name, [*_with_folder(tuned, folder, place), *overrides]))
        arms.append(("untuned", untuned))
        walls, errors = {}, {}
        for name, command in arms if index % 2 == 0 else arms[::-1]:
            print(f"{budget} seed {seed}: {name} ...", flush=True)
            walls[name], errors[name] = run_arm(command, env, folder / f"{name}.log")
        if any(errors.values()):  # e.g. a budget the run refuses: recorded, not measured
            rows.append({"budget": budget, "budget_s": seconds, "seed": seed, "errors": errors})
            print(f"{budget} seed {seed}: {errors}", flush=True)
            continue
        right, tuned_record = tuned_arm(folder, walls["tuned"])
        baseline = np.load(folder / "right.npy")
        untuned_record = json.loads((folder / "untuned.json").read_text())
        theirs = accuracy_with_interval(int(baseline.sum()), len(baseline))
        test = mcnemar(right, baseline)
        variants = []
        for name, *_ in args.variant:
            variant_right, variant_record = tuned_arm(folder / name, walls[name])
            variant_record["name"] = name
            variant_record["mcnemar_against_tuned"] = mcnemar(variant_right, right).to_dict()
            variants.append(variant_record)
        rows.append(
            {
                "budget": budget,
                "budget_s": seconds,
                "seed": seed,
                "tuned": tuned_record,
                "variants": variants,
                "untuned": {
                    "wall_s": round(walls["untuned"], 1),
                    "accuracy": theirs.value,
                    "interval": [theirs.ci_low, theirs.ci_high],
                    "errors": theirs.errors,
                    "epochs": untuned_record["epochs"],
                    "right_bits": packed(baseline),
                },
                "mcnemar": test.to_dict(),
            }
        )
        print(_row(rows[-1]), flush=True)
        record = {"command": args.command, "data": args.data, "evaluated_on": args.evaluate_on}
        write_json(args.out / "anytime.json", {**record, "rows": rows})
    return rows


def _accuracy(arm: dict[str, Any]) -> str:
    low, high = arm["interval"]
    return f"{100 * arm['accuracy']:.2f} % [{100 * low:.2f}, {100 * high:.2f}] ({arm['errors']})"


def _row(row: dict[str, Any]) -> str:
    ours, theirs = row["tuned"], row["untuned"]
    return (
        f"| {row['budget']} | {row['seed']} | {_accuracy(ours)} "
        f"| {ours['wall_s']:.0f} s | {ours['trials'] or 'no'} trials, final {ours['final_epochs']} "
        f"epochs x {len(ours['final_seeds'])} | {_accuracy(theirs)} "
        f"| {theirs['wall_s']:.0f} s | {theirs['epochs']} "
        f"| {row['mcnemar']['p_value']:.2g} |"
    )


def _variant_row(row: dict[str, Any], theirs: dict[str, Any]) -> str:
    ours = row["tuned"]
    return (
        f"| {row['budget']} | {row['seed']} | {100 * ours['accuracy']:.2f} % ({ours['errors']}) "
        f"| `{theirs['name']}` | {_accuracy(theirs)} | {theirs['wall_s']:.0f} s "
        f"| {theirs['trials'] or 'no'} trials, final {theirs['final_epochs']} epochs "
        f"| {theirs['mcnemar_against_tuned']['p_value']:.2g} |"
    )


def write_report(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> None:
    """The table (Markdown) and the accuracy-against-wall-time figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    header = (
        "| budget | seed | tuned: test accuracy [95 %] (errors) | wall | spent on | "
        "untuned example | wall | epochs | McNemar p |\n"
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"
    )
    measured = [row for row in rows if "errors" not in row]
    refused = [
        f"- {row['budget']}, seed {row['seed']}: "
        + "; ".join(f"{arm}: {error}" for arm, error in row["errors"].items() if error)
        for row in rows
        if "errors" in row
    ]
    table = "\n".join([header, *(_row(row) for row in measured), "", *refused])
    variant_rows = [_variant_row(row, arm) for row in measured for arm in row_variants(row)]
    if variant_rows:
        table += "\n" + "\n".join(
            [
                "\n| budget | seed | tuned | variant | accuracy [95 %] (errors) | wall | "
                "spent on | McNemar p against tuned |",
                "| --- | ---: | ---: | --- | ---: | ---: | --- | ---: |",
                *variant_rows,
            ]
        )
    scope = machine()
    scored = DIGITS_SCORED[getattr(args, "evaluate_on", "test")]
    text = (
        f"`{command}`\n\n{scope['cores']} cores ({scope['cpu']}), data `{args.data}`, "
        f"{scored}.\n\n{table}\n"
    )
    (args.out / "anytime.md").write_text(text)
    figure, axis = plt.subplots(figsize=(6, 4))
    for arm, style in (("tuned", "o-"), ("untuned", "s--")):
        points = sorted((r[arm]["wall_s"], 100 * r[arm]["accuracy"]) for r in measured)
        label = "python -m src.run budget=B" if arm == "tuned" else "untuned Keras example"
        axis.plot(*zip(*points, strict=True), style, label=label)
    axis.set_xscale("log")
    axis.set_xlabel("wall time (s, log scale)")
    axis.set_ylabel(f"accuracy (%) on the {scored.split(' (')[0]}")
    axis.set_title(f"Tuning against not tuning ({args.data}, {scope['cores']} cores)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.out / "anytime.png", dpi=110)
    print(text)


def main() -> None:
    if sys.argv[1:2] == ["untuned"]:
        parser = argparse.ArgumentParser(description="the untuned Keras example, one run")
        parser.add_argument("untuned")
        parser.add_argument("--data", default="mnist_10k")
        parser.add_argument("--budget", required=True)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--evaluate-on", choices=tuple(DIGITS_SCORED), default="test")
        args = parser.parse_args()
        from src.budget import parse_duration

        budget_s = parse_duration(args.budget)
        untuned_example(args.data, budget_s, args.seed, args.out, args.evaluate_on)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist_10k", help="any data= option")
    parser.add_argument("--budgets", nargs="+", default=["1m", "3m", "10m"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43])
    parser.add_argument("--set", nargs="*", default=[], help="more overrides of the tuned run")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/anytime"))
    parser.add_argument(
        "--variant",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME_THEN_OVERRIDES",
        help="one more arm (repeatable): a name, then the tuned run's extra overrides "
        "(e.g. cold tuner.warm_start=null)",
    )
    parser.add_argument(
        "--evaluate-on",
        choices=tuple(DIGITS_SCORED),
        default="test",
        help="development: score every arm on official training digits 50,000-59,999, held "
        "out of training (choosing a default); test: the official test set (reporting)",
    )
    parser.add_argument(
        "--report",
        nargs="+",
        type=Path,
        help="measure nothing: write the table and figure of these anytime.json files' rows "
        "(runs made in parts, e.g. one seed at a time)",
    )
    args = parser.parse_args()
    args.command = " ".join(["bench/anytime.py", *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report:
        records = [json.loads(path.read_text()) for path in args.report]
        args.data = records[0]["data"]
        rows = [row for record in records for row in record["rows"]]
        rows.sort(key=lambda row: (row["budget_s"], row["seed"]))
    else:
        rows = measure(args)
    write_report(rows, args, args.command)


if __name__ == "__main__":
    main()
