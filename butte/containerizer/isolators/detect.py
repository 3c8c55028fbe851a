"""Which isolation the agent can run: the host's cgroup hierarchies, found at start, and ``--isolation``.

Each controller goes where the host has it: on the unified (v2) hierarchy when it is enabled there, else
on its v1 hierarchy. A container's cgroups are made under the agent's own cgroup in that hierarchy, then
``--cgroups_root``, so whatever limits the agent itself runs under also hold its tasks. Where cgroups cannot
be written (an unprivileged agent, no mounts), ``cgroups/cpu`` and ``cgroups/mem`` fall back to ``posix/cpu``
and ``posix/mem``, and the agent says so.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import final

from butte.containerizer.isolators.base import Isolator
from butte.containerizer.isolators.cgroups_v1 import CgroupsV1
from butte.containerizer.isolators.cgroups_v2 import CgroupsV2
from butte.containerizer.isolators.isolation import Isolation
from butte.containerizer.isolators.pid_namespace import PidNamespace
from butte.containerizer.isolators.posix import Posix
from butte.core.errors import ValidationError

log = logging.getLogger(__name__)

DEFAULT_ISOLATION = "posix/cpu,posix/mem"
# Mesos isolators that need nothing from this agent beyond what it always does.
ACCEPTED_NOOPS = frozenset({"filesystem/posix", "posix/disk", "disk/du", "volume/sandbox_path"})
# Which v1 controllers (hierarchies) and v2 controllers each cgroups isolator uses.
V1_CONTROLLERS = {"cgroups/cpu": ("cpu", "cpuacct"), "cgroups/mem": ("memory",), "cgroups/pids": ("pids",)}
V2_CONTROLLERS = {"cgroups/cpu": "cpu", "cgroups/mem": "memory", "cgroups/pids": "pids"}
POSIX_FALLBACK = {"cgroups/cpu": "posix/cpu", "cgroups/mem": "posix/mem"}


@final
@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """The agent's own cgroup directory in each v1 hierarchy (by controller) and in the unified one."""

    v1: dict[str, str] = field(default_factory=dict)
    v2: str | None = None
    v2_controllers: frozenset[str] = frozenset()


def _own_paths(self_cgroup: str) -> dict[str, str]:
    # Lines "id:controllers:path"; the unified hierarchy has id 0 and no controllers (key "").
    paths: dict[str, str] = {}
    with open(self_cgroup) as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name.removeprefix("name=")] = path
    return paths


def detect_cgroups(mountinfo: str = "/proc/self/mountinfo", self_cgroup: str = "/proc/self/cgroup") -> CgroupLayout:
    """The cgroup hierarchies mounted here, and where this process sits in each."""
    try:
        own = _own_paths(self_cgroup)
        with open(mountinfo) as handle:
            mounts = [line.split() for line in handle]
    except OSError:
        return CgroupLayout()
    v1: dict[str, str] = {}
    v2: str | None = None
    for fields in mounts:
        separator = fields.index("-")
        fstype, options = fields[separator + 1], fields[separator + 3].split(",")
        root, mount_point = fields[3], fields[4]
        if fstype == "cgroup2" and v2 is None and "" in own:
            v2 = _inside(mount_point, root, own[""])
        elif fstype == "cgroup":
            for controller in options:
                if controller in own and controller not in v1:
                    v1[controller] = _inside(mount_point, root, own[controller])
    controllers = frozenset((_read(os.path.join(v2, "cgroup.controllers")) or "").split()) if v2 else frozenset()
    return CgroupLayout(v1, v2, controllers)


def _inside(mount_point: str, mount_root: str, path: str) -> str:
    relative = path[len(mount_root) :] if path.startswith(mount_root) and mount_root != "/" else path
    return os.path.join(mount_point, relative.lstrip("/"))


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def parse_isolation(flag: str) -> list[str]:
    """The isolator names of ``--isolation``.

    Raises:
        ValidationError: a name is not one Butte knows.
    """
    names = [name.strip() for name in flag.split(",") if name.strip()]
    known = {*V1_CONTROLLERS, *POSIX_FALLBACK.values(), "namespaces/pid", *ACCEPTED_NOOPS}
    for name in names:
        if name not in known:
            raise ValidationError("isolation", f"Unknown isolator '{name}'")
    return names


def build_isolation(flag: str, cgroups_root: str, enable_cfs: bool, layout: CgroupLayout) -> Isolation:
    """The agent's isolation for ``--isolation``, on what this host has.

    Raises:
        ValidationError: an unknown isolator, or namespaces/pid without ``unshare`` or root.
    """
    names = parse_isolation(flag)
    v1_bases: dict[str, str] = {}
    v2_controllers: set[str] = set()
    chosen: list[str] = []
    for name in (name for name in names if name in V1_CONTROLLERS):
        placed = _place_cgroups(name, cgroups_root, layout, v1_bases, v2_controllers)
        chosen.append(name if placed else POSIX_FALLBACK.get(name, ""))
        if not placed:
            log.warning("Cannot write cgroups for %s; falling back to %s", name, POSIX_FALLBACK.get(name, "none"))
    chosen += [name for name in names if name.startswith("posix/")]
    isolators: list[Isolator] = []
    if v1_bases:
        isolators.append(CgroupsV1(v1_bases, enable_cfs))
    if v2_controllers and layout.v2 is not None:
        isolators.append(CgroupsV2(os.path.join(layout.v2, cgroups_root), frozenset(v2_controllers), enable_cfs))
    if "posix/cpu" in chosen or "posix/mem" in chosen:
        isolators.append(Posix(enforce_memory="posix/mem" in chosen))
    if "namespaces/pid" in names:
        if os.geteuid() != 0:
            raise ValidationError("isolation", "namespaces/pid needs the agent to run as root")
        isolators.append(PidNamespace())
        chosen.append("namespaces/pid")
    return Isolation(isolators, [name for name in dict.fromkeys(chosen) if name])


def _on_v2(name: str, layout: CgroupLayout) -> bool:
    return V2_CONTROLLERS.get(name, "") in layout.v2_controllers


def _place_cgroups(
    name: str, cgroups_root: str, layout: CgroupLayout, v1_bases: dict[str, str], v2_controllers: set[str]
) -> bool:
    """Put one cgroups isolator on v2 when its controller is enabled there, else on v1; False if neither."""
    if layout.v2 is not None and _on_v2(name, layout) and _writable(os.path.join(layout.v2, cgroups_root)):
        v2_controllers.add(V2_CONTROLLERS[name])
        return True
    bases = {
        controller: os.path.join(layout.v1[controller], cgroups_root)
        for controller in V1_CONTROLLERS[name]
        if controller in layout.v1
    }
    if len(bases) != len(V1_CONTROLLERS[name]) or not all(_writable(base) for base in bases.values()):
        return False
    v1_bases.update(bases)
    return True


def _writable(directory: str) -> bool:
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)
