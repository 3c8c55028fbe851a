"""ZooKeeper URLs and the election group's names, as Mesos's detector and pymesos read them (no ZooKeeper)."""

from __future__ import annotations

from pathlib import Path

import pytest

from butte.core.errors import ValidationError
from butte.master.registry.zookeeper import registry_path
from butte.scheduler.zk_detector import ZkUrl, address_of, leader_child, parse_zk_url, sequence_of


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("zk://h1:2181,h2:2181,h3:2181/butte", ZkUrl("h1:2181,h2:2181,h3:2181", "/butte")),
        ("zoo://h1:2181/a/b/", ZkUrl("h1:2181", "/a/b")),
        ("zk://h1:2181", ZkUrl("h1:2181", "/")),
        ("zk://h1:2181/", ZkUrl("h1:2181", "/")),
    ],
)
def test_urls_split_into_hosts_and_path(url: str, expected: ZkUrl) -> None:
    assert parse_zk_url(url) == expected


def test_a_file_url_names_a_file_holding_the_url(tmp_path: Path) -> None:
    holder = tmp_path / "zk"
    holder.write_text("zk://h1:2181/mesos\n")
    assert parse_zk_url(f"file://{holder}") == ZkUrl("h1:2181", "/mesos")


@pytest.mark.parametrize("url", ["h1:2181", "http://h1:2181/x", "zk:///butte", "zk://user:pw@h1:2181/butte"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        parse_zk_url(url)


def test_only_json_info_sequence_members_count_and_the_lowest_leads() -> None:
    children = ["log_replicas", "info_0000000001", "json.info_0000000012", "json.info_0000000003", "json.info_x"]
    assert [sequence_of(c) for c in children] == [None, None, 12, 3, None]
    assert leader_child(children) == "json.info_0000000003"
    assert leader_child(["log_replicas"]) is None


def test_the_leader_address_comes_from_master_info() -> None:
    info = {"hostname": "m1", "port": 5050, "address": {"hostname": "m1", "ip": "10.0.0.1", "port": 5050}}
    assert address_of(info) == "10.0.0.1:5050"  # address.ip first, as pymesos connects
    assert address_of({"hostname": "m1", "port": 5051}) == "m1:5051"
    assert address_of({}) is None


def test_the_registry_lives_beside_the_election_group() -> None:
    assert registry_path("/butte") == "/butte-registry"
    assert registry_path("/a/b/") == "/a/b-registry"
    assert registry_path("/") == "/butte-registry"
