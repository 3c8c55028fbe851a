"""A leader paused past its ZooKeeper session timeout must not act as leader when it resumes (no split brain).

SIGSTOP stands in for a long GC pause or a partition from ZooKeeper: the ensemble expires the session, a
standby takes over, and when the old leader runs again it answers 307 and its framework and agent streams
are gone; agents stay with the new leader.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from butte.testing.wait import until
from butte.testing.zookeeper import HaCluster, unavailable_reason

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]

SUBSCRIBE = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "root", "name": "zk-pause"}}}


async def test_a_paused_leader_steps_down_when_it_resumes(tmp_path: Path) -> None:
    async with HaCluster(tmp_path, masters=2, agents=1, zk_session_timeout="2secs") as ha:
        old = await ha.wait_for_leader()
        old_pid = f"master@127.0.0.1:{old.port}"
        async with aiohttp.ClientSession() as session:
            # A framework subscribed to the old leader: its stream must end when the leader steps down.
            stream = await session.post(f"{old.url}/api/v1/scheduler", json=SUBSCRIBE)
            assert stream.status == 200

            old.send_signal(signal.SIGSTOP)
            try:
                new = await ha.wait_for_leader(other_than=old, timeout_s=15)
                await ha.wait_for_agents(timeout_s=15)
            finally:
                old.send_signal(signal.SIGCONT)

            async def stepped_down() -> bool:
                state = await ha.state_of(old)
                return bool(state["leader"]) and state["leader"] != old_pid

            await until(stepped_down, timeout=10, what="the resumed master to name the new leader")
            async with asyncio.timeout(5):  # the old leader ended the stream: the body is complete
                await stream.read()
            stream.close()
            async with session.post(f"{old.url}/api/v1/scheduler", json=SUBSCRIBE, allow_redirects=False) as r:
                assert (r.status, r.headers["Location"]) == (307, f"//127.0.0.1:{new.port}/api/v1/scheduler")
            assert (await ha.leader()) is new
            state = await ha.state_of(new)
            assert [s["active"] for s in state["slaves"]] == [True]  # the agent stayed with the new leader
