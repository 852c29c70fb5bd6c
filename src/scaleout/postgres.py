"""A PostgreSQL cluster of the project's own, for the MLflow tracking server.

PostgreSQL is Debian's (``apt-get install postgresql``); its cluster lives in
``mlruns/postgres/`` (created on first use, with the database). Credentials are
PostgreSQL's own variables (PGUSER, PGPASSWORD, PGDATABASE, PGPORT) from the environment or
a git-ignored ``.env``; on first use, with no password set anywhere, a random one is
written to ``.env``. Paths are relative to the folder the commands run in (the checkout).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from src.scaleout.process import Service, ServiceError

log = logging.getLogger(__name__)

ENV_FILE = Path(".env")
DEFAULT_PG_DIR = Path("mlruns") / "postgres"
# Not 5432, which a system-wide PostgreSQL may hold.
DEFAULT_PG_PORT = 5433


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
                "stop it, or use its tracking server (src.scaleout.cluster --tracking-uri URL)"
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
