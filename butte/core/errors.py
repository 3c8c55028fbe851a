"""Typed errors of Butte; the HTTP edge maps them to status codes in one place.

ButteError
├── ValidationError(field, msg)   -> 400
├── NotFound                      -> 404
├── Conflict                      -> 409
├── Unauthorized                  -> 401
├── Forbidden                     -> 403
└── Unavailable                   -> 503
    └── CoordinatorUnavailable
"""

from __future__ import annotations


class ButteError(Exception):
    """Root of every error Butte raises on purpose."""


class ValidationError(ButteError):
    """Input that does not fit: names the offending field."""

    def __init__(self, field: str, msg: str) -> None:
        super().__init__(f"{field}: {msg}" if field else msg)
        self.field = field
        self.msg = msg


class NotFound(ButteError):
    """The thing asked for does not exist."""


class Conflict(ButteError):
    """The request clashes with the current state."""


class Unauthorized(ButteError):
    """The caller did not prove who it is."""


class Forbidden(ButteError):
    """The caller may not do this now."""


class Unavailable(ButteError):
    """The service cannot answer now; try again later."""


class CoordinatorUnavailable(Unavailable):
    """The coordination service (ZooKeeper) cannot be reached."""


class InvalidTransition(ButteError):
    """A state machine was fed an event its current state does not accept."""

    def __init__(self, entity_id: str, state: object, event: object) -> None:
        super().__init__(f"{entity_id}: no transition from {state} on {event}")
        self.entity_id = entity_id
        self.state = state
        self.event = event
