"""Scale-out: Keras Tuner's chief and workers, the supervisor, PostgreSQL, parallel multirun.

The end-to-end tests run `python -m src.scaleout.cluster` against a real MLflow server on a real
PostgreSQL cluster (`postgres_tracking_server`), every process on loopback and stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import keras_tuner
import pytest
from helpers import REPO_ROOT, TINY_OVERRIDES, run_cli, sqlite_uri, start_cli, wait_for
from mlflow import MlflowClient
from mlflow.entities import ViewType

from src.errors import DistributedError
from src.scaleout.process import free_port
from src.search.distributed import (
    ORACLE_IP,
    ORACLE_PORT,
    TUNER_ID,
    configure_role,
    fail_orphaned_trials,
    serve_oracle,
)

PARENT = "mlflow.parentRunId"
ROLE_DEFAULTS = {"search_id": "s1", "chief_timeout_s": 5}


# -- roles -----------------------------------------------------------------------------------
@pytest.fixture
def kt_env(monkeypatch):
    for name in (ORACLE_IP, ORACLE_PORT, TUNER_ID):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_plain_run_has_no_role_and_a_stray_chief_address_is_refused(kt_env):
    assert configure_role({"role": None, **ROLE_DEFAULTS}) is None
    kt_env.setenv(ORACLE_IP, "127.0.0.1")
    with pytest.raises(DistributedError, match="KERASTUNER_ORACLE_IP is set but distributed"):
        configure_role({"role": None, **ROLE_DEFAULTS})


def test_roles_need_keras_tuners_variables(kt_env):
    with pytest.raises(DistributedError, match="needs KERASTUNER_ORACLE_IP and KERASTUNER_ORA"):
        configure_role({"role": "chief", **ROLE_DEFAULTS})
    kt_env.setenv(ORACLE_IP, "127.0.0.1")
    kt_env.setenv(ORACLE_PORT, "http")
    with pytest.raises(DistributedError, match="'http' is not a port number"):
        configure_role({"role": "chief", **ROLE_DEFAULTS})
    kt_env.setenv(ORACLE_PORT, "8000")
    with pytest.raises(DistributedError, match="needs KERASTUNER_TUNER_ID"):
        configure_role({"role": "worker", **ROLE_DEFAULTS})
    kt_env.setenv(TUNER_ID, "chief-1")
    with pytest.raises(DistributedError, match="without 'chief'"):
        configure_role({"role": "worker", **ROLE_DEFAULTS})
    kt_env.delenv(TUNER_ID)
    assert configure_role({"role": "chief", **ROLE_DEFAULTS}) == "chief"
    assert os.environ[TUNER_ID] == "chief"


def test_a_role_without_a_search_id_fails_in_a_second_with_one_line(tmp_path):
    start = time.monotonic()
    result = run_cli("distributed.role=worker", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: distributed.search_id=None: expected a non-empty string"
    )
    assert time.monotonic() - start < 20


def test_the_supervisor_rejects_a_bad_search_before_starting_anything(tmp_path):
    result = run_cli(
        "--workers",
        "2",
        "--",
        "training.epochs=0",
        cwd=tmp_path,
        module="src.scaleout.cluster",
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: training.epochs=0: expected an integer >= 1"
    ]
    assert not (tmp_path / "outputs").exists()


def _member_env(kt_env, tuner_id: str) -> int:
    """Keras Tuner's variables for one member on loopback; returns the oracle's port."""
    port = free_port()
    for name, value in {ORACLE_IP: "127.0.0.1", ORACLE_PORT: str(port), TUNER_ID: tuner_id}.items():
        kt_env.setenv(name, value)
    return port


@pytest.mark.slow
def test_a_worker_without_a_chief_gives_up_with_a_clear_message(tmp_path, kt_env):
    port = _member_env(kt_env, "w0")
    result = run_cli(
        *TINY_OVERRIDES,
        "distributed.role=worker",
        "distributed.search_id=s1",
        "distributed.chief_timeout_s=2",
        "mlflow.enabled=false",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: no chief answered at 127.0.0.1:{port} within 2s "
        "(distributed.chief_timeout_s): start the chief first, or check the address"
    )


@pytest.mark.slow
def test_a_release_signal_during_the_chiefs_start_up_does_not_kill_it(tmp_path, kt_env):
    """SIGUSR1 (the supervisor's "no worker is coming back") sent while the chief is still
    importing and loading: the handler is armed first, so the chief lives on, serves, sees
    the release and finishes with the trials it has (none here), with one line."""
    _member_env(kt_env, "chief")
    chief = start_cli(
        *TINY_OVERRIDES,
        "distributed.role=chief",
        "distributed.search_id=early",
        "mlflow.enabled=false",
        "hydra.run.dir=run",
        cwd=tmp_path,
        stderr=subprocess.PIPE,
    )
    try:
        # run.log exists once Hydra hands over to src.run's main, which arms the handler
        # first; TensorFlow, the data and the oracle are still to load.
        wait_for(lambda: (tmp_path / "run" / "run.log").is_file(), 60, "the chief's main")
        time.sleep(0.5)
        chief.send_signal(signal.SIGUSR1)
        _, stderr = chief.communicate(timeout=120)
    finally:
        if chief.poll() is None:
            chief.kill()
    assert chief.returncode == 1, stderr[-2000:]  # not killed by the signal (-10)
    assert stderr.strip().splitlines()[-1].startswith("error: every trial failed")


# -- the chief's way out -------------------------------------------------------------------
def _oracle(tmp_path: Path) -> keras_tuner.Oracle:
    hp = keras_tuner.HyperParameters()
    hp.Choice("units", [8, 16, 32])
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective="val_accuracy", max_trials=3, hyperparameters=hp, seed=1
    )
    oracle._set_project_dir(str(tmp_path), "oracle")
    return oracle


def test_releasing_the_chief_fails_orphaned_trials_and_ends_its_loop(tmp_path, kt_env):
    """Keras Tuner's own loop would wait forever for a worker that died mid-trial."""
    from keras_tuner.src.distribute import oracle_chief

    oracle = _oracle(tmp_path)
    orphan = oracle.create_trial("worker-0")
    assert not oracle_chief.exit_chief(oracle)  # what keeps Keras Tuner's chief waiting
    kt_env.setenv(ORACLE_IP, "127.0.0.1")
    kt_env.setenv(ORACLE_PORT, str(free_port()))
    # SIGUSR1 as src.scaleout.cluster sends it once no worker is left.
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGUSR1)).start()
    start = time.monotonic()
    serve_oracle(oracle)
    assert time.monotonic() - start < 10
    trial = oracle.get_trial(orphan.trial_id)
    assert trial.status == "FAILED"
    assert "worker worker-0 stopped during this trial" in trial.message
    assert oracle_chief.exit_chief(oracle)
    assert fail_orphaned_trials(oracle) == []


# -- end to end: the supervisor, the workers, the tracking server ---------------------------
# Long enough trials (1,000 digits, 2 epochs) that a test can kill a worker mid-trial.
CLUSTER_OVERRIDES = [
    *TINY_OVERRIDES,
    "data.max_train_examples=1000",
    "training.epochs=2",
    "tuner.max_trials=4",
]


def _cluster_command(
    search_id: str,
    tracking_uri: str | None,
    *options: str,
    overrides: Sequence[str] = CLUSTER_OVERRIDES,
) -> list[str]:
    """`make distributed` with 2 workers; into ``tracking_uri``, or (None) a PostgreSQL and
    MLflow server of its own."""
    store = ["--tracking-uri", tracking_uri] if tracking_uri else []
    return [
        sys.executable,
        "-m",
        "src.scaleout.cluster",
        "--workers",
        "2",
        "--search-id",
        search_id,
        *store,
        *options,
        "--",
        *overrides,
    ]


def _search_runs(tracking_uri: str, search_id: str) -> tuple[object, list, list]:
    """The search's parent run, its trial runs (deleted ones too) and its final run."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("mnist-cnn")
    runs = client.search_runs(
        [experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000
    )
    parents = [r for r in runs if r.data.tags.get("search_id") == search_id]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get(PARENT) == parent.info.run_id]
    trials = [r for r in children if r.data.tags.get("run_kind") == "trial"]
    finals = [r for r in children if r.data.tags.get("run_kind") == "final"]
    return parent, trials, finals


def _pid_of(search_id: str, member: str) -> int | None:
    """The pid of a member process that src.scaleout.cluster started (found by its run folder)."""
    marker = f"hydra.run.dir=outputs/distributed/{search_id}/{member}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                arguments = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # The member itself, not the reaper shim that started it (src.scaleout.reaper).
            if marker in arguments and not any(a.endswith(b"reaper.py") for a in arguments):
                return int(entry.name)
    return None


def _kill_mid_trial(tracking_uri: str, search_id: str, member: str) -> str:
    """Wait until `member` runs a trial, SIGKILL it, and return that trial's id."""
    client = MlflowClient(tracking_uri)
    running: list = []

    def member_runs_a_trial() -> bool:
        experiment = client.get_experiment_by_name("mnist-cnn")
        if experiment is None:  # src.scaleout.cluster has not prepared the store yet
            return False
        running[:] = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.worker = '{member}' and attributes.status = 'RUNNING'",
        )
        return bool(running)

    wait_for(member_runs_a_trial, 240, f"{member} to start a trial")
    pid = _pid_of(search_id, member)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return running[0].data.tags["trial_id"]


def _run_and_kill_worker_0(
    tmp_path: Path, tracking_uri: str, search_id: str, *options: str
) -> tuple[int, str, str]:
    """Run the supervisor, SIGKILL worker-0 mid-trial; the exit code, output and killed trial."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cluster = subprocess.Popen(
        _cluster_command(search_id, tracking_uri, *options),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        killed_trial = _kill_mid_trial(tracking_uri, search_id, "worker-0")
        output, _ = cluster.communicate(timeout=400)
    finally:
        if cluster.poll() is None:  # SIGTERM: the supervisor stops what it started
            cluster.terminate()
            cluster.wait(timeout=60)
    return cluster.returncode, output, killed_trial


@pytest.mark.slow
def test_chief_and_two_workers_complete_a_search_into_postgres_despite_a_killed_worker(
    tmp_path, postgres_tracking_server
):
    """`make distributed` end to end: a chief and two workers on a tracking server on
    PostgreSQL; worker-0 is SIGKILLed mid-trial, restarted under its id, and the search
    completes with every trial and the chief's final stage."""
    code, output, killed_trial = _run_and_kill_worker_0(tmp_path, postgres_tracking_server, "kill")
    assert code == 0, output[-3000:]
    assert "worker-0 ended with signal 9; restarting it under the same id" in output
    parent, trials, finals = _search_runs(postgres_tracking_server, "kill")
    assert parent.info.status == "FINISHED" and "best_trial_id" in parent.data.tags
    active = [r for r in trials if r.info.lifecycle_stage == "active"]
    assert sorted(r.data.tags["trial_id"] for r in active) == ["0", "1", "2", "3"]
    assert {r.info.status for r in active} == {"FINISHED"}
    assert {r.data.tags["worker"] for r in active} == {"worker-0", "worker-1"}
    assert all("val_accuracy" in r.data.metrics for r in active)
    assert len(finals) == 1 and finals[0].data.metrics["test_accuracy"] > 0.5
    assert (tmp_path / "outputs/distributed/kill/chief/results.json").is_file()
    # The killed attempt ended KILLED (in MLflow's trash); the trial ran again on worker-0.
    stale = [r for r in trials if r.info.lifecycle_stage == "deleted"]
    assert [(r.data.tags["trial_id"], r.info.status) for r in stale] == [(killed_trial, "KILLED")]
    rerun = next(r for r in active if r.data.tags["trial_id"] == killed_trial)
    assert rerun.data.tags["worker"] == "worker-0" and rerun.data.tags["attempt"] == "2"


@pytest.mark.slow
def test_a_worker_that_never_comes_back_does_not_hang_the_chief(tmp_path, postgres_tracking_server):
    code, output, lost_trial = _run_and_kill_worker_0(
        tmp_path, postgres_tracking_server, "gone", "--max-restarts", "0"
    )
    assert code == 0, output[-3000:]
    assert "giving it up" in output and "asking the chief to finish without them" in output
    parent, trials, finals = _search_runs(postgres_tracking_server, "gone")
    assert parent.info.status == "FINISHED" and len(finals) == 1
    statuses = {r.data.tags["trial_id"]: r.info.status for r in trials}
    assert statuses.pop(lost_trial) == "FAILED"
    assert set(statuses.values()) == {"FINISHED"}


# -- the shared store ------------------------------------------------------------------------
_LOG_RUNS = """
import sys
import tempfile
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name("concurrency")
for i in range(15):
    run = client.create_run(experiment.experiment_id, tags={"writer": sys.argv[2]})
    client.log_metric(run.info.run_id, "i", i)
    client.set_terminated(run.info.run_id)
"""


@pytest.mark.slow
def test_postgres_backed_server_keeps_every_run_of_two_concurrent_writers(
    postgres_tracking_server,
):
    client = MlflowClient(postgres_tracking_server)
    if client.get_experiment_by_name("concurrency") is None:
        client.create_experiment("concurrency")
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _LOG_RUNS, postgres_tracking_server, name],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr[-2000:]
    experiment = client.get_experiment_by_name("concurrency")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert sorted(r.data.tags["writer"] for r in runs) == ["a"] * 15 + ["b"] * 15
    assert all(r.data.metrics["i"] in range(15) for r in runs)


def test_database_credentials_come_from_the_environment_or_a_private_env_file(
    tmp_path, monkeypatch
):
    from src.scaleout.postgres import load_credentials
    from src.scaleout.process import ServiceError

    for name in ("PGUSER", "PGPASSWORD", "PGADMINPASSWORD", "PGDATABASE", "PGPORT"):
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    with pytest.raises(ServiceError, match="no PGPASSWORD"):
        load_credentials(env_file)
    created = load_credentials(env_file, create=True)
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert load_credentials(env_file).password == created.password  # read back, not renewed
    assert created.admin_password and created.admin_password != created.password
    env_file.write_text("PGPASSWORD=from-file\nPGADMINPASSWORD=admin\nPGPORT=6000\n")
    monkeypatch.setenv("PGPASSWORD", "from-env")  # the environment wins over the file
    credentials = load_credentials(env_file)
    assert credentials.password == "from-env"
    assert (credentials.port, credentials.user) == (6000, "mlflow")
    assert "from-env" not in credentials.sqlalchemy_uri  # never on a command line


def test_postgres_in_an_awkward_path_gives_mlflow_an_ordinary_role(request):
    """A cluster folder with a space and a command substitution in its path: quoted, never
    run; MLflow's role is no superuser; a database step that fails (a wrong admin
    password) leaves no PostgreSQL running, so the next start is not refused."""
    import psycopg2

    from src.scaleout.postgres import Credentials, Postgres
    from src.scaleout.process import ServiceError, free_port

    # Short (a Unix socket's path has at most 107 bytes) and reachable by the postgres user.
    base = Path(tempfile.mkdtemp(prefix="pg-"))
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    parent = base / "a b $(touch PWNED)"
    parent.mkdir()
    for folder in (base, parent):
        folder.chmod(0o755)  # PostgreSQL runs as the postgres user when this runs as root
    credentials = Credentials("mlflow", "role-pw", "mlflow", free_port(), admin_password="adm")
    try:
        cluster = Postgres(parent / "cluster", credentials).start()
    except ServiceError as error:
        if "not installed" in str(error) and not os.environ.get("CI"):
            pytest.skip(str(error))
        raise
    with cluster:
        with pytest.raises(ServiceError, match="a PostgreSQL server already runs on"):
            Postgres(parent / "cluster", credentials).start()  # a second one: refused
        connection = psycopg2.connect(
            host="127.0.0.1", port=credentials.port, user="mlflow", password="role-pw"
        )
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = 'mlflow'")
            assert cursor.fetchone() == (False, False)
        connection.close()
    assert not list(base.rglob("PWNED")) and not (Path("/") / "PWNED").exists()

    wrong = Credentials("mlflow", "role-pw", "mlflow", credentials.port, admin_password="no")
    with pytest.raises(ServiceError, match="PGADMINPASSWORD must be the one"):
        Postgres(parent / "cluster", wrong).start()
    assert not (parent / "cluster" / "postmaster.pid").exists()  # stopped again
    Postgres(parent / "cluster", credentials).start().stop()  # and the next start works


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (by parent pid, read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.mark.slow
def test_a_sigkilled_supervisor_leaves_no_process_behind(tmp_path):
    """`make distributed` with its own PostgreSQL and MLflow server: SIGKILL the supervisor
    mid-search (no cleanup of its own can run); every process it started ends within
    seconds, and the next supervisor starts on the same cluster folder cleanly."""
    base = Path(tempfile.mkdtemp(prefix="pg-"))  # short, and open to the postgres user
    base.chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "MLFLOW_"))},
        "PYTHONPATH": str(REPO_ROOT),
        "PGPORT": str(free_port()),
    }

    def supervisor(search_id: str) -> subprocess.Popen:
        command = _cluster_command(search_id, None, "--pg-dir", str(base / "cluster"))
        return subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    try:
        first = supervisor("first")
        log = tmp_path / "outputs" / "distributed" / "first" / "worker-1.log"
        wait_for(lambda: log.is_file() and log.stat().st_size > 0, 180, "worker-1 to start")
        started = _descendants(first.pid)
        assert len(started) >= 8  # reapers, PostgreSQL (and backends), MLflow, chief, workers
        first.kill()
        first.wait()
        wait_for(lambda: not any(_alive(p) for p in started), 30, "every started process to end")

        second = supervisor("second")
        chief_log = tmp_path / "outputs" / "distributed" / "second" / "chief.log"
        wait_for(lambda: chief_log.is_file(), 180, "the second supervisor's chief to start")
        started = _descendants(second.pid)
        second.terminate()  # SIGTERM: stops everything it started, in order
        output, _ = second.communicate(timeout=120)
        assert b"already runs" not in output, output.decode(errors="replace")[-2000:]
        wait_for(lambda: not any(_alive(p) for p in started), 30, "the second's processes to end")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_reused_search_id_is_refused_unless_resuming(tmp_path):
    """A second search under an id whose folder exists would start a fresh oracle over the
    first one's runs: refused in one line, before anything starts."""
    (tmp_path / "outputs" / "distributed" / "taken").mkdir(parents=True)
    command = _cluster_command("taken", sqlite_uri(tmp_path))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: search id 'taken' was used before (outputs/distributed/taken): add "
        "resume=true to continue that search, or choose another --search-id"
    )
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_a_tpe_search_over_two_workers_prunes_on_the_chief(tmp_path, postgres_tracking_server):
    """`tuner=tpe` with a pruner over a chief and two workers: the workers report every
    epoch, the chief's oracle (and only its Optuna study) decides which trial stops."""
    overrides = [
        *CLUSTER_OVERRIDES,
        "tuner=tpe",
        "training.epochs=3",
        # 1e-5 leaves a trial near chance after two epochs; 0.003 does not.
        "~search_space.learning_rate",
        "+search_space.learning_rate=[0.003,0.00001]",
        "tuner.pruner={name: threshold, lower: 0.3, n_warmup_steps: 2}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = _cluster_command("tpe", postgres_tracking_server, overrides=overrides)
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    search = tmp_path / "outputs/distributed/tpe"
    results = json.loads((search / "chief/results.json").read_text())
    outcomes = {
        (t["hyperparameters"]["learning_rate"], t["status"], t["epochs_run"])
        for t in results["trials"]
    }
    assert outcomes == {(0.003, "COMPLETED", 3), (0.00001, "PRUNED", 2)}
    # One study, on the chief; the workers keep none.
    assert (search / "chief/tuner/optuna.journal").is_file()
    assert not list(search.glob("worker-*/**/optuna.journal"))
    _, trials, _ = _search_runs(postgres_tracking_server, "tpe")
    active = [r for r in trials if r.info.lifecycle_stage == "active"]
    pruned = [r for r in active if r.data.tags["trial_status"] == "PRUNED"]
    assert pruned and {r.data.params["learning_rate"] for r in pruned} == {"1e-05"}
    assert {r.data.tags["worker"] for r in active} == {"worker-0", "worker-1"}


@pytest.mark.slow
def test_a_budgeted_search_over_two_workers_ends_on_the_chiefs_clock(
    tmp_path, postgres_tracking_server
):
    """`budget=` with a chief and two workers: no trial cap, the chief owns the clock, so
    the search ends when its budget says (the workers get no more trials), and the chief's
    final stage fits the rest and registers."""
    overrides = [*CLUSTER_OVERRIDES, "budget=100s", "tuner.max_trials=null"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = _cluster_command("budgeted", postgres_tracking_server, overrides=overrides)
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    chief = tmp_path / "outputs/distributed/budgeted/chief"
    results = json.loads((chief / "results.json").read_text())
    assert results["budget"]["search_stopped_because"].startswith("budget:"), results["budget"]
    assert len(results["trials"]) >= 1
    final = json.loads((chief / "final/final.json").read_text())
    # The chief's clock, start-up included: within the budget, or past it by less than an
    # epoch of the tiny final model and its registration.
    assert final["budget"]["spent_s"] <= 100 + 15, final["budget"]
    parent, trials, finals = _search_runs(postgres_tracking_server, "budgeted")
    assert parent.info.status == "FINISHED"
    assert len(finals) == 1 and finals[0].data.metrics["test_accuracy"] > 0.3
    active = [r for r in trials if r.info.lifecycle_stage == "active"]
    assert len(active) == len(results["trials"])


@pytest.mark.slow
def test_four_workers_load_the_postgres_backed_server_and_every_run_finishes(
    tmp_path, postgres_tracking_server
):
    """Load: a chief and four workers (five processes logging every epoch, plus the final
    stage's registration) against one tracking server on PostgreSQL: every trial runs once
    and FINISHED, each worker ran trials, nothing surfaced a database error, and the final
    model is registered and champion of its own name (the first version of a name is)."""
    overrides = [
        *CLUSTER_OVERRIDES,
        "tuner.max_trials=8",
        "training.epochs=1",
        "final.model_name=load-four-workers",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = _cluster_command("four", postgres_tracking_server, overrides=overrides)
    command[command.index("--workers") + 1] = "4"
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    for trouble in ("database is locked", "OperationalError", "deadlock", "Traceback"):
        assert trouble not in output, trouble
    parent, trials, finals = _search_runs(postgres_tracking_server, "four")
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.tags["trial_id"] for r in trials) == [str(i) for i in range(8)]
    assert {r.info.status for r in trials} == {"FINISHED"}
    assert all("val_accuracy" in r.data.metrics for r in trials)
    assert {r.data.tags["worker"] for r in trials} == {f"worker-{i}" for i in range(4)}
    assert len(finals) == 1 and finals[0].info.status == "FINISHED"
    client = MlflowClient(postgres_tracking_server)
    champion = client.get_model_version_by_alias("load-four-workers", "champion")
    assert champion.run_id == finals[0].info.run_id
    print(f"chief + 4 workers, 8 trials and the final stage into PostgreSQL: {elapsed:.0f} s")
