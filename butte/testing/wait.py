"""Polling helpers for tests: wait for a condition with a deadline instead of sleeping a fixed time.

``until`` polls a predicate (sync or async) until it returns something truthy. The task-state helpers read
a list of status updates that a scheduler callback appends to (pymesos dicts in Mesos v1 JSON, or objects
with ``task_id`` and ``state`` attributes) and wait for a task to reach a state.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar, overload

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A condition did not become true before its deadline; the message says what was awaited."""

    def __init__(self, what: str, timeout_s: float, last_value: object, last_error: BaseException | None):
        detail = f"last value: {last_value!r}"
        if last_error is not None:
            detail += f"; last error: {type(last_error).__name__}: {last_error}"
        super().__init__(f"timed out after {timeout_s:g} s waiting for {what} ({detail})")
        self.what = what
        self.last_value = last_value
        self.last_error = last_error


def describe(predicate: Callable[..., object]) -> str:
    """A readable name for a predicate, for timeout messages."""
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    return "a lambda" if name.endswith("<lambda>") else name


@overload
async def until(
    predicate: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str | None = ...,
    ignore: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str | None = ...,
    ignore: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def until(
    predicate: Callable[[], object],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> object:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Exceptions of the types in ``ignore`` count as "not yet" (a server that is still starting refuses
    connections); the last one is reported if the deadline passes.

    Raises:
        WaitTimeout: the predicate stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_value: object = None
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last_value, last_error = value, None
        except ignore as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise WaitTimeout(what or describe(predicate), timeout, last_value, last_error)
        await asyncio.sleep(interval)


def _field(update: object, name: str) -> object:
    if isinstance(update, Mapping):
        return update.get(name)
    return getattr(update, name, None)


def _text(value: object) -> str | None:
    """A Mesos id (``{"value": ...}``, an object with ``.value``) or a state enum as plain text."""
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, Mapping):
        return _text(value.get("value"))
    if not isinstance(value, str) and hasattr(value, "value"):
        return _text(value.value)
    return str(value)


def task_id_of(update: object) -> str | None:
    """The task id of a status update (Mesos JSON dict or SDK object)."""
    return _text(_field(update, "task_id"))


def state_of(update: object) -> str | None:
    """The state of a status update, as its Mesos name (``TASK_RUNNING``)."""
    return _text(_field(update, "state"))


def states_of(updates: Sequence[object], task_id: str) -> list[str]:
    """The states reported for ``task_id``, in the order they arrived."""
    return [state_of(u) or "" for u in list(updates) if task_id_of(u) == task_id]


def _contains_in_order(seen: Sequence[str], wanted: Sequence[str]) -> bool:
    remaining = iter(seen)
    return all(state in remaining for state in wanted)


async def until_task_state(updates: Sequence[object], task_id: str, state: str, *, timeout: float = 10.0) -> object:
    """Wait until ``updates`` holds an update putting ``task_id`` in ``state``, and return that update.

    Raises:
        WaitTimeout: no such update arrived in time; the message lists the states that did.
    """

    def matching() -> object:
        found = [u for u in list(updates) if task_id_of(u) == task_id and state_of(u) == state]
        return found[0] if found else None

    try:
        return await until(matching, timeout=timeout, what=f"task {task_id} to reach {state}")
    except WaitTimeout as exc:
        raise WaitTimeout(exc.what, timeout, states_of(updates, task_id), None) from None


async def until_task_states(
    updates: Sequence[object], task_id: str, states: Sequence[str], *, timeout: float = 10.0
) -> list[str]:
    """Wait until ``task_id`` has gone through ``states`` in this order (others may come between).

    Returns every state seen for the task.

    Raises:
        WaitTimeout: the states did not all arrive in order in time.
    """

    def seen_in_order() -> list[str] | None:
        seen = states_of(updates, task_id)
        return seen if _contains_in_order(seen, states) else None

    try:
        return await until(seen_in_order, timeout=timeout, what=f"task {task_id} to go through {list(states)}")
    except WaitTimeout as exc:
        raise WaitTimeout(exc.what, timeout, states_of(updates, task_id), None) from None
