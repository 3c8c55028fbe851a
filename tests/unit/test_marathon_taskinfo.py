"""TaskInfos for Marathon apps: ids, command, Marathon's task environment, resources, checks, containers."""

from __future__ import annotations

import random
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from butte.core.errors import ValidationError
from butte.core.resources import Resources
from butte.frameworks.marathon.pathid import safe_id
from butte.frameworks.marathon.placement import Claim
from butte.frameworks.marathon.taskinfo import app_id_prefix, build_task, new_task_id
from butte.wire import checks
from butte.wire.marathon import (
    App,
    CommandCheck,
    Container,
    Docker,
    EnvSecret,
    FetchUri,
    HealthCheck,
    PortDefinition,
)
from butte.wire.mesos import TaskInfo
from butte.wire.resources import resources_from_wire

TASK_ID = "shop_web.instance-00000000-0000-4000-8000-000000000000._app.1"


def app(**fields: Any) -> App:
    defaults: dict[str, Any] = {"id": "/shop/web", "cmd": "serve", "cpus": 0.5, "mem": 64.0, "version": "V1"}
    return App(**{**defaults, **fields})


def build(the_app: App, ports: tuple[int, ...] = (31001,), resources: str = "cpus:0.5;mem:64") -> TaskInfo:
    claim = Claim(resources=Resources.parse(resources), host_ports=ports)
    return build_task(the_app, task_id=TASK_ID, agent_id="agent-1", hostname="node-1", claim=claim)


def env_of(task: TaskInfo) -> dict[str, str | None]:
    assert task.command is not None and task.command.environment is not None
    return {var.name: var.value for var in task.command.environment.variables}


def test_new_task_id_has_marathon_18_form_and_follows_the_seed() -> None:
    first = new_task_id("/shop/web", random.Random(3))
    assert first == new_task_id("/shop/web", random.Random(3))
    assert first != new_task_id("/shop/web", random.Random(4))
    prefix, _, rest = first.partition(".instance-")
    assert prefix == "shop_web" and rest.endswith("._app.1")
    assert uuid.UUID(rest.removesuffix("._app.1")).version == 4


@pytest.mark.parametrize(
    ("task_id", "prefix"),
    [
        (TASK_ID, "shop_web"),
        ("shop_web.marathon-3f1c2a8e-0d7b-11e7-9c6e-0242ac110003", "shop_web"),
        ("shop_web.3f1c2a8e-0d7b-11e7-9c6e-0242ac110003", "shop_web"),
        ("my.app.instance-abc._app.1", "my.app"),
    ],
)
def test_app_id_prefix(task_id: str, prefix: str) -> None:
    assert app_id_prefix(task_id) == prefix


@given(st.lists(st.from_regex(r"[a-z0-9][a-z0-9.-]{0,8}", fullmatch=True), min_size=1, max_size=4), st.integers(0))
def test_app_id_prefix_inverts_new_task_id(segments: list[str], seed: int) -> None:
    app_id = "/" + "/".join(segments)
    assert app_id_prefix(new_task_id(app_id, random.Random(seed))) == safe_id(app_id)


def test_cmd_runs_in_a_shell_and_args_directly() -> None:
    task = build(app(user="nobody"))
    assert task.name == "shop_web" and task.task_id.value == TASK_ID and task.agent_id.value == "agent-1"
    assert task.command is not None and task.command.shell and task.command.value == "serve"
    assert task.command.user == "nobody"
    argv = build(app(cmd=None, args=["/bin/echo", "hi"])).command
    assert argv is not None and not argv.shell and argv.value == "/bin/echo" and argv.arguments == ["/bin/echo", "hi"]


def test_an_app_with_nothing_to_run_is_refused() -> None:
    with pytest.raises(ValidationError):
        build(app(cmd=None))


def test_marathon_task_environment() -> None:
    the_app = app(
        port_definitions=[PortDefinition(port=10000, name="http"), PortDefinition(port=0)],
        labels={"team": "shop", "tier.level": "1"},
        env={"GREETING": "hi", "TOKEN": EnvSecret(secret="s1")},
    )
    env = env_of(build(the_app, ports=(31001, 31002), resources="cpus:0.5;mem:64;ports:[31001-31002]"))
    assert env["PORT0"] == "31001" and env["PORT1"] == "31002"
    assert env["PORT"] == "31001" and env["PORTS"] == "31001,31002"
    assert env["PORT_HTTP"] == "31001" and env["PORT_10000"] == "31001"
    assert env["HOST"] == "node-1" and env["MESOS_TASK_ID"] == TASK_ID
    assert env["MARATHON_APP_ID"] == "/shop/web" and env["MARATHON_APP_VERSION"] == "V1"
    assert env["MARATHON_APP_RESOURCE_CPUS"] == "0.5" and env["MARATHON_APP_RESOURCE_MEM"] == "64.0"
    assert env["MARATHON_APP_RESOURCE_DISK"] == "0.0" and env["MARATHON_APP_RESOURCE_GPUS"] == "0"
    assert env["MARATHON_APP_LABELS"] == "TEAM TIER_LEVEL"
    assert env["MARATHON_APP_LABEL_TEAM"] == "shop" and env["MARATHON_APP_LABEL_TIER_LEVEL"] == "1"
    assert env["GREETING"] == "hi" and "TOKEN" not in env


def test_the_apps_env_wins_over_marathons() -> None:
    assert env_of(build(app(env={"HOST": "mine"})))["HOST"] == "mine"


def test_resources_carry_the_ports_in_their_role() -> None:
    task = build(app(), ports=(31001,), resources="cpus:0.5;mem:64;ports(web):[31001-31001]")
    resources = resources_from_wire(task.resources)
    assert resources.filter_role("web").ranges("ports") == [(31001, 31001)]
    assert resources.ranges("ports") == [(31001, 31001)]
    # A claim without its ports resource still gets them, unreserved.
    bare = resources_from_wire(build(app(), ports=(31005,)).resources)
    assert bare.filter_role("*").ranges("ports") == [(31005, 31005)] and bare.scalar("cpus") == 0.5


def test_fetch_labels_and_kill_policy() -> None:
    the_app = app(
        fetch=[
            FetchUri(uri="http://x/a.tgz", cache=True),
            FetchUri(uri="http://x/run", executable=True, extract=False),
        ],
        labels={"a": "b"},
        task_kill_grace_period_seconds=7,
    )
    task = build(the_app)
    assert task.command is not None
    uris = {uri.value: uri for uri in task.command.uris}
    assert uris["http://x/a.tgz"].cache and uris["http://x/a.tgz"].extract
    assert uris["http://x/run"].executable and not uris["http://x/run"].extract
    assert task.labels is not None and [(label.key, label.value) for label in task.labels.labels] == [("a", "b")]
    assert task.kill_policy is not None and task.kill_policy.grace_period is not None
    assert task.kill_policy.grace_period.nanoseconds == 7_000_000_000
    assert build(app()).kill_policy is None and build(app()).labels is None


def decoded_check(task: TaskInfo) -> checks.HealthCheck | None:
    return checks.decode_health_check(task.health_check)


def test_marathon_side_checks_are_not_given_to_mesos() -> None:
    assert decoded_check(build(app(health_checks=[HealthCheck(protocol="HTTP")]))) is None
    assert decoded_check(build(app())) is None


def test_mesos_http_check_resolves_the_port_index_and_timings() -> None:
    check = HealthCheck(
        protocol="MESOS_HTTP",
        path="/health",
        port_index=1,
        grace_period_seconds=30,
        interval_seconds=5,
        timeout_seconds=2,
        max_consecutive_failures=4,
        delay_seconds=1,
    )
    found = decoded_check(build(app(health_checks=[check]), ports=(31001, 31002)))
    assert found is not None and found.type == "HTTP" and found.http is not None
    assert (found.http.port, found.http.scheme, found.http.path) == (31002, "http", "/health")
    assert (found.grace_period_seconds, found.interval_seconds, found.timeout_seconds) == (30.0, 5.0, 2.0)
    assert (found.consecutive_failures, found.delay_seconds) == (4, 1.0)


def test_mesos_https_tcp_and_command_checks() -> None:
    https = decoded_check(build(app(health_checks=[HealthCheck(protocol="MESOS_HTTPS")])))
    assert https is not None and https.http is not None and https.http.scheme == "https" and https.http.port == 31001
    tcp = decoded_check(build(app(health_checks=[HealthCheck(protocol="MESOS_TCP", port=8080)])))
    assert tcp is not None and tcp.type == "TCP" and tcp.tcp is not None and tcp.tcp.port == 8080
    command = HealthCheck(protocol="COMMAND", command=CommandCheck(value="true"))
    found = decoded_check(build(app(health_checks=[command]), ports=()))
    assert found is not None and found.type == "COMMAND" and found.command is not None
    assert found.command.shell and found.command.value == "true"


def test_a_check_on_a_missing_port_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        build(app(health_checks=[HealthCheck(protocol="MESOS_TCP", port_index=2)]))
    assert caught.value.field == "healthChecks[0].portIndex"


def test_docker_apps_get_a_docker_container() -> None:
    container = Container(type="DOCKER", docker=Docker(image="nginx:1", network="BRIDGE", force_pull_image=True))
    task = build(app(cmd=None, container=container))
    assert task.container is not None and task.container.type == "DOCKER"
    assert msgspec.json.decode(bytes(task.container.docker)) == {
        "image": "nginx:1",
        "network": "BRIDGE",
        "force_pull_image": True,
    }
    assert task.command is not None and task.command.value is None
    assert env_of(task)["MARATHON_APP_DOCKER_IMAGE"] == "nginx:1"


def test_a_mesos_container_without_an_image_gets_no_container_info() -> None:
    assert build(app(container=Container(type="MESOS"))).container is None
    with_image = build(app(container=Container(type="MESOS", docker=Docker(image="alpine"))))
    assert with_image.container is not None and with_image.container.type == "MESOS"
    assert msgspec.json.decode(bytes(with_image.container.mesos))["image"]["docker"]["name"] == "alpine"
