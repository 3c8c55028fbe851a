"""The master's legacy JSON views (``/master/state``, ``/master/state-summary``) built from the core."""

from __future__ import annotations

import json

from test_master_kit import START, Master, command_task, framework_info, launch_op

from butte.master import frameworks, views


def _cluster() -> tuple[Master, str, str]:
    master = Master()
    agent_id = master.add_agent("cpus:4;mem:4096;disk:100;ports:[31000-31005]")
    framework_id, _ = master.subscribe(framework_info("web", roles=["r"], capabilities=["MULTI_ROLE"]))
    offer = master.offer(framework_id)
    master.accept(
        framework_id,
        [offer.id.value],
        launch_op(command_task("a", agent_id), command_task("b", agent_id), command_task("c", agent_id)),
        refuse_seconds=0,
    )
    master.agent_update(agent_id, framework_id, "a", "TASK_RUNNING")
    uuid, _ = master.agent_update(agent_id, framework_id, "b", "TASK_FINISHED")
    master.ack(framework_id, agent_id, "b", uuid)
    master.offer(framework_id)  # what is left is outstanding as an offer
    return master, framework_id, agent_id


def test_state_lists_agents_with_flat_resources() -> None:
    master, _, agent_id = _cluster()
    state = views.state_json(master.state, flags={"port": "5050"}, elected_time=START)
    json.dumps(state)  # plain JSON all the way down
    assert (state["id"], state["pid"], state["hostname"]) == ("M", "master@127.0.0.1:5050", "localhost")
    assert state["leader"] == "master@127.0.0.1:5050"
    assert state["flags"] == {"port": "5050"}
    assert state["activated_slaves"] == 1.0
    (slave,) = state["slaves"]
    assert slave["id"] == agent_id
    assert slave["pid"] == "slave(1)@127.0.0.2:5051"
    assert slave["resources"] == {"cpus": 4.0, "gpus": 0.0, "mem": 4096.0, "disk": 100.0, "ports": "[31000-31005]"}
    assert slave["used_resources"]["cpus"] == 2.0  # a (running) and c (staging); b is finished
    assert slave["offered_resources"]["cpus"] == 2.0
    assert slave["active"] is True


def test_state_lists_frameworks_with_tasks_completed_tasks_and_offers() -> None:
    master, framework_id, agent_id = _cluster()
    state = views.state_json(master.state, flags={}, elected_time=START)
    (framework,) = state["frameworks"]
    assert (framework["id"], framework["name"], framework["active"], framework["connected"]) == (
        framework_id,
        "web",
        True,
        True,
    )
    assert framework["roles"] == ["r"]
    assert sorted((t["id"], t["state"]) for t in framework["tasks"]) == [("a", "TASK_RUNNING"), ("c", "TASK_STAGING")]
    task = next(t for t in framework["tasks"] if t["id"] == "a")
    assert (task["slave_id"], task["framework_id"], task["role"]) == (agent_id, framework_id, "r")
    assert [s["state"] for s in task["statuses"]] == ["TASK_RUNNING"]
    assert [(t["id"], t["state"]) for t in framework["completed_tasks"]] == [("b", "TASK_FINISHED")]
    assert len(framework["offers"]) == 1 and framework["offers"][0]["slave_id"] == agent_id
    assert framework["used_resources"]["cpus"] == 2.0
    assert framework["offered_resources"]["cpus"] == 2.0


def test_torn_down_frameworks_are_listed_as_completed() -> None:
    master, framework_id, _ = _cluster()
    frameworks.teardown(master.state, master.framework(framework_id), master.now)
    state = views.state_json(master.state, flags={}, elected_time=START)
    assert state["frameworks"] == []
    (done,) = state["completed_frameworks"]
    assert done["id"] == framework_id and done["active"] is False
    assert sorted(t["id"] for t in done["completed_tasks"]) == ["a", "b", "c"]
    assert state["slaves"][0]["used_resources"]["cpus"] == 0.0


def test_state_summary_counts_tasks_per_state() -> None:
    master, framework_id, agent_id = _cluster()
    summary = views.state_summary_json(master.state)
    json.dumps(summary)
    (slave,) = summary["slaves"]
    assert (slave["TASK_RUNNING"], slave["TASK_STAGING"], slave["TASK_FINISHED"], slave["TASK_LOST"]) == (1, 1, 0, 0)
    assert slave["framework_ids"] == [framework_id]
    assert not any(key.endswith("_full") for key in slave)
    (framework,) = summary["frameworks"]
    assert (framework["TASK_RUNNING"], framework["TASK_STAGING"]) == (1, 1)
    assert framework["slave_ids"] == [agent_id]
    assert "tasks" not in framework


def test_version_is_numeric() -> None:
    version = views.version_json()["version"]
    assert all(part.isdigit() for part in version.split("."))
