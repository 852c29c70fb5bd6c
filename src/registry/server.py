"""`make serve`: MLflow's own scoring server for a registered model, with plain refusals.

The app is MLflow's (``mlflow.pyfunc.scoring_server.init``, what ``mlflow models serve``
runs), so requests and replies follow MLflow's scoring protocol. MLflow falls short in one
place: a request it refuses is echoed back in the reply, every pixel of it (``Failed to
predict data '<the request>'``, and ``Failed to enforce schema of data '<the request>'``
for an array of another shape: 3-14 KB), and a body it cannot parse as CSV comes back
with a Python ``stack_trace``. One middleware rewrites such a 4xx reply to its error code
and what was wrong, nothing else. (The model's own refusals, out-of-range or blank
images, already come without the echo: `src.registry.serving.InputRefused`.)

    python -m src.registry.server [-m models:/mnist-cnn@champion] [--host 127.0.0.1] [--port 5001]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

# A refusal's message is cut at this length: what was wrong fits in far fewer characters,
# and nothing a client sent is worth sending back.
MAX_MESSAGE = 300
_SERVER_PREFIX = re.compile(r"^Failed to predict data '.*?'\. \nError: ", re.DOTALL)
_SCHEMA = re.compile(
    r"^Failed to enforce schema of data '.*' with schema '.*?'\. Error: (.*)$", re.DOTALL
)


def plain_refusal(reply: dict[str, Any]) -> dict[str, Any]:
    """MLflow's error reply without the request it echoes or a stack trace.

    Args:
        reply: A JSON error reply of MLflow's scoring server (``error_code``, ``message``,
            perhaps ``stack_trace``).
    """
    message = _SERVER_PREFIX.sub("", str(reply.get("message", "")))
    schema = _SCHEMA.match(message)
    if schema:
        message = f"the request does not fit the model's input signature: {schema.group(1)}"
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return {"error_code": reply.get("error_code", "BAD_REQUEST"), "message": message.strip()}


def create_app(model_uri: str) -> Any:
    """MLflow's scoring app for ``model_uri``, its 4xx JSON replies made plain."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(scoring_server.load_model_with_mlflow_config(model_uri))

    @app.middleware("http")
    async def plain_refusals(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        json_reply = response.headers.get("content-type", "").startswith("application/json")
        if not 400 <= response.status_code < 500 or not json_reply:
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])
        try:
            reply = json.loads(body)
        except ValueError:
            reply = {"message": body.decode("utf-8", "replace")}
        return JSONResponse(plain_refusal(reply), status_code=response.status_code)

    return app


def main(argv: list[str] | None = None) -> int:
    """``python -m src.registry.server [-m MODEL_URI] [--host H] [--port P]``: the store is
    the project's (``mlflow.tracking_uri``, which ``MLFLOW_TRACKING_URI`` overrides)."""
    from src.config.compose import compose_config
    from src.registry.versions import champion_uri

    defaults = compose_config()
    default_model = champion_uri(defaults.final.model_name)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default=default_model, help=f"({default_model})")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port={args.port}: expected a port from 1 to 65535")
    import uvicorn
    from mlflow.exceptions import MlflowException

    from src.tracking.store import use_model_store

    missing = use_model_store(str(defaults.mlflow.tracking_uri), args.model)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    try:
        app = create_app(args.model)
    except (MlflowException, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"error: cannot load {args.model}: {first_line}", file=sys.stderr)
        return 1
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
