"""Errors of the scheduler SDK, built on the core tree so ``except Unavailable`` catches every outage.

ButteError
├── CallFailed(call_type, status, body)   a non-2xx answer to a call
│   ├── CallUnauthorized   (also Unauthorized)  401
│   ├── CallForbidden      (also Forbidden)     403, e.g. "Framework is not subscribed"
│   └── CallUnavailable    (also Unavailable)   503, e.g. "No leader elected"
├── SubscribeRefused(message)             the master answered SUBSCRIBE with an ERROR event
└── Unavailable
    └── Disconnected                      no event stream right now, or the call never got an answer
        └── FailedOver(message)           the stream ended for good with an ERROR event
"""

from __future__ import annotations

from typing import final

from butte.core.errors import ButteError, Forbidden, Unauthorized, Unavailable


class CallFailed(ButteError):
    """The master answered a call with a status other than 2xx; carries the status and the body text."""

    def __init__(self, call_type: str, status: int, body: str) -> None:
        super().__init__(f"{call_type} failed with {status}: {body.strip() or '(empty body)'}")
        self.call_type = call_type
        self.status = status
        self.body = body


@final
class CallUnauthorized(CallFailed, Unauthorized):
    """401: the master wants HTTP authentication."""


@final
class CallForbidden(CallFailed, Forbidden):
    """403: the master no longer sees this framework as subscribed, or refuses the principal."""


@final
class CallUnavailable(CallFailed, Unavailable):
    """503: the master is not the leader (and knows of none) or is still recovering."""


_BY_STATUS: dict[int, type[CallFailed]] = {
    401: CallUnauthorized,
    403: CallForbidden,
    503: CallUnavailable,
}


def call_failed(call_type: str, status: int, body: str) -> CallFailed:
    """The most specific :class:`CallFailed` for an HTTP status."""
    return _BY_STATUS.get(status, CallFailed)(call_type, status, body)


@final
class SubscribeRefused(ButteError):
    """SUBSCRIBE was answered 200 but the stream held only an ERROR (bad roles, not authorized, removed)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"subscription refused: {message}")
        self.message = message


class Disconnected(Unavailable):
    """No event stream is open now (not yet subscribed, reconnecting, closed), or a call got no answer."""


@final
class FailedOver(Disconnected):
    """The master ended the stream with an ERROR event, e.g. "Framework failed over"; the client stopped."""

    def __init__(self, message: str) -> None:
        super().__init__(f"the master ended the subscription: {message}")
        self.message = message
