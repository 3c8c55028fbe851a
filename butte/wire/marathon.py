"""Marathon v2 JSON: the app definition and its parts, camelCase on the wire, Marathon's defaults.

Only keys the ``marathon`` 0.13.0 client knows are ever written (its models take ``**{snake_case(k): v}`` and
fail on an unknown key), so these structs hold exactly that vocabulary. Unknown keys in what a client sends
are ignored, as Marathon's readers ignore them (a PUT of a GET result carries ``tasks``, ``deployments``...).
Validation beyond types (path ids, ranges, mutually exclusive fields) lives in
:mod:`butte.frameworks.marathon.validation`, which answers 422 with Marathon's ``details`` paths.
"""

from __future__ import annotations

from typing import Literal

import msgspec

MARATHON_VERSION = "1.6.322"
"""What ``/v2/info`` reports: a 1.6 feature set (partition aware, heavy event plans, ``taskStats``)."""


class Wire(msgspec.Struct, rename="camel", kw_only=True):
    """Base of Marathon's structs: camelCase keys, unknown keys ignored, every field written."""


class Sparse(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """Base of structs whose unset fields Marathon leaves out."""


class PortDefinition(Wire):
    port: int = 0
    protocol: str = "tcp"
    name: str | None = None
    labels: dict[str, str] = {}


class FetchUri(Sparse):
    uri: str
    executable: bool = False
    extract: bool = True
    cache: bool = False
    output_file: str | None = None
    dest_path: str | None = None


class CommandCheck(Sparse):
    value: str


class HealthCheck(Wire):
    """``AppHealthCheck``; the defaults are Marathon 1.x's. Written with its defaults, as Marathon writes it,
    but without the unset optional fields (:func:`health_check_json`)."""

    protocol: Literal["HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"] = "HTTP"
    path: str | None = None
    port_index: int | None = None
    port: int | None = None
    command: CommandCheck | None = None
    grace_period_seconds: int = 300
    interval_seconds: int = 60
    timeout_seconds: int = 20
    max_consecutive_failures: int = 3
    delay_seconds: int = 15
    ignore_http1xx: bool = False
    ip_protocol: Literal["IPv4", "IPv6"] = "IPv4"


def health_check_json(check: HealthCheck) -> dict[str, object]:
    """A health check as Marathon shows it: every default written, no ``null`` for what was never set."""
    return {key: value for key, value in msgspec.to_builtins(check).items() if value is not None}


class ReadinessCheck(Wire):
    name: str = "readinessCheck"
    protocol: Literal["HTTP", "HTTPS"] = "HTTP"
    path: str = "/"
    port_name: str = "http-api"
    interval_seconds: int = 30
    timeout_seconds: int = 10
    http_status_codes_for_ready: list[int] = msgspec.field(default_factory=lambda: [200])
    preserve_last_response: bool = False


class UpgradeStrategy(Wire):
    minimum_health_capacity: float = 1.0
    maximum_over_capacity: float = 1.0


class UnreachableEnabled(Wire):
    """Marathon 1.6 defaults to 0/0: replace at once, expunge at once."""

    inactive_after_seconds: int = 0
    expunge_after_seconds: int = 0


UnreachableStrategy = UnreachableEnabled | Literal["disabled"]


class DockerPortMapping(Sparse):
    container_port: int = 0
    host_port: int = 0
    service_port: int = 0
    protocol: str = "tcp"
    name: str | None = None
    labels: dict[str, str] = {}


class Docker(Sparse):
    image: str
    network: str | None = None
    port_mappings: list[DockerPortMapping] = []
    privileged: bool = False
    parameters: list[dict[str, str]] = []
    force_pull_image: bool = False


class Volume(Sparse):
    container_path: str
    host_path: str | None = None
    mode: Literal["RO", "RW"] = "RW"


class Container(Sparse):
    """Only what the 0.13.0 client accepts: a ``mesos`` key would break its model."""

    type: Literal["DOCKER", "MESOS"] = "DOCKER"
    docker: Docker | None = None
    volumes: list[Volume] = []
    port_mappings: list[DockerPortMapping] = []


class Network(Sparse):
    mode: Literal["host", "container", "container/bridge"] = "host"
    name: str | None = None


class VersionInfo(Wire):
    last_scaling_at: str
    last_config_change_at: str


class EnvSecret(Wire):
    secret: str


class SecretSource(Wire):
    source: str


def default_port_definitions() -> list[PortDefinition]:
    return [PortDefinition(port=0, name="default")]


class App(Wire):
    """A Marathon app definition (``v2/types/app.raml``) with Marathon 1.6's defaults.

    ``ports`` and ``uris`` are the deprecated spellings: normalisation moves them into ``portDefinitions`` and
    ``fetch`` and sets them to None; ``version`` and ``versionInfo`` are set by the server.
    """

    id: str
    cmd: str | None = None
    args: list[str] | None = None
    user: str | None = None
    executor: str = ""
    instances: int = 1
    cpus: float = 1.0
    mem: float = 128.0
    disk: float = 0.0
    gpus: int = 0
    env: dict[str, str | EnvSecret] = {}
    labels: dict[str, str] = {}
    constraints: list[list[str]] = []
    accepted_resource_roles: list[str] | None = None
    role: str | None = None
    ports: list[int] | None = None
    port_definitions: list[PortDefinition] = msgspec.field(default_factory=default_port_definitions)
    require_ports: bool = False
    networks: list[Network] = []
    container: Container | None = None
    health_checks: list[HealthCheck] = []
    readiness_checks: list[ReadinessCheck] = []
    dependencies: list[str] = []
    upgrade_strategy: UpgradeStrategy = msgspec.field(default_factory=UpgradeStrategy)
    backoff_seconds: float = 1.0
    backoff_factor: float = 1.15
    max_launch_delay_seconds: float = 3600.0
    task_kill_grace_period_seconds: int | None = None
    kill_selection: Literal["YOUNGEST_FIRST", "OLDEST_FIRST"] = "YOUNGEST_FIRST"
    unreachable_strategy: UnreachableStrategy = msgspec.field(default_factory=UnreachableEnabled)
    fetch: list[FetchUri] = []
    uris: list[str] | None = None
    secrets: dict[str, SecretSource] = {}
    version: str | None = None
    version_info: VersionInfo | None = None


class LastTaskFailure(Wire):
    app_id: str
    host: str
    message: str
    state: str
    task_id: str
    timestamp: str
    version: str
    slave_id: str | None = None


class DeploymentResult(Wire):
    deployment_id: str
    version: str
