"""The core stays pure: no event loop, no network, no clock, no global random state (STYLE.md, DESIGN.md §3).

Core modules are parsed with ``ast`` (never imported) and fail if they import asyncio, aiohttp, kazoo,
socket or time, or use the module-level functions of ``random``. ``random.Random`` itself is allowed: the
caller passes a seeded instance in.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import butte

PACKAGE = Path(butte.__file__).resolve().parent
FORBIDDEN_MODULES = frozenset({"asyncio", "aiohttp", "kazoo", "socket", "time"})
ALLOWED_RANDOM_NAMES = frozenset({"Random"})

CORE_DIRS = ("allocator", "core")
CORE_GLOBS = ("**/status_updates.py", "**/*_fsm.py", "**/planner.py", "**/status_stream.py")
CORE_FILES = (
    "master/state.py",
    "master/tasks.py",
    "master/offers.py",
    "master/frameworks.py",
    "master/agents.py",
    "master/health.py",
    "master/unreachable.py",
    "master/registry_gc.py",
    "agent/recovery.py",
    "frameworks/marathon/model.py",
    "frameworks/marathon/pathid.py",
    "frameworks/marathon/validation.py",
    "frameworks/marathon/app_rules.py",
    "frameworks/marathon/groups.py",
    "frameworks/marathon/replace.py",
    "frameworks/marathon/backoff.py",
    "frameworks/marathon/placement.py",
    "frameworks/marathon/constraints.py",
    "frameworks/marathon/taskinfo.py",
    "frameworks/marathon/core.py",
    "frameworks/marathon/instances.py",
    "frameworks/marathon/deployments.py",
    "frameworks/marathon/service_ports.py",
    "frameworks/marathon/healthbook.py",
    "frameworks/marathon/readinessbook.py",
    "frameworks/marathon/instance_events.py",
    "frameworks/marathon/queue.py",
    "frameworks/marathon/launcher.py",
)


def core_modules() -> list[Path]:
    """Every core module of the tree, as listed in the module docstring (those that exist)."""
    found: set[Path] = set()
    for directory in CORE_DIRS:
        found.update((PACKAGE / directory).rglob("*.py"))
    for pattern in CORE_GLOBS:
        found.update(PACKAGE.glob(pattern))
    found.update(path for path in (PACKAGE / name for name in CORE_FILES) if path.exists())
    return sorted(found)


def _top(module: str) -> str:
    return module.split(".")[0]


def _random_aliases(tree: ast.AST) -> set[str]:
    """The names under which the ``random`` module itself is bound (``import random as rnd``)."""
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "random"
    }


def _import_violations(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if _top(alias.name) in FORBIDDEN_MODULES:
                yield f"line {node.lineno}: import {alias.name}"
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if _top(node.module) in FORBIDDEN_MODULES:
            yield f"line {node.lineno}: from {node.module} import ..."
        elif node.module == "random":
            for alias in node.names:
                if alias.name not in ALLOWED_RANDOM_NAMES:
                    yield f"line {node.lineno}: from random import {alias.name}"


def violations(source: str, filename: str = "<source>") -> list[str]:
    """What in ``source`` breaks core purity, one line per finding."""
    tree = ast.parse(source, filename)
    random_names = _random_aliases(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        found.extend(_import_violations(node))
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in random_names
            and node.attr not in ALLOWED_RANDOM_NAMES
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr} (module-level random)")
    return found


@pytest.mark.parametrize(
    "path", core_modules(), ids=lambda path: str(path.relative_to(PACKAGE)) if isinstance(path, Path) else ""
)
def test_core_module_is_pure(path: Path) -> None:
    found = violations(path.read_text(), str(path))
    assert not found, f"{path.relative_to(PACKAGE)} is core and must stay pure:\n" + "\n".join(found)


def test_the_core_is_found() -> None:
    names = {str(path.relative_to(PACKAGE)) for path in core_modules()}
    assert "core/resources.py" in names


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import aiohttp.web",
        "from kazoo.client import KazooClient",
        "import socket as s",
        "from time import monotonic",
        "import time\nnow = time.time()",
        "import random\nrandom.random()",
        "import random as rnd\nx = rnd.choice([1])",
        "from random import shuffle",
        "import random\nf = random.shuffle",
    ],
)
def test_checker_catches(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "import random\nrng: random.Random = random.Random(7)",
        "from random import Random",
        "import datetime\nimport math",
        "from butte.core import time_units",
        "from . import asyncio_free",
        "def f(rng):\n    return rng.random()",
    ],
)
def test_checker_allows(source: str) -> None:
    assert violations(source) == []
