"""The agent's connection to the master (DESIGN.md §7): one event stream in, calls out.

``POST /api/v1/agent`` with REGISTER (or REREGISTER once the agent has an id) opens a RecordIO stream of
:class:`AgentEvent`; its ``Mesos-Stream-Id`` goes on every later call. When the stream ends, fails, or stays
silent for 5 ping intervals, the link backs off (random in [0, factor], the factor doubling up to 1 min, as
Mesos's agent does) and registers again. All calls share one keep-alive ``ClientSession``. With
``--master zk://...`` it follows the leader elected in ZooKeeper and ignores events of an older epoch.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Protocol, final

import aiohttp

from butte.agent.call_sender import CallSender, ResponseError
from butte.core.errors import ValidationError
from butte.scheduler.detector import detector_for, normalize_address
from butte.wire.agent_link import AgentCall, AgentEvent, Registered
from butte.wire.base import decode, encode
from butte.wire.recordio import RecordIODecoder, RecordIOError

log = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
AGENT_API_PATH = "/api/v1/agent"
MAX_BACKOFF_S = 60.0
# Mesos masters ping every 15 s; until REGISTERED says otherwise, assume that.
DEFAULT_PING_INTERVAL_S = 15.0
MISSED_PINGS = 5


class LinkListener(Protocol):
    """What the link needs from the agent."""

    def registration_call(self) -> AgentCall: ...

    def on_registered(self, registered: Registered) -> None: ...

    def on_event(self, event: AgentEvent) -> None: ...

    def on_disconnected(self) -> None: ...


class MasterRefused(Exception):
    """The master answered the registration with an error status."""


class DeposedLeader(Exception):
    """The master sent an event of an older epoch than one already seen: it no longer leads."""


@final
class MasterLink:
    """Keeps the agent registered and relays events; sends calls on the current stream."""

    def __init__(
        self,
        master: str,
        session: aiohttp.ClientSession,
        listener: LinkListener,
        *,
        backoff_factor_s: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        # host:port, or zk://... to follow the leader elected in ZooKeeper (Mesos's --master forms).
        self._detector = detector_for(master)
        self.address = ""
        self.url = ""
        self._calls: CallSender | None = None
        if not master.startswith(("zk://", "zoo://", "file://")):
            self._point_at(normalize_address(master))
        self._highest_epoch = -1  # events from a leader older than one we have seen are a deposed leader's
        self._session = session
        self._listener = listener
        self._backoff_factor_s = backoff_factor_s
        self._rng = rng or random.Random()
        self.stream_id: str | None = None
        self._silence_timeout_s = DEFAULT_PING_INTERVAL_S * MISSED_PINGS

    def _point_at(self, address: str) -> None:
        if address == self.address:
            return
        if self._calls is not None:
            self._calls.close()
        self.address = address
        self.url = f"http://{address}{AGENT_API_PATH}"
        host, _, port = address.rpartition(":")
        self._calls = CallSender(host, int(port), AGENT_API_PATH)

    async def run(self) -> None:
        """Stay connected until cancelled."""
        backoff_s = self._backoff_factor_s
        while True:
            registered = await self._follow_leader()
            if registered:
                backoff_s = self._backoff_factor_s
            delay_s = self._rng.uniform(0, backoff_s)
            backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
            log.info("Reconnecting to the master at %s in %.2f s", self.url, delay_s)
            if await self._leader_changed_within(delay_s):
                backoff_s = self._backoff_factor_s  # a new leader: register with it at once, as Mesos agents do

    async def _follow_leader(self) -> bool:
        """Register with the detected leader; drop the stream as soon as another master is detected."""
        self._point_at(await self._detector.leader())
        reading = asyncio.ensure_future(self._connect_once())
        watching = asyncio.ensure_future(self._detector.next_leader(self.address))
        try:
            await asyncio.wait({reading, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            if not reading.done():
                log.info("A new leading master was detected; leaving %s", self.address)
                reading.cancel()
            registered = await asyncio.gather(reading, return_exceptions=True)
        return registered[0] is True

    async def _leader_changed_within(self, delay_s: float) -> bool:
        try:
            async with asyncio.timeout(delay_s):
                await self._detector.next_leader(self.address)
        except TimeoutError:
            return False
        return True

    async def send(self, call: AgentCall) -> bool:
        """POST a call on the current stream; False when there is none or the master did not take it."""
        if self.stream_id is None or self._calls is None:
            return False
        headers = {"Content-Type": "application/json", "Mesos-Stream-Id": self.stream_id}
        try:
            status = await self._calls.post(encode(call), headers)
        except (OSError, TimeoutError, ResponseError) as exc:
            log.debug("Failed to send %s call: %s", call.type, exc)
            self._calls.close()
            return False
        if status >= 300:
            log.warning("Master refused %s call: %d", call.type, status)
        return status < 300

    def close(self) -> None:
        """Close the connection used for calls."""
        if self._calls is not None:
            self._calls.close()

    async def _connect_once(self) -> bool:
        """One registration and its stream; True if the master registered us."""
        registered = False
        call = self._listener.registration_call()
        try:
            async with self._session.post(
                self.url,
                data=encode(call),
                headers=JSON_HEADERS,
                timeout=aiohttp.ClientTimeout(total=None),
                allow_redirects=False,  # a standby's 307 may name a leader that is gone: ask the detector again
            ) as response:
                if response.status != 200:
                    text = (await response.text())[:200]
                    raise MasterRefused(f"{response.status}: {text}")
                self.stream_id = response.headers.get("Mesos-Stream-Id")
                registered = await self._read_events(response)
        except (aiohttp.ClientError, OSError, RecordIOError, MasterRefused, DeposedLeader, TimeoutError) as exc:
            log.info("Connection to the master at %s failed: %s", self.url, exc)
        finally:
            if self.stream_id is not None or registered:
                self.stream_id = None
                self._listener.on_disconnected()
        return registered

    async def _read_events(self, response: aiohttp.ClientResponse) -> bool:
        decoder = RecordIODecoder()
        registered = False
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._silence_timeout_s) as silence:
                while chunk := await response.content.readany():
                    for record in decoder.feed(chunk):
                        registered = self._dispatch_record(record) or registered
                    silence.reschedule(loop.time() + self._silence_timeout_s)
        except TimeoutError:
            log.warning("No event from the master for %.0f s; reconnecting", self._silence_timeout_s)
            return registered
        log.info("The master closed the event stream")
        return registered

    def _dispatch_record(self, record: bytes) -> bool:
        try:
            event = decode(record, AgentEvent)
        except ValidationError as exc:
            log.warning("Ignoring an event that does not parse: %s", exc)
            return False
        return self._dispatch(event)

    def _dispatch(self, event: AgentEvent) -> bool:
        if event.epoch is not None:
            if event.epoch < self._highest_epoch:
                raise DeposedLeader(f"event of epoch {event.epoch} after epoch {self._highest_epoch}")
            self._highest_epoch = event.epoch
        if event.type in ("REGISTERED", "REREGISTERED") and event.registered is not None:
            interval_s = event.registered.ping_interval_seconds or DEFAULT_PING_INTERVAL_S
            self._silence_timeout_s = interval_s * MISSED_PINGS
            self._listener.on_registered(event.registered)
            return True
        self._listener.on_event(event)
        return False
