"""pytest fixtures for tests that need a real cluster.

Enable with ``pytest_plugins = ["butte.testing.pytest_plugin"]`` in a ``conftest.py``. Then:

- ``cluster``: a started :class:`Cluster` with two agents (arguments from ``@pytest.mark.cluster(...)``,
  e.g. ``@pytest.mark.cluster(agents=1, master_flags={"offer_timeout": "5secs"})``), stopped afterwards.
- ``cluster_factory``: ``cluster_factory(agents=3, ...)`` returns an unstarted ``Cluster`` whose work dir is
  under the test's ``tmp_path``; use ``async with``. Any left running are stopped at teardown.

Both skip the test, with the reason, while the master or agent service is not part of the tree yet.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from butte.testing.cluster import Cluster

ClusterFactory = Callable[..., Cluster]

# The modules a cluster needs; absent while they are being written, never absent in a release.
SERVICE_MODULES = (
    "butte.master.service",
    "butte.agent.service",
    "butte.cli.master_cmd",
    "butte.cli.agent_cmd",
)


def missing_services() -> str | None:
    """Why a real cluster cannot start from this tree (a module is missing), or None if it can.

    It only looks for the modules, so a module that exists but fails to import still fails the test.
    """
    missing = [name for name in SERVICE_MODULES if _absent(name)]
    return f"not in this tree yet: {', '.join(missing)}" if missing else None


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def skip_without_services() -> None:
    """``pytest.skip`` with the reason if a real cluster cannot start from this tree."""
    reason = missing_services()
    if reason is not None:
        pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster(**kwargs): arguments for the `cluster` fixture's Cluster")


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[ClusterFactory]:
    """Make unstarted clusters with work dirs under ``tmp_path``; stops any left running."""
    skip_without_services()
    made: list[Cluster] = []

    def make(agents: int = 1, **kwargs: Any) -> Cluster:
        kwargs.setdefault("work_dir", tmp_path / f"cluster-{len(made)}")
        cluster = Cluster(agents, **kwargs)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop_now()


@pytest_asyncio.fixture
async def cluster(cluster_factory: ClusterFactory, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """A started two-agent cluster (override with ``@pytest.mark.cluster(...)``)."""
    marker = request.node.get_closest_marker("cluster")
    kwargs: dict[str, Any] = {"agents": 2, **(marker.kwargs if marker else {})}
    async with cluster_factory(**kwargs) as started:
        yield started
