"""The ``butte`` command: one subcommand per process or client.

Each subcommand lives in its own module exposing ``configure(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from butte.cli.logs import configure_logging

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "master": ("butte.cli.master_cmd", "run a master"),
    "agent": ("butte.cli.agent_cmd", "run an agent"),
    "run": ("butte.cli.run_cmd", "run one task on a cluster, like mesos-execute"),
    "up": ("butte.cli.up_cmd", "run a local cluster: one master and two agents"),
    "marathon": ("butte.cli.marathon_cmd", "run Marathon: long-running services with the Marathon v2 REST API"),
    "app": ("butte.cli.app_cmd", "deploy and manage apps on Marathon"),
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, subcommands included."""
    parser = argparse.ArgumentParser(prog="butte", description="A two-level cluster manager.")
    parser.add_argument("--logging_level", default="INFO", help="log level (INFO, DEBUG, WARNING)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text)
        module.configure(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``butte`` console script."""
    args = build_parser().parse_args(argv)
    configure_logging(args.logging_level)
    code: int = args._module.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
