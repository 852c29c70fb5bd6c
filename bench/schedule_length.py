"""How long the improved space's models should train: validation scores by schedule length.

Trains one configuration of the improved space (by default the best validation trial of
a `make reproduce` study) on a dataset's training split (the bundled sample's by
default; `--data mnist` for full MNIST's 54,000), from one seed, with the cosine
schedule stretched over each epoch count given, and prints the validation loss and
accuracy at the end of each schedule, with seconds per epoch. It reads the validation
split only, never the test split: it is what `final.epochs` in
`conf/study/cnn_plus.yaml` and `conf/study/cnn_plus_retrained.yaml` are chosen by.

    .venv/bin/python bench/schedule_length.py [--epochs 12 24] [--hyperparameters FILE]
        [--set NAME=VALUE ...] [--data mnist_10k|mnist]

`--hyperparameters` takes a search's results.json (its best trial), a final stage's
final.json (the configuration it retrained) or a JSON object of hyperparameters.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from common import add_json_option, composed_dataset, fixed_model, write_json
from omegaconf import OmegaConf

from src.model.backend import configure_backend

# The improved-space stage's best validation trial of the last `make reproduce`.
DEFAULT_RESULTS = Path("outputs/reproduce/2_cnn_plus/results.json")


class _EpochClock(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[12, 24])
    parser.add_argument(
        "--hyperparameters",
        type=Path,
        default=DEFAULT_RESULTS,
        help="a results.json (its best trial), a final.json or a JSON object of hyperparameters",
    )
    parser.add_argument(
        "--data",
        choices=["mnist_10k", "mnist"],
        default="mnist_10k",
        help="mnist: full MNIST from MNIST_IDX_FOLDER or Keras' cache (never the fallback)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="change hyperparameters, e.g. augment_zoom=0.12 (values read as JSON)",
    )
    add_json_option(parser)
    args = parser.parse_args()
    recorded = json.loads(args.hyperparameters.read_text())
    if "best" in recorded:  # a search's results.json
        values = recorded["best"]["hyperparameters"]
    else:  # a final.json, or the hyperparameters themselves
        values = recorded.get("hyperparameters", recorded)
    for assignment in args.set:
        name, _, value = assignment.partition("=")
        if name not in values:
            parser.error(f"--set {assignment}: no hyperparameter {name!r} in the configuration")
        values[name] = json.loads(value)

    data_overrides = ["data.fallback=null"] if args.data == "mnist" else []
    cfg, dataset = composed_dataset([f"data={args.data}", *data_overrides, "search_space=cnn_plus"])
    training = OmegaConf.to_container(cfg.training, resolve=True)
    rows = []
    print(f"configuration: {values}")
    sizes = f"{len(dataset.train)} training, {len(dataset.val)} validation digits"
    print(f"{sizes}; seed {training['seed']}")
    print("| epochs | val loss | val accuracy | s per epoch (median) |")
    print("| --- | --- | --- | --- |")
    for epochs in args.epochs:
        configure_backend(training)
        hypermodel, hp, model = fixed_model(cfg, values, dataset)
        clock = _EpochClock()
        history = hypermodel.fit(
            hp,
            model,
            dataset.train.images,
            dataset.train.labels,
            epochs=epochs,
            batch_size=training["batch_size"],
            validation_data=(dataset.val.images, dataset.val.labels),
            callbacks=[clock],
            verbose=0,
        ).history
        median = sorted(clock.seconds)[len(clock.seconds) // 2]
        print(
            f"| {epochs} | {history['val_loss'][-1]:.4f} | {history['val_accuracy'][-1]:.4f} "
            f"| {median:.1f} |",
            flush=True,
        )
        rows.append(
            {
                "epochs": epochs,
                "val_loss": history["val_loss"][-1],
                "val_accuracy": history["val_accuracy"][-1],
                "s_per_epoch_median": median,
            }
        )
    write_json(args.json, {"hyperparameters": values, "rows": rows})


if __name__ == "__main__":
    main()
