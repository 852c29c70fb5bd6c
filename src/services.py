"""A shared MLflow tracking server on PostgreSQL, on this machine.

    make tracking-server        # PostgreSQL + `mlflow server` on 127.0.0.1; Ctrl-C stops both
    python -m src.services tracking-server --port 5002

PostgreSQL is Debian's (``apt-get install postgresql``); its cluster lives in
``mlruns/postgres/`` (created on first use, with the database), the server's artifacts in
``mlruns/server-artifacts/``. MLflow proxies artifacts (``--artifacts-destination``), so
clients on other machines need only the server's URL. Credentials are PostgreSQL's own
variables (PGUSER, PGPASSWORD, PGDATABASE, PGPORT) from the environment or a git-ignored
``.env``; on first use, with no password set anywhere, a random one is written to ``.env``.

`Service` runs one server process in a session of its own and stops it (and whatever it
started) by its process group; the tests and ``src.cluster`` use it too.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = REPO_ROOT / ".env"
DEFAULT_PG_DIR = REPO_ROOT / "mlruns" / "postgres"
DEFAULT_ARTIFACTS = REPO_ROOT / "mlruns" / "server-artifacts"
DEFAULT_SERVER_PORT = 5002
# Not 5432, which a system-wide PostgreSQL may hold.
DEFAULT_PG_PORT = 5433
# Loopback HTTP never goes through a proxy, whatever the environment says.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceError(RuntimeError):
    """A service could not be started; the message says which and why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str, timeout: float = 2) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with _LOOPBACK.open(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


class Service:
    """One server process in a session of its own, logging to a file; stopped by its group.

    Args:
        name: For messages.
        command: The command line.
        log_file: Where its output goes (the last lines are quoted when it fails to start).
        env: Its environment (default: this process's).
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_file: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_file = Path(log_file)
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], bool], timeout: float) -> Service:
        """Start the process and wait until ``ready()`` holds; raise `ServiceError` if not."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as output:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with {self.process.returncode}: {self.log_tail()}"
                )
            if ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise ServiceError(f"{self.name} was not ready after {timeout:g}s: {self.log_tail()}")

    def log_tail(self, lines: int = 3) -> str:
        """The last lines of the log, on one line."""
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group, SIGKILL it if it is still there after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- PostgreSQL -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    """How to reach the tracking database (PostgreSQL's own variable names)."""

    user: str
    password: str
    database: str
    port: int
    host: str = "127.0.0.1"

    @property
    def sqlalchemy_uri(self) -> str:
        """MLflow's backend store URI; the password stays in PGPASSWORD, off command lines."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{self.database}"

    def environment(self) -> dict[str, str]:
        """The variables libpq (and so MLflow's server) reads."""
        return {"PGPASSWORD": self.password, "PGUSER": self.user}


def load_credentials(env_file: Path = ENV_FILE, create: bool = False) -> Credentials:
    """Credentials from the environment, then ``env_file``; a new random password if asked.

    Raises:
        ServiceError: no PGPASSWORD anywhere and ``create`` is false.
    """
    from dotenv import dotenv_values

    values = {**dotenv_values(env_file), **os.environ} if env_file.is_file() else dict(os.environ)
    password = values.get("PGPASSWORD")
    if not password:
        if not create:
            raise ServiceError(f"no PGPASSWORD in the environment or in {env_file}")
        password = secrets.token_urlsafe(18)
        # Created private: never readable by others, not even for a moment.
        descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a") as handle:
            handle.write(f"PGPASSWORD={password}\n")
        log.info("wrote a new database password to %s (git-ignored)", env_file)
    port = values.get("PGPORT") or str(DEFAULT_PG_PORT)
    if not port.isdigit():
        raise ServiceError(f"PGPORT={port!r} is not a port number")
    return Credentials(
        user=values.get("PGUSER") or "mlflow",
        password=password,
        database=values.get("PGDATABASE") or "mlflow",
        port=int(port),
    )


def _postgres_bin() -> Path:
    """The folder of Debian's PostgreSQL server programs (the newest version installed)."""

    def version(pg_ctl: Path) -> int:
        name = pg_ctl.parent.parent.name
        return int(name) if name.isdigit() else 0

    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=version)
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise ServiceError("PostgreSQL's server is not installed: apt-get install postgresql")


class Postgres:
    """A PostgreSQL cluster of our own in ``data_dir``, on 127.0.0.1 only.

    PostgreSQL refuses to run as root; under root (containers, CI) its programs run as the
    ``postgres`` user that Debian's package creates, and the cluster folder is theirs.
    """

    def __init__(self, data_dir: Path, credentials: Credentials) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.credentials = credentials
        self.bin = _postgres_bin()
        self.as_postgres = os.geteuid() == 0

    def _run(self, *command: str, check: bool = True) -> int:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        result = subprocess.run(
            [*prefix, *command],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",  # runuser keeps the working folder, which the postgres user may not read
        )
        if check and result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise ServiceError(f"{Path(command[0]).name} failed: {' | '.join(message[-3:])}")
        return result.returncode

    def start(self) -> Postgres:
        """Create the cluster if missing, start it, create the database if missing."""
        if not (self.data_dir / "PG_VERSION").is_file():
            self._init_cluster()
        elif (
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "status", check=False)
            == 0
        ):
            raise ServiceError(
                f"a PostgreSQL server already runs on {self.data_dir} (make tracking-server?): "
                "stop it, or use its tracking server (src.cluster --tracking-uri URL)"
            )
        log_file = self.data_dir / "server.log"
        options = (
            f"-c listen_addresses={self.credentials.host} -p {self.credentials.port} "
            f"-k {self.data_dir}"
        )
        try:
            self._run(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            )
        except ServiceError as error:
            tail = Service("postgres", [], log_file).log_tail()
            raise ServiceError(
                f"PostgreSQL did not start on port {self.credentials.port}: {tail}"
            ) from error
        self._create_database()
        return self

    def _init_cluster(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.as_postgres:
            shutil.chown(self.data_dir, "postgres", "postgres")
            blocked = next(
                (p for p in self.data_dir.parents if not os.stat(p).st_mode & 0o001), None
            )
            if blocked is not None:
                raise ServiceError(
                    f"the postgres user cannot enter {blocked}: put the cluster "
                    "somewhere it can reach"
                )
        with tempfile.NamedTemporaryFile("w", suffix=".pw") as pwfile:
            pwfile.write(self.credentials.password + "\n")
            pwfile.flush()
            if self.as_postgres:
                shutil.chown(pwfile.name, "postgres")
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.credentials.user,
                "--pwfile",
                pwfile.name,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            )
        log.info("created a PostgreSQL cluster in %s", self.data_dir)

    def _create_database(self) -> None:
        import psycopg2

        creds = self.credentials
        connection = psycopg2.connect(
            host=creds.host,
            port=creds.port,
            user=creds.user,
            password=creds.password,
            dbname="postgres",
        )
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (creds.database,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{creds.database}"')
                    log.info("created database %s", creds.database)
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: open sessions are ended)."""
        if (self.data_dir / "postmaster.pid").is_file():
            self._run(
                str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"
            )

    def __enter__(self) -> Postgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- MLflow ---------------------------------------------------------------------------------
def mlflow_server(
    backend_uri: str,
    artifacts_dir: Path,
    port: int,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
) -> Service:
    """An `mlflow server` on host:port (not started): one worker, no job runner.

    ``--workers 1`` and MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: /health answered after
    6.0 s from 2 processes, against 11.8 s from 15 with MLflow's defaults (SQLite store,
    measured here on 2 cores).
    """
    bin_dir = Path(sys.executable).parent
    server_env = {
        **os.environ,
        **(env or {}),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # mlflow starts uvicorn by name.
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [
        str(bin_dir / "mlflow"),
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(Path(artifacts_dir).resolve()),
    ]
    return Service(f"mlflow server on port {port}", command, log_file, server_env)


def start_mlflow(server: Service, port: int, timeout: float = 90, host: str = "127.0.0.1") -> str:
    """Start an `mlflow_server` and return its URL once /health answers."""
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    server.start(lambda: http_ok(f"{url}/health"), timeout)
    return url


@contextmanager
def tracking_server(
    pg_dir: Path,
    artifacts_dir: Path,
    credentials: Credentials,
    port: int,
    log_file: Path,
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """PostgreSQL in ``pg_dir`` and an MLflow server on it; yields the server's URL and
    stops both at exit."""
    with Postgres(pg_dir, credentials).start():
        server = mlflow_server(
            credentials.sqlalchemy_uri,
            artifacts_dir,
            port,
            log_file,
            credentials.environment(),
            host=host,
        )
        with server:
            yield start_mlflow(server, port, host=host)


@contextmanager
def scratch_tracking_server() -> Iterator[str]:
    """A throw-away `tracking_server` (temporary folder, random password, free loopback
    ports) for tests and benchmarks; removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="mnist-hps-pg-"))
    folder.chmod(0o755)  # PostgreSQL runs as the postgres user when this runs as root
    credentials = Credentials(
        user="mlflow", password=secrets.token_urlsafe(12), database="mlflow", port=free_port()
    )
    try:
        with tracking_server(
            folder / "cluster",
            folder / "artifacts",
            credentials,
            free_port(),
            folder / "mlflow-server.log",
        ) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _tracking_server(args: argparse.Namespace) -> int:
    credentials = load_credentials(create=True)
    log_file = Path(args.data_dir).parent / "mlflow-server.log"
    with tracking_server(
        args.data_dir, args.artifacts, credentials, args.port, log_file, host=args.host
    ) as url:
        print(
            f"MLflow tracking server at {url} (PostgreSQL {credentials.database} on "
            f"127.0.0.1:{credentials.port}); use it with MLFLOW_TRACKING_URI={url} or "
            "mlflow=server; Ctrl-C stops both",
            flush=True,
        )
        stop = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while http_ok(f"{url}/health", timeout=10):
                time.sleep(2)
            print(f"error: the MLflow server stopped answering; see {log_file}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            signal.signal(signal.SIGTERM, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m src.services tracking-server``."""
    parser = argparse.ArgumentParser(
        prog="python -m src.services", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("tracking-server", help="PostgreSQL + mlflow server")
    server.add_argument("--port", type=int, default=DEFAULT_SERVER_PORT)
    server.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to serve on (default loopback only; 0.0.0.0: every one)",
    )
    server.add_argument("--data-dir", type=Path, default=DEFAULT_PG_DIR)
    server.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _tracking_server(args)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
