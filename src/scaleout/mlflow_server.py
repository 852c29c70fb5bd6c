"""The MLflow tracking server: ``mlflow server`` on a PostgreSQL store, on loopback by default.

MLflow proxies artifacts (``--artifacts-destination``), so clients on other machines need
only the server's URL. Beyond loopback the server must run MLflow's basic-auth app
(``auth``): unauthenticated, anyone who reaches it could move ``@champion``, and
``make serve`` would then load and run whatever model it points to.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from src.scaleout.postgres import Credentials, Postgres
from src.scaleout.process import Service, ServiceError, free_port, http_ok

DEFAULT_ARTIFACTS = Path("mlruns") / "server-artifacts"
DEFAULT_SERVER_PORT = 5002
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class BasicAuth:
    """MLflow's basic-auth app: its admin (created on first start) and its user database."""

    admin_username: str
    admin_password: str = field(repr=False)
    database: Path

    def config_file(self, folder: Path) -> Path:
        """Write the app's ini (private: it holds the admin's password) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "mlflow-auth.ini"
        text = (
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{Path(self.database).resolve()}\n"
            f"admin_username = {self.admin_username}\n"
            f"admin_password = {self.admin_password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        return path


def require_auth_beyond_loopback(host: str, auth: BasicAuth | None) -> None:
    """Raise `ServiceError` for a host other than loopback without authentication."""
    if host not in LOOPBACK_HOSTS and auth is None:
        raise ServiceError(
            f"--host {host}: an MLflow server beyond loopback needs authentication "
            "(--auth, or TRACKING_AUTH=1 for make tracking-server): unauthenticated, anyone "
            "who reaches it could move @champion"
        )


def mlflow_server(
    backend_uri: str,
    artifacts_dir: Path,
    port: int,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    auth: BasicAuth | None = None,
) -> Service:
    """An `mlflow server` on host:port (not started): one worker, no job runner; with
    ``auth``, behind MLflow's basic-auth app.

    Raises:
        ServiceError: a host other than loopback without ``auth``.

    ``--workers 1`` and MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: /health answered after
    6.0 s from 2 processes, against 11.8 s from 15 with MLflow's defaults (SQLite store,
    measured here on 2 cores).
    """
    require_auth_beyond_loopback(host, auth)
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
    if auth is not None:
        server_env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth.config_file(Path(log_file).parent))
        # The auth app signs its CSRF tokens with this key; one server, so a fresh one does.
        server_env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        command += ["--app-name", "basic-auth"]
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
    auth: BasicAuth | None = None,
) -> Iterator[str]:
    """PostgreSQL in ``pg_dir`` and an MLflow server on it; yields the server's URL and
    stops both at exit."""
    require_auth_beyond_loopback(host, auth)  # before anything starts
    with Postgres(pg_dir, credentials).start():
        server = mlflow_server(
            credentials.sqlalchemy_uri,
            artifacts_dir,
            port,
            log_file,
            credentials.environment(),
            host=host,
            auth=auth,
        )
        with server:
            yield start_mlflow(server, port, host=host)


@contextmanager
def scratch_tracking_server() -> Iterator[str]:
    """A throw-away `tracking_server` (temporary folder, random password, free loopback
    ports) for tests and benchmarks (`bench/scaling.py`); removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="mnist-hps-pg-"))
    folder.chmod(0o755)  # PostgreSQL runs as the postgres user when this runs as root
    credentials = Credentials(
        user="mlflow",
        password=secrets.token_urlsafe(12),
        database="mlflow",
        port=free_port(),
        admin_password=secrets.token_urlsafe(12),
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
