"""Unmodified pymesos 0.3.15 (PyPI) against a real Butte cluster: a scheduler and a custom executor.

pymesos is the strictest client we know of (mesos-v1-api.md §6.1): it parses ``GET /version`` as numbers,
reads the SUBSCRIBE response with a raw chunked parser and exact RecordIO framing, needs ``Content-Length: 0``
on 202s, acknowledges with ``status.agent_id``, and its executor compares the SUBSCRIBED ids exactly. The
scheduler class here is our own; the executor is a small script the test writes and the agent starts.
"""

from __future__ import annotations

import os
import pwd
import shlex
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from butte.testing import Cluster
from butte.testing.wait import states_of, until, until_task_states

try:
    import pymesos
except ImportError:  # pragma: no cover - depends on the machine
    if os.environ.get("CI"):
        raise
    pytest.skip("pymesos is not installed: run scripts/install-compat-deps", allow_module_level=True)

pytestmark = [pytest.mark.compat, pytest.mark.cluster(agents=1)]

TASK_CPUS = 0.1
TASK_MEM_MB = 32.0
WAIT_S = 60.0

EXECUTOR_SCRIPT = '''\
"""A pymesos executor: TASK_RUNNING, a framework message, then TASK_FINISHED carrying data."""
import threading

from pymesos import Executor, MesosExecutorDriver, encode_data


class ReportingExecutor(Executor):
    def launchTask(self, driver, task):
        threading.Thread(target=self.run_task, args=(driver, task), daemon=True).start()

    def run_task(self, driver, task):
        task_id = task["task_id"]["value"]
        driver.sendStatusUpdate({"task_id": task["task_id"], "state": "TASK_RUNNING"})
        driver.sendFrameworkMessage(encode_data(("hello from " + task_id).encode()))
        finished = {"task_id": task["task_id"], "state": "TASK_FINISHED"}
        finished["data"] = encode_data(("done: " + task_id).encode())
        driver.sendStatusUpdate(finished)


if __name__ == "__main__":
    MesosExecutorDriver(ReportingExecutor(), use_addict=False).run()
'''


def scalar(offer: dict[str, Any], name: str) -> float:
    """The unreserved scalar ``name`` in a v1 offer (0 if absent)."""
    return float(sum(r["scalar"]["value"] for r in offer.get("resources", []) if r["name"] == name))


def task_resources() -> list[dict[str, Any]]:
    return [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": TASK_CPUS}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": TASK_MEM_MB}},
    ]


class RecordingScheduler(pymesos.Scheduler):  # type: ignore[misc]
    """Launches each queued task on the first offer big enough, and records what comes back."""

    def __init__(self, tasks: list[dict[str, Any]]) -> None:
        self._lock = threading.Lock()
        self.pending = list(tasks)
        self.framework_ids: list[str] = []
        self.updates: list[dict[str, Any]] = []
        self.messages: list[tuple[str, str, bytes]] = []
        self.errors: list[str] = []

    def registered(self, driver: Any, framework_id: dict[str, str], master_info: Any) -> None:
        self.framework_ids.append(framework_id["value"])

    def resourceOffers(self, driver: Any, offers: list[dict[str, Any]]) -> None:
        for offer in offers:
            task = self._next_task_for(offer)
            if task is None:
                driver.declineOffer(offer["id"], {"refuse_seconds": 1})
            else:
                driver.launchTasks(offer["id"], [task])

    def _next_task_for(self, offer: dict[str, Any]) -> dict[str, Any] | None:
        fits = scalar(offer, "cpus") >= TASK_CPUS and scalar(offer, "mem") >= TASK_MEM_MB
        with self._lock:
            if not fits or not self.pending:
                return None
            return {**self.pending.pop(0), "agent_id": offer["agent_id"]}

    def statusUpdate(self, driver: Any, update: dict[str, Any]) -> None:
        self.updates.append(update)

    def frameworkMessage(self, driver: Any, executor_id: Any, agent_id: Any, message: str) -> None:
        self.messages.append((executor_id["value"], agent_id["value"], pymesos.decode_data(message)))

    def error(self, driver: Any, message: str) -> None:
        self.errors.append(message)


def framework_info(name: str) -> dict[str, Any]:
    return {"name": name, "user": pwd.getpwuid(os.getuid()).pw_name, "hostname": "127.0.0.1"}


@contextmanager
def running_driver(scheduler: RecordingScheduler, master: str, name: str) -> Iterator[Any]:
    """A started MesosSchedulerDriver; stopped (TEARDOWN) and its threads joined on exit."""
    driver = pymesos.MesosSchedulerDriver(scheduler, framework_info(name), master, use_addict=False)
    driver.start()
    try:
        yield driver
    finally:
        driver.stop()
        driver.join()


async def test_custom_executor_runs_a_task(cluster: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "reporting_executor.py"
    script.write_text(EXECUTOR_SCRIPT)
    executor = {
        "executor_id": {"value": "reporting-executor"},
        "name": "pymesos reporting executor",
        "command": {"value": f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}", "shell": True},
        "resources": task_resources(),
    }
    task = {"name": "with-executor", "task_id": {"value": "task-1"}, "resources": task_resources()}
    scheduler = RecordingScheduler([{**task, "executor": executor}])

    with running_driver(scheduler, cluster.master_address, "pymesos-executor-compat"):
        seen = await until_task_states(scheduler.updates, "task-1", ["TASK_RUNNING", "TASK_FINISHED"], timeout=WAIT_S)
        await until(lambda: scheduler.messages, timeout=WAIT_S, what="the executor's framework message")

    assert seen[-1] == "TASK_FINISHED", seen
    assert scheduler.framework_ids and not scheduler.errors
    updates = [u for u in scheduler.updates if u["task_id"]["value"] == "task-1"]
    assert all(u["agent_id"]["value"] for u in updates)
    finished = next(u for u in updates if u["state"] == "TASK_FINISHED")
    assert pymesos.decode_data(finished["data"]) == b"done: task-1"
    executor_id, agent_id, data = scheduler.messages[0]
    assert (executor_id, data) == ("reporting-executor", b"hello from task-1")
    assert agent_id == finished["agent_id"]["value"]


async def test_command_task_finishes(cluster: Cluster) -> None:
    task = {
        "name": "plain-command",
        "task_id": {"value": "command-1"},
        "resources": task_resources(),
        "command": {"value": "echo hello from a command task", "shell": True},
    }
    scheduler = RecordingScheduler([task])

    with running_driver(scheduler, cluster.master_address, "pymesos-command-compat"):
        await until_task_states(scheduler.updates, "command-1", ["TASK_FINISHED"], timeout=WAIT_S)

    assert states_of(scheduler.updates, "command-1")[-1] == "TASK_FINISHED"
    assert all(u["agent_id"]["value"] for u in scheduler.updates)
    assert not scheduler.errors
