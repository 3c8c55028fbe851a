"""Helpers to build tasks from offers without protobuf boilerplate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from butte.core.errors import ValidationError
from butte.core.resources import DEFAULT_ROLE, Entry, Resources
from butte.wire.base import ID
from butte.wire.mesos import (
    CommandInfo,
    CommandURI,
    Environment,
    EnvironmentVariable,
    Label,
    Labels,
    Offer,
    TaskInfo,
)
from butte.wire.resources import resources_from_wire, resources_to_wire


def offer_resources(offer: Offer) -> Resources:
    """The offer's resources as core :class:`Resources` (roles kept).

    Raises:
        ValidationError: the offer holds a malformed resource.
    """
    return resources_from_wire(offer.resources, field="offer.resources")


def scalar_resources(cpus: float, mem_mb: float, disk_mb: float = 0.0, role: str = DEFAULT_ROLE) -> Resources:
    """``cpus``, ``mem`` and ``disk`` in one role; zero amounts are left out.

    Raises:
        ValidationError: an amount is negative or not finite.
    """
    amounts = {"cpus": cpus, "mem": mem_mb, "disk": disk_mb}
    return Resources.from_entries(Entry(name, role, amount) for name, amount in amounts.items())


def claim_scalars(offered: Resources, wanted: Mapping[str, float]) -> Resources | None:
    """Take scalar amounts out of ``offered``, reserved roles first, then ``*``; None if they do not fit.

    Mesos's ``Resources::find`` prefers reserved resources the same way, so a framework with a role uses
    its reservation before the shared pool. The result carries the roles the task must name.
    """
    taken: list[Entry] = []
    for name, amount in wanted.items():
        needed_milli = round(amount * 1000)
        for role, have in _scalars(offered, name):
            if needed_milli <= 0:
                break
            have_milli = round(have * 1000)
            take_milli = min(needed_milli, have_milli)
            taken.append(Entry(name, role, take_milli / 1000))
            needed_milli -= take_milli
        if needed_milli > 0:
            return None
    return Resources.from_entries(taken)


def _scalars(offered: Resources, name: str) -> list[tuple[str, float]]:
    found = [(e.role, e.value) for e in offered.entries() if e.name == name and isinstance(e.value, float)]
    return sorted(found, key=lambda pair: pair[0] == DEFAULT_ROLE)


def command_info(
    command: str | Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    uris: Sequence[str] = (),
) -> CommandInfo:
    """A string runs under ``/bin/sh -c``; a sequence is an argv run directly (``shell: false``).

    Raises:
        ValidationError: the command is empty.
    """
    if isinstance(command, str):
        if not command.strip():
            raise ValidationError("command", "empty command")
        info = CommandInfo(shell=True, value=command)
    else:
        argv = list(command)
        if not argv:
            raise ValidationError("command", "empty argv")
        # With shell=false Mesos runs `value` with `arguments` as the whole argv, argv[0] included.
        info = CommandInfo(shell=False, value=argv[0], arguments=argv)
    if env:
        variables = [EnvironmentVariable(name=name, value=value) for name, value in env.items()]
        info.environment = Environment(variables=variables)
    info.user = user
    info.uris = [CommandURI(value=uri) for uri in uris]
    return info


def command_task(
    task_id: str,
    agent_id: str,
    command: str | Sequence[str],
    cpus: float = 0.1,
    mem: float = 32.0,
    disk: float = 0.0,
    *,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    uris: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    resources: Resources | None = None,
) -> TaskInfo:
    """A task for the built-in command executor; ``resources`` (e.g. from :func:`claim_scalars`) wins over
    ``cpus``/``mem``/``disk`` (MB), which are otherwise taken unreserved.

    Raises:
        ValidationError: the command is empty or an amount is negative.
    """
    wanted = resources if resources is not None else scalar_resources(cpus, mem, disk)
    return TaskInfo(
        name=name or task_id,
        task_id=ID(value=task_id),
        agent_id=ID(value=agent_id),
        resources=resources_to_wire(wanted),
        command=command_info(command, env=env, user=user, uris=uris),
        labels=_labels(labels),
    )


def _labels(labels: Mapping[str, str] | None) -> Labels | None:
    if not labels:
        return None
    return Labels(labels=[Label(key=key, value=value) for key, value in labels.items()])
