"""App definitions: decoding, normalisation and Marathon's validation messages with their JSON paths."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from butte.frameworks.marathon.validation import (
    InvalidDefinition,
    InvalidJson,
    is_rollback,
    merge_partial,
    parse_app,
    parse_group_update,
)
from butte.wire.marathon import App, FetchUri, PortDefinition

CMD_ARGS = "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."


def app(**fields: Any) -> dict[str, Any]:
    return {"id": "/web", "cmd": "sleep 100", **fields}


def problems(body: dict[str, Any], base: str = "/") -> dict[str, list[str]]:
    with pytest.raises(InvalidDefinition) as caught:
        parse_app(body, base=base)
    return {detail.path: list(detail.errors) for detail in caught.value.details}


def json_problems(body: bytes | dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(InvalidJson) as caught:
        parse_app(body)
    return {detail.path: list(detail.errors) for detail in caught.value.details}


# --- decoding ---------------------------------------------------------------------------------------------------


def test_a_minimal_app_gets_marathons_defaults() -> None:
    parsed = parse_app(b'{"id": "web", "cmd": "sleep 100"}')
    assert parsed.id == "/web"
    assert parsed.instances == 1 and parsed.cpus == 1.0 and parsed.mem == 128.0
    assert parsed.port_definitions == [PortDefinition(port=0, name="default")]


def test_malformed_json_is_invalid_json() -> None:
    assert list(json_problems(b'{"id": ')) == ["/"]
    assert json_problems(b"[1, 2]") == {"/": ["error.expected.jsobject"]}


@pytest.mark.parametrize(
    ("body", "path", "error"),
    [
        (app(cpus="lots"), "/cpus", "error.expected.jsnumber"),
        (app(cmd=5), "/cmd", "error.expected.jsstring"),
        (app(instances=1.5), "/instances", "error.expected.int"),
        (app(healthChecks=[{"portIndex": "x"}]), "/healthChecks(0)/portIndex", "error.expected.jsnumber"),
        (app(healthChecks=[{"protocol": "GOPHER"}]), "/healthChecks(0)/protocol", "error.expected.validenumvalue"),
        (app(upgradeStrategy=[]), "/upgradeStrategy", "error.expected.jsobject"),
        ({"cmd": "x"}, "/id", "error.path.missing"),
    ],
)
def test_wrong_json_types_name_the_path(body: dict[str, Any], path: str, error: str) -> None:
    assert json_problems(body) == {path: [error]}


def test_nulls_read_as_not_given() -> None:
    assert parse_app(app(cpus=None, args=None)).cpus == 1.0


def test_invalid_json_answers_marathons_body() -> None:
    with pytest.raises(InvalidJson) as caught:
        parse_app(app(cpus="x"))
    assert caught.value.response_body() == {
        "message": "Invalid JSON",
        "details": [{"path": "/cpus", "errors": ["error.expected.jsnumber"]}],
    }
    assert caught.value.field == "/cpus"


# --- normalisation ----------------------------------------------------------------------------------------------


def test_relative_ids_resolve_against_the_base_and_dependencies_against_the_parent() -> None:
    parsed = parse_app(app(id="web", dependencies=["../db", "cache", "/other"]), base="/shop")
    assert parsed.id == "/shop/web"
    assert parsed.dependencies == ["/db", "/shop/cache", "/other"]


def test_deprecated_ports_become_port_definitions() -> None:
    parsed = parse_app(app(ports=[8080, 0]))
    assert parsed.ports is None
    assert parsed.port_definitions == [PortDefinition(port=8080), PortDefinition(port=0)]


def test_deprecated_uris_become_fetch_extracting_only_archives() -> None:
    parsed = parse_app(app(uris=["http://h/a.tgz", "http://h/run.sh", "http://h/b.tar.gz?x=1"]))
    assert parsed.uris is None
    assert parsed.fetch == [
        FetchUri(uri="http://h/a.tgz", extract=True),
        FetchUri(uri="http://h/run.sh", extract=False),
        FetchUri(uri="http://h/b.tar.gz?x=1", extract=True),
    ]


def test_port_checks_default_to_port_index_zero_and_operators_are_upper_cased() -> None:
    parsed = parse_app(app(healthChecks=[{"protocol": "TCP"}], constraints=[["hostname", "unique"]]))
    assert parsed.health_checks[0].port_index == 0
    assert parsed.constraints == [["hostname", "UNIQUE"]]


def test_server_set_versions_are_dropped() -> None:
    parsed = parse_app(app(version="2017-01-01T00:00:00.000Z"))
    assert parsed.version is None and parsed.version_info is None


def test_bridge_networking_has_no_default_port() -> None:
    parsed = parse_app(app(networks=[{"mode": "container/bridge"}]))
    assert parsed.port_definitions == []


# --- validation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path", "error"),
    [
        (app(id="/"), "/id", "must not be root"),
        (app(id="/shop/restart"), "/id", "must not end with any of the following reserved keywords"),
        (app(id="/Web"), "/id", "must fully match regular expression"),
        (app(id="../x"), "/id", "climbs above the root group"),
        (app(cmd=""), "/cmd", "must not be an empty string"),
        (app(args=["a"]), "/", CMD_ARGS),
        (app(cmd=None), "/", CMD_ARGS),
        (app(cpus=0), "/cpus", "is less than 0.001"),
        (app(mem=-1), "/mem", "is less than 0"),
        (app(disk=-1), "/disk", "is less than 0"),
        (app(gpus=-1), "/gpus", "is less than 0"),
        (app(instances=-1), "/instances", "is less than 0"),
        (app(backoffFactor=0.5), "/backoffFactor", "is less than 1"),
        (app(backoffSeconds=-1), "/backoffSeconds", "is less than 0"),
        (app(maxLaunchDelaySeconds=-1), "/maxLaunchDelaySeconds", "is less than 0"),
        (
            app(upgradeStrategy={"minimumHealthCapacity": 1.5}),
            "/upgradeStrategy/minimumHealthCapacity",
            "is greater than 1",
        ),
        (app(upgradeStrategy={"maximumOverCapacity": -0.1}), "/upgradeStrategy/maximumOverCapacity", "is less than 0"),
        (app(ports=[80], portDefinitions=[{"port": 81}]), "/", "cannot specify both ports and port definitions"),
        (app(uris=["http://h/a"], fetch=[{"uri": "http://h/b"}]), "/uris", "may not be set in conjunction with fetch"),
        (app(portDefinitions=[{"port": 70000}]), "/portDefinitions(0)/port", "is greater than 65535"),
        (app(portDefinitions=[{"port": 80}, {"port": 80}]), "/portDefinitions", "Ports must be unique."),
        (app(portDefinitions=[{"name": "h"}, {"name": "h"}]), "/portDefinitions", "Port names must be unique."),
        (
            app(unreachableStrategy={"inactiveAfterSeconds": 10, "expungeAfterSeconds": 5}),
            "/unreachableStrategy/inactiveAfterSeconds",
            "must be less or equal to expungeAfterSeconds, which is 5",
        ),
        (app(container={"type": "DOCKER", "docker": {"image": ""}}), "/container/docker/image", "must not be empty"),
        (app(container={"type": "DOCKER"}), "/container/docker", "must be defined"),
        (app(dependencies=["/Bad"]), "/dependencies(0)", "must fully match regular expression"),
        (app(acceptedResourceRoles=[]), "/acceptedResourceRoles", "must not be empty"),
    ],
)
def test_each_rule_names_its_path(body: dict[str, Any], path: str, error: str) -> None:
    found = problems(body)
    assert path in found, found
    assert any(error in message for message in found[path]), found


def test_ports_equal_to_port_definitions_are_accepted() -> None:
    assert parse_app(app(ports=[80], portDefinitions=[{"port": 80}])).port_definitions == [PortDefinition(port=80)]


def test_zero_ports_may_repeat() -> None:
    assert len(parse_app(app(ports=[0, 0])).port_definitions) == 2


def test_a_container_alone_is_enough() -> None:
    parsed = parse_app({"id": "/web", "container": {"type": "DOCKER", "docker": {"image": "nginx"}}})
    assert parsed.cmd is None


def test_every_problem_is_reported_at_once_with_marathons_body() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_app(app(cpus=0, upgradeStrategy={"minimumHealthCapacity": 2}))
    assert caught.value.response_body() == {
        "message": "Object is not valid",
        "details": [
            {"path": "/cpus", "errors": ["is less than 0.001"]},
            {"path": "/upgradeStrategy/minimumHealthCapacity", "errors": ["is greater than 1"]},
        ],
    }


@pytest.mark.parametrize(
    ("constraint", "error"),
    [
        (["hostname"], "Each constraint must have either 2 or 3 fields"),
        (["", "UNIQUE"], "missing field for constraint declaration"),
        (["hostname", "NEAR"], "operator must be one of the following"),
        (["hostname", "UNIQUE", "x"], "UNIQUE does not accept a value"),
        (["rack", "GROUP_BY", "two"], "GROUP BY must define an integer value or else no value at all"),
        (["rack", "MAX_PER"], "MAX_PER requires an integer value"),
        (["rack", "MAX_PER", "x"], "MAX_PER requires an integer value"),
        (["rack", "LIKE"], "LIKE and UNLIKE require a non-empty, regular expression value"),
        (["rack", "UNLIKE", "a("], "is not a valid regular expression"),
        (["rack", "IS", "a,b"], "IS only supports Mesos text and float values"),
    ],
)
def test_constraint_rules(constraint: list[str], error: str) -> None:
    found = problems(app(constraints=[["hostname", "UNIQUE"], constraint]))
    assert list(found) == ["/constraints(1)"]
    assert error in found["/constraints(1)"][0]


def test_good_constraints_pass() -> None:
    good = [["hostname", "CLUSTER"], ["rack", "GROUP_BY", "3"], ["rack", "MAX_PER", "2"], ["rack", "LIKE", "r[0-9]"]]
    assert (
        parse_app(app(constraints=[*good, ["rack", "IS", "r1"], ["rack", "GROUP_BY"]])).constraints[0][1] == "CLUSTER"
    )


@pytest.mark.parametrize(
    ("checks", "path", "error"),
    [
        ([{"portIndex": 1}], "/healthChecks(0)/portIndex", "Health check port indices must address an element"),
        ([{"port": 80, "portIndex": 0}], "/healthChecks(0)", "HealthCheck must specify either a port or a portIndex"),
        ([{"protocol": "COMMAND"}], "/healthChecks(0)/command", "must be defined for COMMAND health checks"),
        ([{"protocol": "MESOS_TCP"}, {"protocol": "MESOS_HTTP"}], "/", "at most one Mesos health check"),
        ([{"protocol": "HTTP"}, {"protocol": "MESOS_HTTP"}], "/", "must not mix Marathon health checks"),
        ([{"intervalSeconds": -1}], "/healthChecks(0)/intervalSeconds", "is less than 0"),
        ([{"maxConsecutiveFailures": -1}], "/healthChecks(0)/maxConsecutiveFailures", "is less than 0"),
    ],
)
def test_health_check_rules(checks: list[dict[str, Any]], path: str, error: str) -> None:
    found = problems(app(healthChecks=checks))
    assert path in found, found
    assert any(error in message for message in found[path])


def test_port_index_is_checked_against_container_port_mappings() -> None:
    container = {"type": "DOCKER", "docker": {"image": "nginx"}, "portMappings": [{"containerPort": 80}] * 2}
    body = app(networks=[{"mode": "container/bridge"}], container=container, healthChecks=[{"portIndex": 1}])
    assert parse_app(body).health_checks[0].port_index == 1


def test_readiness_checks() -> None:
    named = app(portDefinitions=[{"port": 0, "name": "http-api"}])
    assert len(parse_app({**named, "readinessChecks": [{}]}).readiness_checks) == 1
    found = problems({**named, "readinessChecks": [{}, {"portName": "nope"}]})
    assert found["/readinessChecks"] == ["has size 2, expected 1 or less"]
    assert found["/readinessChecks(1)/portName"] == ["No port definition reference for portName nope"]


# --- partial updates and rollbacks ------------------------------------------------------------------------------


def current_app() -> App:
    return msgspec.structs.replace(
        parse_app(app(id="/shop/web", instances=2, ports=[8080], dependencies=["../db"])),
        version="2017-01-01T00:00:00.000Z",
    )


def test_merge_replaces_given_keys_and_ignores_read_only_ones() -> None:
    body = {"cmd": "serve", "tasks": [{"id": "t"}], "tasksRunning": 3, "version": "x", "id": "/other", "mem": None}
    merged = merge_partial(current_app(), body)
    assert merged.id == "/shop/web"
    assert merged.cmd == "serve"
    assert merged.instances == 2 and merged.mem == 128.0
    assert merged.dependencies == ["/db"]
    assert merged.port_definitions == [PortDefinition(port=8080)]


def test_merge_translates_deprecated_keys_of_the_update() -> None:
    merged = merge_partial(current_app(), {"ports": [9090, 9091], "uris": ["http://h/a.zip"]})
    assert [d.port for d in merged.port_definitions] == [9090, 9091]
    assert merged.fetch == [FetchUri(uri="http://h/a.zip", extract=True)]


def test_merge_validates_the_result() -> None:
    with pytest.raises(InvalidDefinition):
        merge_partial(current_app(), {"cpus": -1})
    with pytest.raises(InvalidJson):
        merge_partial(current_app(), {"instances": "many"})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"version": "2017-01-01T00:00:00.000Z"}, "2017-01-01T00:00:00.000Z"),
        ({"id": "/web", "version": "v1"}, "v1"),
        ({"version": "v1", "cmd": "x"}, None),
        ({"cmd": "x"}, None),
        ({"version": 3}, None),
    ],
)
def test_is_rollback(body: dict[str, Any], expected: str | None) -> None:
    assert is_rollback(body) == expected


# --- group updates ----------------------------------------------------------------------------------------------


def test_group_update_resolves_nested_relative_ids() -> None:
    body = {
        "id": "shop",
        "dependencies": ["db"],
        "apps": [{"id": "web", "cmd": "x", "dependencies": ["api/server"]}],
        "groups": [{"id": "api", "apps": [{"id": "server", "cmd": "y"}], "groups": [{"id": "/shop/api/v2"}]}],
    }
    update = parse_group_update(body, group_id="/")
    assert update.id == "/shop"
    assert update.dependencies == ("/db",)
    assert update.apps is not None and update.apps[0].id == "/shop/web"
    assert update.apps[0].dependencies == ["/shop/api/server"]
    assert update.groups is not None
    inner = update.groups[0]
    assert inner.id == "/shop/api"
    assert inner.apps is not None and inner.apps[0].id == "/shop/api/server"
    assert inner.groups is not None and inner.groups[0].id == "/shop/api/v2"
    assert inner.groups[0].apps is None and inner.groups[0].groups is None


def test_group_update_without_id_is_the_url_group_and_keeps_scale_and_version() -> None:
    update = parse_group_update(b'{"scaleBy": 1.5, "version": "v1"}', group_id="/shop")
    assert (update.id, update.scale_by, update.version, update.apps) == ("/shop", 1.5, "v1", None)


def test_an_app_outside_its_group_is_refused() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_group_update({"id": "/group", "apps": [{"id": "/app", "cmd": "x"}]}, group_id="/")
    assert caught.value.response_body()["details"] == [
        {"path": "/apps(0)/id", "errors": ["identifier /app is not child of /group. Hint: use relative paths."]}
    ]


def test_a_group_outside_its_group_is_refused() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_group_update({"groups": [{"id": "/elsewhere/x"}]}, group_id="/shop")
    assert caught.value.details[0].path == "/groups(0)/id"


def test_nested_app_problems_carry_their_prefix() -> None:
    body = {"groups": [{"id": "api", "apps": [{"id": "a", "cmd": "x"}, {"id": "b", "cmd": "x", "cpus": 0}]}]}
    with pytest.raises(InvalidDefinition) as caught:
        parse_group_update(body, group_id="/")
    assert [d.path for d in caught.value.details] == ["/groups(0)/apps(1)/cpus"]
    with pytest.raises(InvalidJson) as bad_type:
        parse_group_update({"apps": [{"id": "a", "cpus": "x"}]}, group_id="/")
    assert bad_type.value.details[0].path == "/apps(0)/cpus"


def test_group_update_type_errors() -> None:
    with pytest.raises(InvalidJson) as caught:
        parse_group_update({"scaleBy": "twice"}, group_id="/")
    assert caught.value.details[0].path == "/scaleBy"
    with pytest.raises(InvalidJson):
        parse_group_update({"groups": [{"apps": []}]}, group_id="/")
