"""Custom executors: the framework's own executor processes, talking to the agent over the executor API.

The agent holds an executor's tasks until it SUBSCRIBEs (then sends LAUNCH for each), relays its updates and
messages, passes kills and acknowledgements back to it, and shuts it down with SHUTDOWN followed by a SIGKILL
of its group after the grace period. Tasks added to a running executor grow its container (Mesos's
containerizer ``update()``).

Starting, adopting and timing out executor processes, and failing their tasks when they exit, is
``butte.agent.executor_launch``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import final

from butte.agent.api.executor import ExecutorStream
from butte.agent.context import AgentContext
from butte.agent.executor_launch import ExecutorLauncher, ExecutorRun, container_limits
from butte.agent.state import ExecutorState, FrameworkState, TaskRecord
from butte.containerizer.process import Process
from butte.core.errors import Forbidden, NotFound
from butte.wire.agent_link import AgentCall, ExecutorToFramework
from butte.wire.base import ID
from butte.wire.executor import (
    DataMessage,
    ExecutorAcknowledged,
    ExecutorCall,
    ExecutorEvent,
    ExecutorKill,
    ExecutorLaunch,
    ExecutorSubscribed,
)
from butte.wire.mesos import ContainerID, ContainerStatus, KillPolicy, TaskInfo, TaskStatus

log = logging.getLogger(__name__)


@final
class CustomExecutors:
    """Every custom executor of the agent; also the agent's side of the executor API (``ExecutorPort``)."""

    def __init__(self, context: AgentContext) -> None:
        self._context = context
        self._launcher = ExecutorLauncher(context)
        self._runs = self._launcher.runs  # the launcher adds and removes runs; the executor API looks them up

    def run_task(self, framework: FrameworkState, task: TaskInfo) -> None:
        """Give a task to its executor, starting the executor first if it is not running."""
        assert task.executor is not None
        key = (framework.framework_id, task.executor.executor_id.value)
        run = self._runs.get(key)
        if run is None:
            run = self._launcher.launch(framework, task)
        elif run.container is not None:
            self._context.containers.update(run.executor.container_id, container_limits(run.executor, task))
        record = TaskRecord(task, framework.framework_id, run.executor.executor_id, framework.info.user)
        self._context.state.add_task(run.executor, record)
        if run.executor.exited:
            self._launcher.fail_task(
                run, record, run.failure or "Executor failed to launch", "REASON_CONTAINER_LAUNCH_FAILED"
            )
            self._context.executor_ended(run.executor)
        elif run.stream is not None:
            run.stream.send(ExecutorEvent(type="LAUNCH", launch=ExecutorLaunch(task=task)))
        else:
            run.queued.append(task)

    def recover(self, framework: FrameworkState, executor: ExecutorState, process: Process | None) -> None:
        """Reattach to an executor an earlier run of the agent started; it must resubscribe in time."""
        self._launcher.adopt(framework, executor, process)

    def kill_task(self, executor: ExecutorState, task_id: str, kill_policy: KillPolicy | None) -> None:
        """Drop a task the executor has not got yet; ask the executor to kill one it has."""
        run = self._runs.get((executor.framework_id, executor.executor_id))
        if run is None:
            return
        queued = [task for task in run.queued if task.task_id.value == task_id]
        if queued:
            run.queued.remove(queued[0])
            record = executor.tasks.get(task_id)
            if record is not None:
                self._context.reporter.report(
                    record,
                    executor,
                    "TASK_KILLED",
                    source="SOURCE_AGENT",
                    message="Killed before delivery to the executor",
                    reason="REASON_TASK_KILLED_DURING_LAUNCH",
                )
        elif run.stream is not None:
            kill = ExecutorKill(task_id=ID(value=task_id), kill_policy=kill_policy)
            run.stream.send(ExecutorEvent(type="KILL", kill=kill))

    def shutdown_executor(self, executor: ExecutorState) -> None:
        """SHUTDOWN the executor, then SIGKILL its process group after its grace period."""
        run = self._runs.get((executor.framework_id, executor.executor_id))
        if run is None or run.shutting_down:
            return
        run.shutting_down = True
        if run.process is None:
            return  # still launching: it is killed as soon as it exists
        if run.stream is None:
            run.process.signal_group(signal.SIGKILL)  # it never subscribed: nothing to tell it
            return
        run.stream.send(ExecutorEvent(type="SHUTDOWN"))
        grace_s = self._grace_period_s(run)
        loop = asyncio.get_running_loop()
        run.timers.append(loop.call_later(grace_s, run.process.signal_group, signal.SIGKILL))

    def deliver_message(self, framework_id: str, executor_id: str, data: str) -> None:
        """A framework message for a subscribed executor (dropped otherwise, as Mesos does)."""
        run = self._runs.get((framework_id, executor_id))
        if run is None or run.stream is None:
            log.warning("Dropping message for executor %s: not subscribed", executor_id)
            return
        run.stream.send(ExecutorEvent(type="MESSAGE", message=DataMessage(data=data)))

    def acknowledged(self, framework_id: str, executor_id: str, task_id: str, uuid: str) -> None:
        """Tell the executor the framework acknowledged one of its updates."""
        run = self._runs.get((framework_id, executor_id))
        if run is not None and run.stream is not None:
            ack = ExecutorAcknowledged(task_id=ID(value=task_id), uuid=uuid)
            run.stream.send(ExecutorEvent(type="ACKNOWLEDGED", acknowledged=ack))

    def shutdown_all(self) -> None:
        """Shut every executor down (agent shutdown)."""
        for run in list(self._runs.values()):
            self.shutdown_executor(run.executor)

    def destroy_all(self) -> None:
        """SIGKILL every executor's process group at once."""
        for run in self._runs.values():
            if run.process is not None:
                run.process.signal_group(signal.SIGKILL)

    async def wait_all(self) -> None:
        """Wait until every executor has exited (those still launching included)."""
        watchers = [run.watcher for run in self._runs.values() if run.watcher is not None]
        await asyncio.gather(*(asyncio.shield(watcher) for watcher in watchers))

    # ---- the executor API (ExecutorPort) ----

    def subscribe(self, call: ExecutorCall, stream: ExecutorStream) -> None:
        """An executor subscribed: SUBSCRIBED, then LAUNCH for every task it has not got.

        Raises:
            NotFound: the framework or the executor is not known here.
        """
        run = self._find(call)
        if run.stream is not None:
            run.stream.close()  # a second SUBSCRIBE replaces the first stream
        run.stream = stream
        if run.shutting_down:
            stream.send(ExecutorEvent(type="SHUTDOWN"))
            stream.close()
            return
        for timer in run.timers:
            timer.cancel()
        run.timers.clear()
        log.info("Executor %s of framework %s subscribed", run.executor.executor_id, run.framework.framework_id)
        stream.send(self._subscribed_event(run))
        self._take_unacknowledged(run, call)
        for task in run.queued:
            stream.send(ExecutorEvent(type="LAUNCH", launch=ExecutorLaunch(task=task)))
        run.queued.clear()

    def update(self, call: ExecutorCall) -> None:
        """An executor's status update: fill in the agent's fields and send it reliably.

        Raises:
            NotFound: unknown framework or executor. Forbidden: the executor has not subscribed.
        """
        run = self._subscribed(call)
        assert call.update is not None
        self._forward_status(run, call.update.status)

    def _take_unacknowledged(self, run: ExecutorRun, call: ExecutorCall) -> None:
        """Updates a resubscribing executor still holds: forward those this agent never recorded.

        An agent killed right after taking an update may not have checkpointed it; Mesos takes them again
        from SUBSCRIBE, and the uuid tells which it has.
        """
        for update in call.subscribe.unacknowledged_updates if call.subscribe else []:
            record = run.executor.tasks.get(update.status.task_id.value)
            if record is not None and all(seen.uuid != update.status.uuid for seen in record.statuses):
                self._forward_status(run, update.status)

    def _forward_status(self, run: ExecutorRun, status: TaskStatus) -> None:
        status.agent_id = ID(value=self._context.agent_id)
        status.executor_id = run.executor.info.executor_id
        if status.container_status is None or status.container_status.container_id is None:
            status.container_status = ContainerStatus(container_id=ContainerID(value=run.executor.container_id))
        record = run.executor.tasks.get(status.task_id.value)
        if record is None:
            self._context.reporter.send_untracked(run.framework.framework_id, status)
        else:
            self._context.reporter.forward(record, status)

    def message(self, call: ExecutorCall) -> None:
        """An executor's message for its framework, relayed through the master.

        Raises:
            NotFound: unknown framework or executor. Forbidden: the executor has not subscribed.
        """
        self._subscribed(call)
        assert call.message is not None
        relay = ExecutorToFramework(
            framework_id=call.framework_id, executor_id=call.executor_id, data=call.message.data
        )
        self._context.send(AgentCall(type="MESSAGE", agent_id=ID(value=self._context.agent_id), message=relay))

    def heartbeat(self, call: ExecutorCall) -> None:
        """Nothing to do but check who it is.

        Raises:
            NotFound: unknown framework or executor. Forbidden: the executor has not subscribed.
        """
        self._subscribed(call)

    def disconnected(self, call: ExecutorCall, stream: ExecutorStream) -> None:
        """An executor's stream ended."""
        run = self._runs.get((call.framework_id.value, call.executor_id.value))
        if run is not None and run.stream is stream:
            run.stream = None
            log.info("Executor %s of framework %s disconnected", call.executor_id.value, call.framework_id.value)

    # ---- internals ----

    def _find(self, call: ExecutorCall) -> ExecutorRun:
        if call.framework_id.value not in self._context.state.frameworks:
            raise NotFound("Framework cannot be found")
        run = self._runs.get((call.framework_id.value, call.executor_id.value))
        if run is None:
            raise NotFound("Executor cannot be found")
        return run

    def _subscribed(self, call: ExecutorCall) -> ExecutorRun:
        run = self._find(call)
        if run.stream is None:
            raise Forbidden("Executor is not subscribed")
        return run

    def _subscribed_event(self, run: ExecutorRun) -> ExecutorEvent:
        framework_info = run.framework.info
        subscribed = ExecutorSubscribed(
            executor_info=run.executor.info,
            framework_info=framework_info,
            agent_info=self._context.agent_info,
            container_id=ContainerID(value=run.executor.container_id),
        )
        return ExecutorEvent(type="SUBSCRIBED", subscribed=subscribed)

    def _grace_period_s(self, run: ExecutorRun) -> float:
        period = run.executor.info.shutdown_grace_period
        return period.nanoseconds / 1e9 if period else self._context.config.executor_shutdown_grace_period_s
