"""Butte: a two-level cluster manager in the shape of Apache Mesos."""

__version__ = "0.1.0"
# Mesos clients (pymesos) parse this as a dotted tuple of ints and compare it with (1, 0, 0).
MESOS_COMPAT_VERSION = "1.11.0"
