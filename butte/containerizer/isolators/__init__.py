"""Isolators: cgroups v1/v2, a pid namespace, and the posix fallback, run together by :class:`Isolation`."""

from butte.containerizer.isolators.base import ContainerLimits, Isolator, Limitation
from butte.containerizer.isolators.detect import DEFAULT_ISOLATION, CgroupLayout, build_isolation, detect_cgroups
from butte.containerizer.isolators.isolation import Isolation

__all__ = [
    "DEFAULT_ISOLATION",
    "CgroupLayout",
    "ContainerLimits",
    "Isolation",
    "Isolator",
    "Limitation",
    "build_isolation",
    "detect_cgroups",
]
