"""Marathon's brain: desired state, instances and deployments in; Mesos calls, writes and events out.

Pure and single-owner: the shell (:mod:`.service`) calls one method at a time on the event loop with the time
passed in, and carries out the effects returned, in order. After every change :meth:`MarathonCore.progress`
recomputes, per app, what to launch and what to kill: apps in a running deployment step follow
:func:`.replace.next_moves`, every other app is kept at its ``instances`` by :func:`.replace.maintain`
(failed, lost and unreachable-inactive instances are replaced, with Marathon's launch backoff). Launch demand
is met from offers by :mod:`.launcher`.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import replace

from butte.core.errors import NotFound
from butte.frameworks.marathon import effects as fx
from butte.frameworks.marathon.backoff import LaunchDelays
from butte.frameworks.marathon.control import KillResult, LockedByDeployments, QueueEntry
from butte.frameworks.marathon.deployments import DeploymentBook, DeploymentRun, rollback_target
from butte.frameworks.marathon.health import should_kill
from butte.frameworks.marathon.healthbook import (
    HealthBook,
    failed_check_event,
    health_changed_event,
    health_check_changes,
    instance_health_changed_event,
    marathon_side_checks,
    unhealthy_kill_event,
)
from butte.frameworks.marathon.instance_events import status_events
from butte.frameworks.marathon.instances import FAILURE_STATES, InstanceBook, StatusChange, condition, failure_record
from butte.frameworks.marathon.launcher import MAX_INSTANCES_PER_OFFER, Launcher
from butte.frameworks.marathon.model import DeploymentPlan, HealthResult, Instance, RootGroup
from butte.frameworks.marathon.planner import plan as plan_deployment
from butte.frameworks.marathon.queue import LaunchQueue
from butte.frameworks.marathon.readinessbook import ReadinessBook, ReadinessResult
from butte.frameworks.marathon.replace import Moves, maintain, next_moves
from butte.frameworks.marathon.unreachable import unreachable_condition
from butte.wire.marathon import App, LastTaskFailure
from butte.wire.mesos import Offer, TaskStatus


class MarathonCore:
    """See the module docstring. Methods return the effects the shell must carry out."""

    def __init__(
        self,
        *,
        root: RootGroup,
        instances: Sequence[Instance] = (),
        deployments: Sequence[tuple[DeploymentPlan, int]] = (),
        rng: random.Random,
        max_instances_per_offer: int = MAX_INSTANCES_PER_OFFER,
    ) -> None:
        self.root = root
        self.book = InstanceBook(instances)
        self.deployments = DeploymentBook(DeploymentRun(plan, step) for plan, step in deployments)
        self.delays = LaunchDelays()
        self.queue = LaunchQueue()
        self.launcher = Launcher(rng, max_instances_per_offer=max_instances_per_offer)
        self.last_failures: dict[str, LastTaskFailure] = {}
        self._demand: dict[str, int] = {}
        self.health = HealthBook()
        self.readiness = ReadinessBook()
        self._suppressed = False
        self._launchable: frozenset[str] = frozenset()

    # --- desired state -----------------------------------------------------------------------------------
    def deploy(
        self, target: RootGroup, *, deployment_id: str, force: bool, restart: frozenset[str], now: float
    ) -> tuple[DeploymentPlan, list[fx.Effect]]:
        """Start the deployment from the current root to ``target``.

        Raises:
            LockedByDeployments: it touches an app a running deployment holds, without ``force``.
            ValidationError: the planner refused the target (a dependency cycle).
        """
        plan = plan_deployment(self.root, target, deployment_id=deployment_id, version=target.version, restart=restart)
        effects: list[fx.Effect] = []
        holders = self.deployments.holding(plan.affected_apps)
        if holders and not force:
            raise LockedByDeployments(holders)
        for holder in holders:
            effects += self._end_deployment(holder, success=False)
        for app_id in plan.affected_apps:
            self.delays.reset(app_id)
        self.root = target
        self.deployments.add(plan)
        effects += [
            fx.SaveRoot(target),
            fx.SaveDeployment(plan, 1),
            fx.Publish("group_change_success", {"groupId": "/", "version": target.version}),
        ]
        effects += [fx.Publish("deployment_info", {"plan": plan, "currentStep": 1})]
        effects += health_check_changes(plan.original, target)
        return plan, effects + self.progress(now, revive=True)

    def cancel_deployment(
        self, deployment_id: str, *, force: bool, rollback_id: str, version: str, now: float
    ) -> tuple[DeploymentPlan | None, list[fx.Effect]]:
        """Stop a deployment where it is (``force``), or roll it back with a new deployment.

        Raises:
            NotFound: no such running deployment.
        """
        run = self.deployments.get(deployment_id)
        if run is None:
            raise NotFound(f"DeploymentPlan {deployment_id} does not exist")
        effects = self._end_deployment(deployment_id, success=False)
        if force:
            return None, effects + self.progress(now)
        target = replace(rollback_target(self.root, run.plan), version=version)
        plan, more = self.deploy(target, deployment_id=rollback_id, force=True, restart=frozenset(), now=now)
        return plan, effects + more

    def reset_delay(self, app_id: str, now: float) -> list[fx.Effect]:
        """``DELETE /v2/queue/{app}/delay``.

        Raises:
            NotFound: the app has nothing queued.
        """
        if self.queue.get(app_id) is None:
            raise NotFound(f"Application {app_id} not found in tasks queue.")
        self.delays.reset(app_id)
        return self.progress(now, revive=True)

    # --- Mesos events ------------------------------------------------------------------------------------
    def on_subscribed(self) -> list[fx.Effect]:
        """Reconcile every task we know, then ask about the ones we do not (implicit reconciliation)."""
        known = tuple((instance.task_id, instance.agent_id or None) for instance in self.book)
        self._suppressed = False
        return [fx.Revive(), fx.ReconcileTasks(known), fx.ReconcileTasks(())]

    def on_offers(self, offers: Sequence[Offer], now: float) -> list[fx.Effect]:
        apps = {app_id: self._app(app_id) for app_id, count in self._demand.items() if count > 0}
        launchable = {
            app_id: count
            for app_id, count in self._demand.items()
            if count > 0 and apps[app_id] is not None and self.delays.may_launch(app_id, now)
        }
        result = self.launcher.launch(
            offers,
            {app_id: (app, launchable[app_id]) for app_id, app in apps.items() if app and app_id in launchable},
            self.book,
            self.queue,
            now,
        )
        for instance in result.launched:
            self.book.put(instance)
            self._demand[instance.app_id] -= 1
        return result.effects

    def on_status(self, status: TaskStatus, now: float) -> list[fx.Effect]:
        task_id, state = status.task_id.value, status.state
        change = self.book.apply_status(task_id, state, healthy=status.healthy, message=status.message, now=now)
        if change is None:
            return self._on_unknown_task(status)
        effects = self._status_effects(change, status, now)
        return effects + self.progress(now, only=(change.before.app_id,))

    def on_health(self, task_id: str, check_index: int, result: HealthResult, now: float) -> list[fx.Effect]:
        """A Marathon-side probe's verdict; kills the instance once the check says so."""
        instance = self.book.get(task_id)
        app = self._app(instance.app_id) if instance else None
        if instance is None or app is None:
            return [fx.UnwatchHealth(task_id)]
        updated = replace(instance, health=self.health.record(task_id, check_index, result))
        self.book.put(updated)
        effects: list[fx.Effect] = [fx.SaveInstances((updated,))]
        if instance.healthy != updated.healthy:
            healthy = bool(updated.healthy)
            effects += [health_changed_event(app, instance, healthy), instance_health_changed_event(updated, healthy)]
        checks = marathon_side_checks(app)
        if not result.alive and check_index < len(checks):
            effects.append(failed_check_event(app, instance, checks[check_index]))
        # Marathon never kills an unreachable instance for its checks: the probe cannot reach it either.
        killable = not instance.killing and instance.unreachable_since is None
        if killable and check_index < len(checks) and should_kill(result, checks[check_index]):
            self.delays.on_failure(app.id, app, now)
            effects += [unhealthy_kill_event(app, instance, result), *self._kill(updated, app)]
        return effects + self.progress(now, only=(app.id,))

    def on_readiness(self, task_id: str, result: ReadinessResult, now: float) -> list[fx.Effect]:
        """A readiness probe's verdict: the instance's ``ready`` gates its deployment step (A6)."""
        instance = self.book.get(task_id)
        if instance is None or not self.readiness.record(result):
            return [fx.UnwatchReadiness(task_id)]
        if instance.ready == result.ready:
            return []
        updated = replace(instance, ready=result.ready)
        self.book.put(updated)
        return [fx.SaveInstances((updated,)), *self.progress(now, only=(instance.app_id,))]

    def tick(self, now: float) -> list[fx.Effect]:
        """Timers: unreachable instances becoming inactive or expunged, backoffs running out."""
        effects: list[fx.Effect] = []
        for instance in self.book:
            app = self._app(instance.app_id)
            if instance.unreachable_since is None or app is None:
                continue
            if unreachable_condition(instance, app, now) == "Expunge":
                effects += self._expunge(instance)
        return effects + self.progress(now)

    # --- API changes to instances ------------------------------------------------------------------------
    def kill(self, task_ids: Sequence[str], *, wipe: bool, now: float) -> tuple[KillResult, list[fx.Effect]]:
        """Kill instances (without ``scale``: Marathon replaces them).

        Raises:
            NotFound: an id is not a known instance.
        """
        instances = [self._require_instance(task_id) for task_id in task_ids]
        effects: list[fx.Effect] = []
        for instance in instances:
            app = self._app(instance.app_id)
            effects += self._expunge(instance) if wipe else self._kill(instance, app)
        return KillResult(killed=tuple(instances)), effects + self.progress(now)

    def kill_marked(self, task_ids: Sequence[str]) -> list[fx.Effect]:
        """Kill instances a scale-down deployment is about to account for (no replacement)."""
        effects: list[fx.Effect] = []
        for task_id in task_ids:
            instance = self._require_instance(task_id)
            effects += self._kill(instance, self._app(instance.app_id))
        return effects

    # --- reads ---------------------------------------------------------------------------------------------
    def queue_entries(self, now: float) -> list[QueueEntry]:
        entries = []
        for app_id in self.queue.app_ids():
            waiting, app = self.queue.get(app_id), self._app(app_id)
            if waiting is None or app is None:
                continue
            entries.append(
                QueueEntry(
                    app=app,
                    count=self._demand.get(app_id, 0),
                    delay_left_s=self.delays.delay_left_s(app_id, now),
                    since=waiting.since,
                    processed_offers=waiting.processed,
                    unused_offers=waiting.unused,
                    rejection_counts=tuple(sorted(waiting.reasons.items())),
                    last_unused_offers=tuple(waiting.last_unused),
                )
            )
        return entries

    def health_results(self, task_id: str) -> list[HealthResult]:
        """Each check's result (Marathon-side), else the agent's verdict, else nothing."""
        found = self.health.results(task_id)
        if found is not None:
            return found
        instance = self.book.get(task_id)
        return [instance.health] if instance is not None and instance.health is not None else []

    # --- progress ------------------------------------------------------------------------------------------
    def progress(self, now: float, *, revive: bool = False, only: Collection[str] | None = None) -> list[fx.Effect]:
        """Advance deployments and recompute launches and kills of every app, or of the apps in ``only``
        (and the deployments holding them): a status update concerns one app, and recomputing a thousand
        apps for each of a deployment's thousands of updates would be the framework's whole cost.
        ``revive``: definitions changed."""
        effects: list[fx.Effect] = []
        moves: dict[str, Moves] = {}
        released: set[str] = set()
        for run in self._runs_holding(only):
            effects += self._advance(run, moves)
            if run.finished:
                released.update(run.plan.affected_apps)
        locked = self.deployments.locked_apps()
        apps = set(self.root.apps) | set(self.book.app_ids()) if only is None else set(only) | released
        for app_id in sorted(apps - locked.keys()):
            moves[app_id] = self._maintenance(app_id, now)
        for app_id, move in moves.items():
            for task_id in move.kill:
                instance = self.book.get(task_id)
                if instance is not None and not instance.killing:
                    effects += self._kill(instance, self._app(app_id))
        demand = {app_id: move.launch for app_id, move in moves.items()}
        return effects + self._set_demand(demand, now, revive=revive, partial=only is not None)

    def _runs_holding(self, only: Collection[str] | None) -> list[DeploymentRun]:
        if only is None:
            return list(self.deployments)
        ids = {deployment_id for app_id in only for deployment_id in self.deployments.of_app(app_id)}
        return [run for run in self.deployments if run.plan.id in ids]

    def _maintenance(self, app_id: str, now: float) -> Moves:
        """An app outside deployments keeps its ``instances``; one no longer in the root loses them all."""
        app = self.root.apps.get(app_id)
        instances = self.book.of_app(app_id)
        if app is None:
            return Moves(launch=0, kill=tuple(i.task_id for i in instances), done=False)
        return maintain(app, instances, inactive=self._inactive(app, now))

    def _advance(self, run: DeploymentRun, moves: dict[str, Moves]) -> list[fx.Effect]:
        effects: list[fx.Effect] = []
        while (step := run.step()) is not None:
            effects += self.readiness.watch_step(step, run.app_for, self.book.of_app)
            step_moves = {
                action.app_id: next_moves(action.kind, run.app_for(action), self.book.of_app(action.app_id))
                for action in step.actions
            }
            if not all(move.done for move in step_moves.values()):
                moves.update(step_moves)
                return effects
            effects.append(fx.Publish("deployment_step_success", {"plan": run.plan, "currentStep": step}))
            effects += [
                fx.Publish("app_terminated_event", {"appId": a.app_id})
                for a in step.actions
                if a.kind == "StopApplication"
            ]
            run.current_step += 1
            if run.step() is not None:
                effects.append(fx.SaveDeployment(run.plan, run.current_step))
        return effects + self._end_deployment(run.plan.id, success=True)

    def _end_deployment(self, deployment_id: str, *, success: bool) -> list[fx.Effect]:
        run = self.deployments.remove(deployment_id)
        if run is None:
            return []
        kind = "deployment_success" if success else "deployment_failed"
        effects = self.readiness.end_apps(run.plan.affected_apps)
        return [*effects, fx.DeleteDeployment(deployment_id), fx.Publish(kind, {"id": deployment_id, "plan": run.plan})]

    def _set_demand(self, demand: dict[str, int], now: float, *, revive: bool, partial: bool) -> list[fx.Effect]:
        # Offers nobody wanted were declined for minutes: ask for them again whenever an app may launch more
        # than before (more demand, a new definition, a backoff that ran out), as Marathon revives.
        grew = any(count > self._demand.get(app_id, 0) for app_id, count in demand.items())
        merged = {**self._demand, **demand} if partial else demand
        self._demand = {app_id: count for app_id, count in merged.items() if count > 0}
        self.queue.update(self._demand, now)
        launchable = frozenset(app_id for app_id in self._demand if self.delays.may_launch(app_id, now))
        newly_launchable = bool(launchable - self._launchable)
        self._launchable = launchable
        if launchable and (grew or revive or newly_launchable or self._suppressed):
            self._suppressed = False
            return [fx.Revive()]
        if not self._demand and not self._suppressed:
            self._suppressed = True
            return [fx.Suppress()]
        return []

    # --- helpers -------------------------------------------------------------------------------------------
    def _status_effects(self, change: StatusChange, status: TaskStatus, now: float) -> list[fx.Effect]:
        instance = change.after or change.before
        app = self._app(instance.app_id)
        effects: list[fx.Effect] = status_events(change.before, instance, change.state, status.message)
        if change.after is None:
            effects += [fx.DeleteInstance(instance.task_id), fx.UnwatchHealth(instance.task_id)]
            effects += self.readiness.forget(instance.task_id)
            self.health.forget(instance.task_id)
            if change.counts_as_failure and app is not None:
                self.delays.on_failure(app.id, app, now)
            if change.state in FAILURE_STATES:
                self.last_failures[instance.app_id] = failure_record(instance, change.state, status.message, now)
            return effects
        effects.append(fx.SaveInstances((change.after,)))
        if change.state == "TASK_RUNNING" and app is not None:
            effects += self.health.watch(change.after, app)
        return effects

    def _on_unknown_task(self, status: TaskStatus) -> list[fx.Effect]:
        # A task we do not know (expunged while unreachable, or launched before a crash lost its record)
        # must not run next to its replacement: kill it, as Marathon kills unknown instances.
        if status.state in FAILURE_STATES | {"TASK_FINISHED", "TASK_KILLED"}:
            return []
        agent_id = status.agent_id.value if status.agent_id else None
        return [
            fx.KillTask(status.task_id.value, agent_id),
            fx.Publish(
                "unknown_instance_terminated_event",
                {"instanceId": status.task_id.value, "runSpecId": "", "condition": condition(status.state)},
            ),
        ]

    def _kill(self, instance: Instance, app: App | None) -> list[fx.Effect]:
        killing = replace(instance, killing=True)
        self.book.put(killing)
        grace = app.task_kill_grace_period_seconds if app is not None else None
        return [fx.SaveInstances((killing,)), fx.KillTask(instance.task_id, instance.agent_id, grace)]

    def _expunge(self, instance: Instance) -> list[fx.Effect]:
        self.book.remove(instance.task_id)
        self.health.forget(instance.task_id)
        unwatch = [fx.UnwatchHealth(instance.task_id), *self.readiness.forget(instance.task_id)]
        return [fx.DeleteInstance(instance.task_id), *unwatch, fx.KillTask(instance.task_id, instance.agent_id)]

    def _inactive(self, app: App, now: float) -> frozenset[str]:
        return frozenset(
            i.task_id
            for i in self.book.of_app(app.id)
            if i.unreachable_since is not None and unreachable_condition(i, app, now) != "Unreachable"
        )

    def _app(self, app_id: str) -> App | None:
        app = self.root.apps.get(app_id)
        if app is not None:
            return app
        for run in self.deployments:
            if app_id in run.plan.original.apps:
                return run.plan.original.apps[app_id]
        return None

    def _require_instance(self, task_id: str) -> Instance:
        instance = self.book.get(task_id)
        if instance is None:
            raise NotFound(f"Task '{task_id}' does not exist")
        return instance
