"""Flag helpers shared by every ``butte`` subcommand: Mesos names, ``BUTTE_<FLAG>`` environment defaults."""

from __future__ import annotations

import argparse
import os
from typing import Any

from butte.core.durations import parse_duration
from butte.core.errors import ValidationError


def env_default(flag: str, default: Any) -> Any:
    """The value of ``BUTTE_<FLAG>`` if set, else ``default`` (Mesos reads ``MESOS_<FLAG>`` the same way)."""
    return os.environ.get(f"BUTTE_{flag.upper()}", default)


def add_flag(parser: argparse.ArgumentParser, flag: str, *, default: Any = None, **kwargs: Any) -> None:
    """Add ``--flag`` whose default can come from the environment."""
    parser.add_argument(f"--{flag}", dest=flag, default=env_default(flag, default), **kwargs)


def duration(text: str) -> float:
    """argparse type for stout durations.

    Raises:
        argparse.ArgumentTypeError: not a duration.
    """
    try:
        return parse_duration(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def boolean(text: str) -> bool:
    """argparse type for Mesos booleans (``true``/``false``, ``1``/``0``).

    Raises:
        argparse.ArgumentTypeError: not a boolean.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")
