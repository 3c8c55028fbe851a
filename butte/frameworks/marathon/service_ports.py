"""Service ports: Marathon gives every ``portDefinitions`` entry declared as port 0 a cluster-unique port.

Pure. The range is Marathon's ``--local_port_min``/``--local_port_max`` default, 10000 to 20000. An app that
is updated keeps the service ports it was given (a PUT of the same definition with ``"port": 0`` must not
look like a configuration change and restart the app), as Marathon's group manager keeps them.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from butte.core.errors import Unavailable
from butte.frameworks.marathon.model import RootGroup
from butte.wire.marathon import App, PortDefinition

LOCAL_PORT_MIN = 10000
LOCAL_PORT_MAX = 20000


def assign_service_ports(current: RootGroup, target: RootGroup) -> RootGroup:
    """``target`` with every declared port 0 replaced by the app's previous service port or a free one.

    Raises:
        Unavailable: the service port range is exhausted.
    """
    taken = {d.port for app in target.apps.values() for d in app.port_definitions if d.port}
    free = _free_ports(taken)
    apps = dict(target.apps)
    for app_id, app in target.apps.items():
        if any(d.port == 0 for d in app.port_definitions):
            apps[app_id] = _with_ports(app, current.apps.get(app_id), taken, free)
    return RootGroup(apps=apps, groups=target.groups, version=target.version)


def _with_ports(app: App, previous: App | None, taken: set[int], free: Iterator[int]) -> App:
    before = previous.port_definitions if previous is not None else []
    definitions: list[PortDefinition] = []
    for index, definition in enumerate(app.port_definitions):
        port = definition.port
        if port == 0 and index < len(before) and before[index].port and before[index].port not in taken:
            port = before[index].port
        elif port == 0:
            port = next(free, 0)
            if port == 0:
                raise Unavailable(f"no free service port left between {LOCAL_PORT_MIN} and {LOCAL_PORT_MAX}")
        taken.add(port)
        definitions.append(msgspec.structs.replace(definition, port=port))
    return msgspec.structs.replace(app, port_definitions=definitions)


def _free_ports(taken: set[int]) -> Iterator[int]:
    # ``taken`` grows while the iterator runs: each port is checked when it is handed out.
    return (port for port in range(LOCAL_PORT_MIN, LOCAL_PORT_MAX + 1) if port not in taken)
