"""The test kit: a real local cluster in one call, and polling helpers. Framework authors use it too."""

from butte.testing.cluster import AgentProcess, Cluster
from butte.testing.process import ProcessError
from butte.testing.sync import SyncCluster
from butte.testing.wait import WaitTimeout, states_of, until, until_task_state, until_task_states

__all__ = [
    "AgentProcess",
    "Cluster",
    "ProcessError",
    "SyncCluster",
    "WaitTimeout",
    "states_of",
    "until",
    "until_task_state",
    "until_task_states",
]
