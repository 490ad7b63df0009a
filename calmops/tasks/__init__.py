"""Prefect tasks, one module per step.

Each task is a thin wrapper over a plain function in the same module (what unit tests call).
:func:`step` is the one way tasks are declared: no input hashing or result persistence (batches
are large and every run is already idempotent per file), retries only where the outside world
(files, MLflow) can fail, and never a retry of bad input.
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE


class BadInput(ValueError):
    """An error about the data itself: retrying cannot help."""


def _retry_unless_bad_input(task, task_run, state) -> bool:
    try:
        state.result()
    except BadInput:
        return False
    except Exception:  # noqa: BLE001 - any other failure may be transient: retry
        return True
    return False


def step(name: str, *, retries: int = 0) -> Callable:
    options = {"name": name, "cache_policy": NO_CACHE, "persist_result": False}
    if retries:
        options.update(retries=retries, retry_delay_seconds=1, retry_condition_fn=_retry_unless_bad_input)
    return task(**options)
