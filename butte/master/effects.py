"""What the master core asks its shell to do. Frozen data; the shell carries them out in order."""

from __future__ import annotations

from dataclasses import dataclass

from butte.wire.agent_link import AgentEvent
from butte.wire.scheduler import Event


@dataclass(frozen=True, slots=True)
class SendToFramework:
    """Write an event on the framework's subscription stream (dropped if it has none)."""

    framework_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class SendToAgent:
    """Write an event on the agent's link stream (dropped if it is disconnected)."""

    agent_id: str
    event: AgentEvent


@dataclass(frozen=True, slots=True)
class CloseFrameworkStream:
    """End a framework's subscription stream, after an ERROR event if ``error`` is set."""

    framework_id: str
    stream_id: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CloseAgentStream:
    """End an agent's link stream (it was replaced, or the agent is shut down)."""

    agent_id: str
    stream_id: str


@dataclass(frozen=True, slots=True)
class Allocate:
    """Run an allocation pass soon (coalesced with others): something changed that may make offers."""


Effect = SendToFramework | SendToAgent | CloseFrameworkStream | CloseAgentStream | Allocate
