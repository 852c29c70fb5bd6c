"""``python -m src.registry champion-uri``: the URI ``make serve`` and ``src.predict`` load."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from src.registry.versions import champion_uri


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m src.registry champion-uri``: the champion's URI from the composed config."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["champion-uri"]:
        print("usage: python -m src.registry champion-uri [override ...]", file=sys.stderr)
        return 2
    from src.config.compose import compose_config

    print(champion_uri(compose_config(args[1:]).final.model_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
