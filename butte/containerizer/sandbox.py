"""Sandbox directories, laid out as Mesos lays them out under ``--work_dir``.

``slaves/<agent>/frameworks/<framework>/executors/<executor>/runs/<container>``, with a ``latest`` symlink
beside the runs, so tools that know Mesos's layout (the web UI, ``/files``, DC/OS's CLI) find them. The
launcher creates ``stdout``/``stderr`` in a run when it starts the process. Each filesystem operation is
counted here: creating a file costs ~1 ms on this kind of host, and a sandbox is made per task.
"""

from __future__ import annotations

import os

from butte.containerizer.launcher import LaunchError, UserIds


def executor_runs_dir(work_dir: str, agent_id: str, framework_id: str, executor_id: str) -> str:
    """The directory holding every run of one executor."""
    return os.path.join(work_dir, "slaves", agent_id, "frameworks", framework_id, "executors", executor_id, "runs")


def create_sandbox(runs_dir: str, container_id: str, user: UserIds | None) -> str:
    """Make a run's sandbox, point ``latest`` at it, and give it to ``user``.

    Raises:
        LaunchError: the directory cannot be created.
    """
    sandbox = os.path.join(runs_dir, container_id)
    try:
        os.makedirs(sandbox, exist_ok=True)
        _point_latest(runs_dir, container_id)
        _give_to(sandbox, user)
    except OSError as exc:
        raise LaunchError(f"Failed to create sandbox {sandbox}: {exc}") from exc
    return sandbox


def task_dir(sandbox: str, task_id: str) -> str:
    """Where a task of a task group runs, inside the group's sandbox (Mesos nests one container per task)."""
    return os.path.join(sandbox, "tasks", task_id)


def create_task_dir(sandbox: str, task_id: str, user: UserIds | None) -> str:
    """Make a group task's directory and give it to ``user``.

    Raises:
        LaunchError: the directory cannot be created.
    """
    path = task_dir(sandbox, task_id)
    try:
        os.makedirs(path, exist_ok=True)
        _give_to(path, user)
    except OSError as exc:
        raise LaunchError(f"Failed to create task directory {path}: {exc}") from exc
    return path


def _give_to(path: str, user: UserIds | None) -> None:
    # Mesos chowns the sandbox to the task's user so the task can write its own files. A directory the agent
    # made already belongs to the agent's own user: skip the chown then (one file-system operation per task).
    if user is None or os.geteuid() != 0 or (user.uid, user.gid) == (os.geteuid(), os.getegid()):
        return
    os.chown(path, user.uid, user.gid)


def _point_latest(runs_dir: str, container_id: str) -> None:
    latest = os.path.join(runs_dir, "latest")
    try:
        os.symlink(container_id, latest)  # the first run of an executor: one operation
    except FileExistsError:
        temporary = f"{latest}.{container_id}"
        os.symlink(container_id, temporary)
        os.replace(temporary, latest)
