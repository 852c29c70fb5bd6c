"""A PostgreSQL cluster of the project's own, for the MLflow tracking server.

PostgreSQL is Debian's (``apt-get install postgresql``); its cluster lives in
``mlruns/postgres/`` (created on first use, with the database). Credentials are
PostgreSQL's own variables (PGUSER, PGPASSWORD, PGDATABASE, PGPORT) from the environment or
a git-ignored ``.env``; on first use, with no password set anywhere, a random one is
written to ``.env``. Paths are relative to the folder the commands run in (the checkout).

MLflow logs in as an ordinary role (PGUSER) that owns the MLflow database and nothing
else; the cluster's superuser, `ADMIN_USER` (password PGADMINPASSWORD, also written to
``.env`` on first use), only creates that role and database.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from src.scaleout.process import Service, ServiceError

log = logging.getLogger(__name__)

ENV_FILE = Path(".env")
DEFAULT_PG_DIR = Path("mlruns") / "postgres"
# Not 5432, which a system-wide PostgreSQL may hold.
DEFAULT_PG_PORT = 5433
# Runs a program as the postgres user that Debian's package creates (``--`` and the
# program follow); unlike runuser, setpriv execs it, so no process sits in between.
_AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
# The cluster's superuser: creates MLflow's role and database, and is never MLflow's.
ADMIN_USER = "cluster_admin"


@dataclass(frozen=True)
class Credentials:
    """How to reach the tracking database (PostgreSQL's own variable names)."""

    user: str
    password: str = field(repr=False)
    database: str
    port: int
    host: str = "127.0.0.1"
    admin_password: str = field(default="", repr=False)

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
    values = _environment(env_file)
    password = env_secret("PGPASSWORD", env_file, create, values)
    admin_password = env_secret("PGADMINPASSWORD", env_file, create, values)
    port = values.get("PGPORT") or str(DEFAULT_PG_PORT)
    if not port.isdigit():
        raise ServiceError(f"PGPORT={port!r} is not a port number")
    user = values.get("PGUSER") or "mlflow"
    if user == ADMIN_USER:
        raise ServiceError(f"PGUSER={user!r}: that is the cluster's superuser, not MLflow's role")
    return Credentials(
        user=user,
        password=password,
        database=values.get("PGDATABASE") or "mlflow",
        port=int(port),
        admin_password=admin_password,
    )


def env_secret(
    name: str, env_file: Path = ENV_FILE, create: bool = False, values: dict | None = None
) -> str:
    """A password from the environment, then ``env_file``; a new random one (appended to
    ``env_file``, created private) if there is none and ``create`` is set.

    Raises:
        ServiceError: none anywhere, and ``create`` is false.
    """
    if values is None:
        values = _environment(env_file)
    value = values.get(name)
    if value:
        return value
    if not create:
        raise ServiceError(f"no {name} in the environment or in {env_file}")
    value = secrets.token_urlsafe(18)
    # Created private: never readable by others, not even for a moment.
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "a") as handle:
        handle.write(f"{name}={value}\n")
    log.info("wrote a new %s to %s (git-ignored)", name, env_file)
    return value


def _environment(env_file: Path) -> dict:
    """The variables of ``env_file`` (if it exists), overridden by the environment's."""
    from dotenv import dotenv_values

    return {**dotenv_values(env_file), **os.environ} if env_file.is_file() else dict(os.environ)


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
        self.service: Service | None = None

    def _accepting(self) -> bool:
        """Whether the server accepts connections (pg_isready)."""
        host, port = self.credentials.host, str(self.credentials.port)
        check = [str(self.bin / "pg_isready"), "-q", "-h", host, "-p", port]
        return subprocess.run(check, capture_output=True, timeout=10).returncode == 0

    def _run(self, *command: str, check: bool = True) -> int:
        prefix = [*_AS_POSTGRES, "--"] if self.as_postgres else []
        result = subprocess.run(
            [*prefix, *command],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",  # the working folder may be closed to the postgres user
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
        # In the foreground, as a `Service`: pg_ctl would daemonise it, and a PostgreSQL
        # that outlives its supervisor refuses the next start. Under root it runs as the
        # postgres user, re-armed to stop (SIGINT: a fast shutdown) when its parent dies.
        command = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            f"listen_addresses={self.credentials.host}",
            "-p",
            str(self.credentials.port),
            "-k",
            str(self.data_dir),
        ]
        if self.as_postgres:
            command = [*_AS_POSTGRES, "--pdeathsig=INT", "--", *command]
        self.service = Service(
            "PostgreSQL", command, self.data_dir / "server.log", stop_signal=signal.SIGINT
        )
        self.service.start(self._accepting, timeout=60)
        try:
            self._create_role_and_database()
        except Exception:
            self.stop()  # nothing left running that the next start would trip over
            raise
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
            pwfile.write(self.credentials.admin_password + "\n")
            pwfile.flush()
            if self.as_postgres:
                shutil.chown(pwfile.name, "postgres")
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                ADMIN_USER,
                "--pwfile",
                pwfile.name,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            )
        log.info("created a PostgreSQL cluster in %s", self.data_dir)

    def _create_role_and_database(self) -> None:
        """MLflow's ordinary role (password kept in step with PGPASSWORD) and its database."""
        import psycopg2
        from psycopg2 import sql

        creds = self.credentials
        try:
            connection = psycopg2.connect(
                host=creds.host,
                port=creds.port,
                user=ADMIN_USER,
                password=creds.admin_password,
                dbname="postgres",
            )
        except psycopg2.OperationalError as error:
            first = str(error).strip().splitlines()[-1]
            raise ServiceError(
                f"cannot log in to {self.data_dir} as {ADMIN_USER} ({first}): PGADMINPASSWORD "
                "must be the one the cluster was created with (in .env); a cluster made "
                "before MLflow had a role of its own: remove that folder to recreate it"
            ) from None
        role, database = sql.Identifier(creds.user), sql.Identifier(creds.database)
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (creds.user,))
                verb = "ALTER" if cursor.fetchone() else "CREATE"
                cursor.execute(
                    sql.SQL(
                        "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %s"
                    ).format(sql.SQL(verb), role),
                    (creds.password,),
                )
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (creds.database,))
                if cursor.fetchone() is None:
                    cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))
                    log.info("created database %s owned by %s", creds.database, creds.user)
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop the server this object started (a fast shutdown: sessions are ended)."""
        if self.service is not None:
            self.service.stop()
            self.service = None

    def __enter__(self) -> Postgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
