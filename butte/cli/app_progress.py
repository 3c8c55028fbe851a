"""What ``butte app`` shows: tolerant views of Marathon's JSON and the pure functions that format them.

The views read only the keys the CLI prints and ignore the rest, so any Marathon-compatible server works
(Marathon 1.x adds keys release by release; see the reference's §A7 on clients that broke on them). Nothing
here does I/O: the commands in :mod:`butte.cli.app_cmd` fetch, decode into these views and print the strings
these functions return.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import msgspec


class View(msgspec.Struct, rename="camel", kw_only=True):
    """Base of the read-only views: camelCase keys, unknown keys ignored."""


class DeploymentRef(View):
    id: str


class FailureView(View):
    """``lastTaskFailure`` of an app."""

    message: str = ""
    state: str = ""
    host: str = ""
    timestamp: str = ""


class HealthCheckView(View):
    protocol: str = "HTTP"


class PortDefinitionView(View):
    port: int = 0


class DockerView(View):
    image: str = ""


class ContainerView(View):
    docker: DockerView | None = None


class AppView(View):
    """An AppInfo from ``/v2/apps``: the definition plus counts (Marathon always embeds counts)."""

    id: str
    cmd: str | None = None
    args: list[str] | None = None
    container: ContainerView | None = None
    instances: int = 1
    cpus: float = 1.0
    mem: float = 128.0
    disk: float = 0.0
    gpus: int = 0
    role: str | None = None
    accepted_resource_roles: list[str] | None = None
    constraints: list[list[str]] = []
    port_definitions: list[PortDefinitionView] = []
    health_checks: list[HealthCheckView] = []
    version: str | None = None
    tasks_staged: int = 0
    tasks_running: int = 0
    tasks_healthy: int = 0
    tasks_unhealthy: int = 0
    deployments: list[DeploymentRef] = []
    last_task_failure: FailureView | None = None


class HealthResultView(View):
    alive: bool = False


class TaskView(View):
    id: str
    host: str = ""
    ports: list[int] = []
    state: str = ""
    health_check_results: list[HealthResultView] = []


class ActionView(View):
    action: str
    app: str | None = None


class StepView(View):
    actions: list[ActionView] = []


class DeploymentView(View):
    """An item of ``GET /v2/deployments``; ``currentStep`` is 1-based."""

    id: str
    version: str = ""
    affected_apps: list[str] = []
    steps: list[StepView] = []
    current_actions: list[ActionView] = []
    current_step: int = 0
    total_steps: int = 0


class DelayView(View):
    time_left_seconds: float = 0.0
    overdue: bool = False


class OfferView(View):
    id: str = ""
    agent_id: str = ""
    hostname: str = ""


class UnusedOfferView(View):
    """An offer Marathon could not use for a queued app, with its ``NoOfferMatchReason`` names."""

    offer: OfferView = msgspec.field(default_factory=OfferView)
    reason: list[str] = []


class RejectCountView(View):
    reason: str
    declined: int = 0
    processed: int = 0


class OffersSummaryView(View):
    processed_offers_count: int = 0
    unused_offers_count: int = 0
    reject_summary_last_offers: list[RejectCountView] = []


class QueueItemView(View):
    """An item of ``GET /v2/queue?embed=lastUnusedOffers`` (pods have ``pod`` instead of ``app``)."""

    app: AppView | None = None
    count: int = 0
    delay: DelayView = msgspec.field(default_factory=DelayView)
    processed_offers_summary: OffersSummaryView | None = None
    last_unused_offers: list[UnusedOfferView] = []


class ErrorDetailView(View):
    path: str = ""
    errors: list[str] = []


class ErrorView(View):
    """Marathon's error body: ``message`` and, for 400/422, ``details`` by JSON path."""

    message: str = ""
    details: list[ErrorDetailView] = []


class AppsBody(View):
    apps: list[AppView]


class AppBody(View):
    app: AppView


class RawAppBody(View):
    app: msgspec.Raw


class TasksBody(View):
    tasks: list[TaskView]


class QueueBody(View):
    queue: list[QueueItemView]


class ChangeBody(View):
    """What a change answers: ``{deploymentId, version}``, or an AppInfo with ``deployments`` (POST)."""

    deployment_id: str | None = None
    deployments: list[DeploymentRef] = []


# --- tables and summaries ------------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, the last column not padded."""
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def format_number(value: float) -> str:
    """``0.5``, ``128``: no trailing ``.0`` on whole numbers."""
    return f"{value:g}"


def short_id(deployment_id: str) -> str:
    """The first block of a deployment UUID, enough to tell deployments apart on a terminal."""
    return deployment_id.split("-", 1)[0]


def format_apps(apps: Sequence[AppView]) -> str:
    """The ``butte app list`` table."""
    rows = [
        [
            app.id,
            f"{app.tasks_running}/{app.instances}",
            format_number(app.cpus),
            format_number(app.mem),
            ",".join(short_id(d.id) for d in app.deployments) or "-",
        ]
        for app in sorted(apps, key=lambda a: a.id)
    ]
    return format_table(["ID", "INSTANCES", "CPUS", "MEM", "DEPLOYING"], rows)


def task_health(task: TaskView, checked: bool) -> str:
    """``healthy``/``unhealthy`` from the task's results; ``pending`` before the first; ``-`` when unchecked."""
    if not task.health_check_results:
        return "pending" if checked else "-"
    return "healthy" if all(r.alive for r in task.health_check_results) else "unhealthy"


def format_tasks(tasks: Sequence[TaskView], checked: bool) -> str:
    """The ``butte app tasks`` table; ``checked`` tells whether the app has health checks."""
    rows = [
        [
            task.id,
            task.host or "-",
            ",".join(map(str, task.ports)) or "-",
            task.state or "-",
            task_health(task, checked),
        ]
        for task in sorted(tasks, key=lambda t: t.id)
    ]
    return format_table(["TASK ID", "HOST", "PORTS", "STATE", "HEALTH"], rows)


def format_counts(app: AppView) -> str:
    """``3/5 running, 2 healthy``: healthy only when the app has checks (Marathon reports 0 without them)."""
    parts = [f"{app.tasks_running}/{app.instances} running"]
    if app.health_checks:
        parts.append(f"{app.tasks_healthy} healthy")
        if app.tasks_unhealthy:
            parts.append(f"{app.tasks_unhealthy} unhealthy")
    if app.tasks_staged:
        parts.append(f"{app.tasks_staged} staged")
    return ", ".join(parts)


def describe_command(app: AppView) -> tuple[str, str]:
    """The row naming what the app runs: its image, its command or its argv."""
    if app.container is not None and app.container.docker is not None and app.container.docker.image:
        return "IMAGE", app.container.docker.image
    if app.cmd:
        return "COMMAND", app.cmd
    if app.args:
        return "ARGS", " ".join(app.args)
    return "COMMAND", "-"


def format_failure(failure: FailureView) -> str:
    """``TASK_FAILED on agent-1 at <ts>: <message>``."""
    where = f" on {failure.host}" if failure.host else ""
    when = f" at {failure.timestamp}" if failure.timestamp else ""
    return f"{failure.state or 'failed'}{where}{when}: {failure.message or '(no message)'}"


def format_app(app: AppView) -> str:
    """The ``butte app show`` summary: one labelled row per aspect."""
    checks = ", ".join(c.protocol for c in app.health_checks)
    rows = [
        ["ID", app.id],
        ["VERSION", app.version or "-"],
        list(describe_command(app)),
        ["INSTANCES", format_counts(app)],
        [
            "RESOURCES",
            f"{format_number(app.cpus)} CPUs, {format_number(app.mem)} MB mem, {format_number(app.disk)} MB disk",
        ],
        ["HEALTH", f"{len(app.health_checks)} checks ({checks})" if checks else "no health checks"],
        ["DEPLOYMENTS", ", ".join(d.id for d in app.deployments) or "none"],
    ]
    if app.constraints:
        rows.append(["CONSTRAINTS", "; ".join(" ".join(c) for c in app.constraints)])
    if app.last_task_failure is not None:
        rows.append(["LAST FAILURE", format_failure(app.last_task_failure)])
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)


def format_error(status: int, error: ErrorView) -> str:
    """Marathon's message, then one line per invalid path (``/mem: must be positive``)."""
    lines = [f"Marathon answered {status}: {error.message or '(no message)'}"]
    lines += [f"  {d.path or '/'}: {'; '.join(d.errors)}" for d in error.details]
    return "\n".join(lines)


# --- deployment progress -------------------------------------------------------------------------------------


def format_actions(deployment: DeploymentView) -> str:
    """``RestartApplication /web``: the current step's actions (from ``steps`` if the server lists none)."""
    actions = deployment.current_actions
    if not actions and 0 < deployment.current_step <= len(deployment.steps):
        actions = deployment.steps[deployment.current_step - 1].actions
    return ", ".join(f"{a.action} {a.app}" if a.app else a.action for a in actions)


def progress_line(deployment: DeploymentView, app: AppView | None) -> str:
    """``deployment 5ed4c0c5: step 1/1 RestartApplication /web — 3/5 running, 2 healthy``.

    ``app`` is None once the app is gone (a removal: Marathon drops it from the target group at once).
    """
    total = deployment.total_steps or len(deployment.steps)
    line = f"deployment {short_id(deployment.id)}: step {deployment.current_step}/{total}"
    actions = format_actions(deployment)
    if actions:
        line += f" {actions}"
    if app is not None:
        line += f" — {format_counts(app)}"
    return line


# --- why a deployment does not finish ------------------------------------------------------------------------


def reason_need(reason: str, app: AppView) -> str:
    """What the app asks for that the offers lacked, for the reasons that name a resource."""
    needs = {
        "InsufficientMemory": f"needs {format_number(app.mem)} MB",
        "InsufficientCpus": f"needs {format_number(app.cpus)} CPUs",
        "InsufficientDisk": f"needs {format_number(app.disk)} MB disk",
        "InsufficientGpus": f"needs {app.gpus} GPUs",
        "InsufficientPorts": f"needs {len(app.port_definitions)} ports",
        "UnfulfilledRole": f"accepts roles {','.join(app.accepted_resource_roles or [app.role or '*'])}",
        "UnfulfilledConstraint": "constraints " + "; ".join(" ".join(c) for c in app.constraints),
    }
    return needs.get(reason, "")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def offer_reasons(item: QueueItemView, app: AppView) -> str | None:
    """``no offer fits: InsufficientMemory on 2 agents (needs 4096 MB)``, from the last unused offers.

    Each reason counts the distinct agents whose last offer had it. Without ``lastUnusedOffers`` (servers
    that do not embed them) the reject summary's declined counts are used instead.
    """
    agents: dict[str, set[str]] = {}
    for unused in item.last_unused_offers:
        agent = unused.offer.agent_id or unused.offer.hostname or unused.offer.id
        for reason in unused.reason:
            agents.setdefault(reason, set()).add(agent)
    counts = Counter({reason: len(names) for reason, names in agents.items()})
    noun = "agent"
    if not counts and item.processed_offers_summary is not None:
        counts = Counter({r.reason: r.declined for r in item.processed_offers_summary.reject_summary_last_offers})
        noun = "offer"
    clauses = []
    for reason, count in sorted(counts.items(), key=lambda rc: (-rc[1], rc[0])):
        if count <= 0:
            continue
        need = reason_need(reason, app)
        clauses.append(f"{reason} on {plural(count, noun)}" + (f" ({need})" if need else ""))
    return "no offer fits: " + "; ".join(clauses) if clauses else None


def stuck_reasons(app: AppView | None, item: QueueItemView | None) -> list[str]:
    """Readable reasons why an app's deployment has not finished, most telling first.

    Marathon never fails a deployment by itself (it retries with backoff forever, reference §A6), so the
    reasons come from the launch queue and the app's last task failure.
    """
    reasons: list[str] = []
    queued_app = item.app if item is not None and item.app is not None else app
    if item is not None and queued_app is not None:
        fits = offer_reasons(item, queued_app)
        if fits:
            reasons.append(fits)
        elif item.processed_offers_summary is not None and item.processed_offers_summary.processed_offers_count == 0:
            reasons.append("no offers received yet")
        if item.delay.time_left_seconds > 0:
            reasons.append(f"launch delayed {item.delay.time_left_seconds:.0f} s more (backoff after failures)")
        if item.count:
            reasons.append(f"{plural(item.count, 'instance')} waiting to launch")
    if app is not None and app.last_task_failure is not None:
        reasons.append(f"last task failure: {format_failure(app.last_task_failure)}")
    if not reasons and app is not None:
        reasons.append(unhealthy_reason(app))
    return reasons


def unhealthy_reason(app: AppView) -> str:
    """The reason left when nothing is queued: tasks running but not (yet) healthy, or none at all."""
    if app.health_checks and app.tasks_healthy < app.instances:
        return f"{app.tasks_healthy}/{app.instances} instances healthy; waiting for health checks to pass"
    if app.tasks_running < app.instances:
        return f"{app.tasks_running}/{app.instances} instances running"
    return "Marathon reports no reason; the deployment is still running"
