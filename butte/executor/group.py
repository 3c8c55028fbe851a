"""Task groups run like Mesos's default executor: the tasks of a group live and die together.

Each task is a command task under the group's executor. When one fails, or one is killed, the others are
killed too (Mesos's default executor kills the whole group in both cases).
"""

from __future__ import annotations

from typing import final

from butte.executor.command import CommandTask
from butte.wire.mesos import KillPolicy, TaskState


@final
class TaskGroupRun:
    """The running tasks of one task group."""

    def __init__(self) -> None:
        self.tasks: dict[str, CommandTask] = {}
        self._killing = False

    def add(self, task_id: str, task: CommandTask) -> None:
        """Include a task in the group (before it starts)."""
        self.tasks[task_id] = task

    def start(self) -> None:
        """Start every task; once the group is being killed, the rest are reported killed instead."""
        for task in self.tasks.values():
            if self._killing:
                task.cancel("Task group was killed before this task started")
            else:
                task.start()

    def task_exited(self, task: CommandTask, state: TaskState) -> None:
        """A task ended: a failure takes the rest of the group with it."""
        if state in ("TASK_FAILED", "TASK_KILLED"):
            self.kill()

    def kill(self, kill_policy: KillPolicy | None = None) -> None:
        """Kill every task of the group that still runs."""
        if self._killing:
            return
        self._killing = True
        for task in self.tasks.values():
            task.kill(kill_policy)

    def destroy(self) -> None:
        """SIGKILL every task at once (agent shutdown)."""
        for task in self.tasks.values():
            task.destroy()

    @property
    def done(self) -> bool:
        """Whether every task has ended."""
        return all(task.final_state is not None for task in self.tasks.values())
