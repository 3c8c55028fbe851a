"""Running deployments: their progress, the apps they lock, and the rollback of one.

Pure. A deployment holds every app its plan touches until it finishes or is cancelled (Marathon: "App is
locked by one or more deployments"); only one deployment may touch an app at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import final

from butte.frameworks.marathon.control import DeploymentStatus
from butte.frameworks.marathon.model import Action, DeploymentPlan, RootGroup, Step
from butte.wire.marathon import App


@final
@dataclass(slots=True)
class DeploymentRun:
    """One deployment in progress; ``current_step`` is 1-based and passes ``len(steps)`` when it is done."""

    plan: DeploymentPlan
    current_step: int = 1

    @property
    def finished(self) -> bool:
        return self.current_step > len(self.plan.steps)

    def step(self) -> Step | None:
        return None if self.finished else self.plan.steps[self.current_step - 1]

    def app_for(self, action: Action) -> App:
        """The definition an action works towards: the target's, or the original's for a stop."""
        if action.kind == "StopApplication":
            return self.plan.original.apps[action.app_id]
        return self.plan.target.apps[action.app_id]

    def status(self) -> DeploymentStatus:
        return DeploymentStatus(plan=self.plan, current_step=min(self.current_step, len(self.plan.steps)))


@final
class DeploymentBook:
    """The deployments still running, oldest first."""

    def __init__(self, runs: Iterable[DeploymentRun] = ()) -> None:
        self._runs: dict[str, DeploymentRun] = {run.plan.id: run for run in runs}

    def __iter__(self) -> Iterator[DeploymentRun]:
        return iter(list(self._runs.values()))

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, deployment_id: str) -> DeploymentRun | None:
        return self._runs.get(deployment_id)

    def add(self, plan: DeploymentPlan) -> DeploymentRun:
        run = DeploymentRun(plan)
        self._runs[plan.id] = run
        return run

    def remove(self, deployment_id: str) -> DeploymentRun | None:
        return self._runs.pop(deployment_id, None)

    def holding(self, app_ids: Iterable[str]) -> list[str]:
        """Ids of the deployments that lock any of ``app_ids``."""
        wanted = set(app_ids)
        return [run.plan.id for run in self._runs.values() if wanted & set(run.plan.affected_apps)]

    def locked_apps(self) -> dict[str, str]:
        """App id -> the deployment that holds it."""
        return {app_id: run.plan.id for run in self._runs.values() for app_id in run.plan.affected_apps}

    def of_app(self, app_id: str) -> list[str]:
        return self.holding([app_id])

    def statuses(self) -> list[DeploymentStatus]:
        return [run.status() for run in self._runs.values()]


def rollback_target(current: RootGroup, plan: DeploymentPlan) -> RootGroup:
    """``current`` with every app the plan touched put back as it was before the plan (Marathon's rollback
    of ``DELETE /v2/deployments/{id}``): restored if it existed, removed if the plan created it."""
    apps = dict(current.apps)
    for app_id in plan.affected_apps:
        original = plan.original.apps.get(app_id)
        if original is None:
            apps.pop(app_id, None)
        else:
            apps[app_id] = original
    groups = dict(current.groups)
    for group_id, meta in plan.original.groups.items():
        groups.setdefault(group_id, meta)
    return replace(current, apps=apps, groups=groups)
