"""Compose ``conf/`` outside a Hydra run: for tests, benchmarks, the supervisor and make.

    python -m src.config.compose mlflow.tracking_uri            # print one composed value
    python -m src.config.compose mlflow.tracking_uri mlflow=server

`CONFIG_DIR` is the one place that says where the configs are: ``src/conf`` inside an
installed wheel (the configs ship as package data), ``conf/`` beside ``src/`` in a checkout.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

# src/, whether a checkout's or an installed package's.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
CONFIG_DIR = next(
    (p for p in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf") if p.is_dir()),
    _PACKAGE_DIR.parent / "conf",
)


def compose_config(
    overrides: Sequence[str] = (), output_dir: str | Path | None = None
) -> DictConfig:
    """Compose ``config.yaml`` with overrides, as ``python -m src.run`` would.

    Args:
        overrides: Hydra overrides (``group=option``, ``key=value``).
        output_dir: Stands in for ``${hydra:runtime.output_dir}``, which exists only
            inside a Hydra run.

    Returns:
        The composed (not yet validated) config.
    """
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name="config", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir or "outputs/composed")
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    """Print the composed value of one key (the Makefile reads its defaults this way)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m src.config.compose KEY [override ...]", file=sys.stderr)
        return 2
    value = OmegaConf.select(compose_config(args[1:]), args[0], default=None)
    if value is None:
        print(f"error: {args[0]} is not set in the composed config", file=sys.stderr)
        return 1
    print(OmegaConf.to_yaml(value).strip() if OmegaConf.is_config(value) else value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
