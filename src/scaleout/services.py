"""A shared MLflow tracking server on PostgreSQL, on this machine.

    make tracking-server        # PostgreSQL + `mlflow server` on 127.0.0.1; Ctrl-C stops both
    python -m src.scaleout.services tracking-server --port 5002

The cluster (``src.scaleout.postgres``) lives in ``mlruns/postgres/``, the server's
artifacts (``src.scaleout.mlflow_server``) in ``mlruns/server-artifacts/``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from src.folders import unwritable_reason
from src.scaleout.mlflow_server import (
    DEFAULT_ARTIFACTS,
    DEFAULT_SERVER_PORT,
    BasicAuth,
    require_auth_beyond_loopback,
    tracking_server,
)
from src.scaleout.postgres import DEFAULT_PG_DIR, env_secret, load_credentials
from src.scaleout.process import ServiceError, http_ok, stop_like_ctrl_c, uninterruptible


def check_arguments(args: argparse.Namespace) -> None:
    """Every argument checked before anything starts or is written (PostgreSQL, ``.env``).

    Raises:
        ServiceError: the first bad argument, in one line.
    """
    if not 1 <= args.port <= 65535:
        raise ServiceError(f"--port={args.port}: expected a port from 1 to 65535")
    try:
        socket.getaddrinfo(args.host, args.port)
    except (socket.gaierror, UnicodeError) as error:
        raise ServiceError(
            f"--host={args.host}: not an address of this machine ({error})"
        ) from None
    with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
        try:
            probe.bind((args.host, args.port))
        except OSError as error:
            raise ServiceError(
                f"--port={args.port} on {args.host}: cannot serve there ({error.strerror}); "
                "choose another port, or stop what uses it"
            ) from None
    for flag, folder in (("--data-dir", args.data_dir), ("--artifacts", args.artifacts)):
        reason = unwritable_reason(folder)
        if reason is not None:
            raise ServiceError(f"{flag}={folder}: cannot be written ({reason})")


def _tracking_server(args: argparse.Namespace) -> int:
    log_file = Path(args.data_dir).parent / "mlflow-server.log"
    auth = None
    if args.auth:
        # MLflow's clients read these two variables; the admin is created on first start.
        auth = BasicAuth(
            admin_username=os.environ.get("MLFLOW_TRACKING_USERNAME", "admin"),
            admin_password=env_secret("MLFLOW_TRACKING_PASSWORD", create=True),
            database=Path(args.data_dir).parent / "mlflow-auth.db",
        )
    require_auth_beyond_loopback(args.host, auth)  # before any password is written
    credentials = load_credentials(create=True)
    server = tracking_server(
        args.data_dir, args.artifacts, credentials, args.port, log_file, host=args.host, auth=auth
    )
    stop_like_ctrl_c()  # SIGTERM and a closed terminal's SIGHUP stop both servers too
    url = server.__enter__()
    try:
        print(
            f"MLflow tracking server at {url} (PostgreSQL {credentials.database} on "
            f"127.0.0.1:{credentials.port}); use it with MLFLOW_TRACKING_URI={url} or "
            "mlflow=server; Ctrl-C stops both",
            flush=True,
        )
        while http_ok(f"{url}/health", timeout=10):
            time.sleep(2)
        print(f"error: the MLflow server stopped answering; see {log_file}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        with uninterruptible():
            server.__exit__(None, None, None)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m src.scaleout.services tracking-server``."""
    parser = argparse.ArgumentParser(
        prog="python -m src.scaleout.services", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("tracking-server", help="PostgreSQL + mlflow server")
    server.add_argument("--port", type=int, default=DEFAULT_SERVER_PORT)
    server.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to serve on (default loopback only; 0.0.0.0: every one)",
    )
    server.add_argument(
        "--auth",
        action="store_true",
        help="MLflow's basic-auth app (needed beyond loopback): admin MLFLOW_TRACKING_USERNAME "
        "(default admin), password MLFLOW_TRACKING_PASSWORD from the environment or .env",
    )
    server.add_argument("--data-dir", type=Path, default=DEFAULT_PG_DIR)
    server.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        check_arguments(args)
        return _tracking_server(args)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
