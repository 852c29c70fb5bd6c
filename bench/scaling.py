"""Distributed search: trials per minute with 1 worker and with 2, and the server's latency.

Starts one MLflow tracking server on a PostgreSQL cluster of its own (temporary folder,
free loopback ports), then runs the same fixed search (random tuner, seed space, same
seeds and trial budget, the bundled sample) through ``python -m src.scaleout.cluster`` with 1
worker and with 2 workers, each worker single-threaded (``training.threads=1``), and no
final stage. It prints, for each:

- trials per minute over the trials' own span (first trial start to last trial end, from
  the MLflow runs), which leaves out start-up (importing TensorFlow, loading the data);
- the whole search's wall time, start-up included;

and the ratio of the two rates. On 2 cores two single-threaded workers can at best double
the rate; what is missing from 2x is coordination overhead (the chief, gRPC, MLflow) and
the cores' shared caches and memory bandwidth.

It then times what tracking adds to each epoch with a server: one ``log_batch`` of an
epoch's four metrics, as the tracker sends it, repeated, against the server and against a
SQLite file, and prints both next to the epoch time measured in the searches.

    .venv/bin/python bench/scaling.py [--trials 8] [--epochs 2] [--space default] [--cores]

``--cores`` adds one worker on two threads (one trial at a time on both cores, as a
one-process run trains), with ``training.deterministic`` true and false: whether two
single-threaded trials at once beat one trial on two threads, and what determinism costs.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import add_json_option, write_json
from mlflow import MlflowClient
from mlflow.entities import Metric

from src.scaleout.mlflow_server import scratch_tracking_server

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_search(
    workers: int,
    tracking_uri: str,
    args: argparse.Namespace,
    cwd: Path,
    threads: int = 1,
    extra: tuple[str, ...] = (),
) -> dict:
    """One distributed search; its trial rate, wall time and mean epoch time."""
    search_id = f"scaling-{workers}w{threads}t-{secrets.token_hex(3)}"
    command = [
        sys.executable,
        "-m",
        "src.scaleout.cluster",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--search-id",
        search_id,
        "--tracking-uri",
        tracking_uri,
        "--",
        "data=mnist_10k",
        "tuner=random",
        f"search_space={args.space}",
        f"tuner.max_trials={args.trials}",
        f"training.epochs={args.epochs}",
        f"training.early_stopping_patience={args.epochs}",
        "training.verbose=0",
        "final.enabled=false",
        "tuner.warm_start=null",
        "budget=null",  # trial counts, not a clock, so that every arm runs the same trials
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"the {workers}-worker search failed:\n{result.stdout[-3000:]}")

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("mnist-cnn")
    trials = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.run_kind = 'trial' and attributes.status = 'FINISHED'",
        max_results=1000,
    )
    parent = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.search_id = '{search_id}'"
    )[0]
    trials = [t for t in trials if t.data.tags["mlflow.parentRunId"] == parent.info.run_id]
    span_s = (max(t.info.end_time for t in trials) - min(t.info.start_time for t in trials)) / 1000
    epoch_s = statistics.mean(
        (t.info.end_time - t.info.start_time) / 1000 / args.epochs for t in trials
    )
    scores = sorted(
        (t.data.tags["trial_id"], round(t.data.metrics["trial_score"], 6)) for t in trials
    )
    return {
        "workers": workers,
        "threads": threads,
        "overrides": list(extra),
        "trials": len(trials),
        "span_s": span_s,
        "wall_s": wall,
        "per_minute": len(trials) / span_s * 60,
        "epoch_s": epoch_s,
        "scores": scores,
        "by_worker": sorted({t.data.tags["worker"] for t in trials}),
    }


def log_latency_ms(tracking_uri: str, repeats: int) -> float:
    """Median milliseconds of one epoch's log_batch (4 metrics) to ``tracking_uri``."""
    client = MlflowClient(tracking_uri)
    name = "latency"
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run_id = client.create_run(experiment_id).info.run_id
    times = []
    for epoch in range(repeats):
        metrics = [
            Metric(key, 0.5, int(time.time() * 1000), epoch)
            for key in ("loss", "accuracy", "val_loss", "val_accuracy")
        ]
        start = time.perf_counter()
        client.log_batch(run_id, metrics=metrics)
        times.append(time.perf_counter() - start)
    client.set_terminated(run_id)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200, help="log_batch calls timed")
    parser.add_argument("--space", default="cnn", help="a conf/search_space/ option")
    parser.add_argument(
        "--cores",
        action="store_true",
        help="also one worker on two threads, with and without training.deterministic: "
        "two single-threaded trials at once against one trial on both cores",
    )
    add_json_option(parser)
    args = parser.parse_args()

    with scratch_tracking_server() as url:
        with tempfile.TemporaryDirectory() as folder:
            runs = [run_search(workers, url, args, Path(folder)) for workers in (1, 2)]
            if args.cores:
                runs += [
                    run_search(1, url, args, Path(folder), threads=2),
                    run_search(1, url, args, Path(folder), 2, ("training.deterministic=false",)),
                ]
            sqlite_ms = log_latency_ms(f"sqlite:///{Path(folder) / 'latency.db'}", args.repeats)
        server_ms = log_latency_ms(url, args.repeats)

    print(
        f"\nsearch: random, {args.space} space, {args.trials} trials x {args.epochs} epochs, "
        "the bundled sample, tracking server on PostgreSQL"
    )
    for run in runs:
        print(
            f"  {run['workers']} worker(s) x {run['threads']} thread(s)"
            f"{' ' + ' '.join(run['overrides']) if run['overrides'] else ''}: "
            f"{run['trials']} trials in {run['span_s']:.1f} s "
            f"of trials ({run['per_minute']:.2f} trials/min), {run['wall_s']:.1f} s wall with "
            f"start-up; mean epoch {run['epoch_s']:.1f} s; workers {', '.join(run['by_worker'])}"
        )
    one, two = runs[:2]
    if args.cores:
        both_cores, nondeterministic = runs[2:]
        print(
            "  2 single-threaded workers vs 1 worker on 2 threads: "
            f"{two['per_minute'] / both_cores['per_minute']:.2f}x trials/min; "
            "training.deterministic=false vs true on 2 threads: "
            f"{nondeterministic['per_minute'] / both_cores['per_minute']:.2f}x trials/min"
        )
    print(
        f"  speed-up 2 workers vs 1: {two['per_minute'] / one['per_minute']:.2f}x trials/min, "
        f"{one['wall_s'] / two['wall_s']:.2f}x wall time"
    )
    print(f"  same trial scores with 1 and 2 workers: {one['scores'] == two['scores']}")
    print(
        f"tracking latency per logged epoch (median of {args.repeats} log_batch calls): "
        f"server {server_ms:.1f} ms, SQLite file {sqlite_ms:.1f} ms; added by the server "
        f"{server_ms - sqlite_ms:+.1f} ms = {(server_ms - sqlite_ms) / 10 / one['epoch_s']:.3f} "
        f"% of a {one['epoch_s']:.1f} s epoch"
    )
    latency = {"server_ms": server_ms, "sqlite_ms": sqlite_ms}
    write_json(args.json, {"runs": runs, "log_batch_latency": latency})


if __name__ == "__main__":
    main()
