"""The HTTP side of ``butte app``: a small client of Marathon's v2 REST API that decodes into the views of
:mod:`butte.cli.app_progress` and turns Marathon's error answers into :class:`MarathonHttpError`."""

from __future__ import annotations

from typing import Final, TypeVar

import aiohttp
import msgspec

from butte.cli.app_progress import (
    AppBody,
    AppsBody,
    AppView,
    ChangeBody,
    DeploymentView,
    ErrorView,
    QueueBody,
    QueueItemView,
    RawAppBody,
    TasksBody,
    TaskView,
    format_error,
)
from butte.core.errors import ButteError, Unavailable

REQUEST_TIMEOUT_S: Final = 30.0
T = TypeVar("T")


class CannotReach(Unavailable):
    """No HTTP answer from Marathon at all (refused, reset, timed out)."""


class MarathonHttpError(ButteError):
    """Marathon answered with an error status; ``error`` is its decoded body."""

    def __init__(self, status: int, error: ErrorView) -> None:
        super().__init__(format_error(status, error))
        self.status = status
        self.error = error


class BadReply(ButteError):
    """Marathon answered 2xx with a body that is not the JSON the API documents."""


def absolute_id(app_id: str) -> str:
    """``web`` and ``/web/`` become ``/web``: Marathon resolves relative ids against the root for ``/v2/apps``."""
    return "/" + app_id.strip("/")


def app_path(app_id: str) -> str:
    return f"/v2/apps/{app_id.strip('/')}"


def decode(body: bytes, type_: type[T]) -> T:
    """Decode a 2xx body.

    Raises:
        BadReply: not JSON of that shape.
    """
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.DecodeError as exc:
        raise BadReply(f"unexpected answer from Marathon: {exc}") from exc


class MarathonApi:
    """The one port to Marathon: JSON requests, answers decoded into views, transport errors converted once."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.url = url.rstrip("/")
        self._session = session

    async def call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: bytes | None = None
    ) -> tuple[bytes, str | None]:
        """One request; returns the body and the ``Marathon-Deployment-Id`` header.

        Raises:
            CannotReach: no answer. MarathonHttpError: a status of 400 or above.
        """
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        try:
            async with self._session.request(
                method, self.url + path, params=params, data=body, headers=headers
            ) as response:
                payload = await response.read()
                status, deployment_id = response.status, response.headers.get("Marathon-Deployment-Id")
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise CannotReach(f"cannot reach Marathon at {self.url} ({exc or type(exc).__name__})") from exc
        if status >= 400:
            try:
                error = msgspec.json.decode(payload, type=ErrorView)
            except msgspec.DecodeError:
                error = ErrorView(message=payload.decode(errors="replace").strip()[:500])
            raise MarathonHttpError(status, error)
        return payload, deployment_id

    async def apps(self) -> list[AppView]:
        return decode((await self.call("GET", "/v2/apps"))[0], AppsBody).apps

    async def app_json(self, app_id: str) -> bytes:
        """The raw ``app`` object (every key the server sent), for ``show --json``."""
        return bytes(decode((await self.call("GET", app_path(app_id)))[0], RawAppBody).app)

    async def app(self, app_id: str) -> AppView:
        return decode((await self.call("GET", app_path(app_id)))[0], AppBody).app

    async def app_or_none(self, app_id: str) -> AppView | None:
        """The app, or None when Marathon answers 404 (never created, or removed)."""
        try:
            return await self.app(app_id)
        except MarathonHttpError as exc:
            if exc.status == 404:
                return None
            raise

    async def tasks(self, app_id: str) -> list[TaskView]:
        return decode((await self.call("GET", app_path(app_id) + "/tasks"))[0], TasksBody).tasks

    async def deployments(self) -> list[DeploymentView]:
        return decode((await self.call("GET", "/v2/deployments"))[0], list[DeploymentView])

    async def queue(self) -> list[QueueItemView]:
        body, _ = await self.call("GET", "/v2/queue", params={"embed": "lastUnusedOffers"})
        return decode(body, QueueBody).queue

    async def change(self, method: str, path: str, *, params: dict[str, str], body: bytes | None = None) -> str | None:
        """A deploying call; returns its deployment id (header first, then the body), None if it names none."""
        payload, header_id = await self.call(method, path, params=params, body=body)
        if header_id:
            return header_id
        answer = decode(payload, ChangeBody) if payload.strip() else ChangeBody()
        if answer.deployment_id:
            return answer.deployment_id
        return answer.deployments[0].id if answer.deployments else None
