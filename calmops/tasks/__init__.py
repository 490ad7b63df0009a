"""Prefect tasks, one module per step.

Each task is a thin wrapper over a plain function in the same module (what unit tests call).
:func:`step` is the one way tasks are declared: no input hashing or result persistence (batches
are large and every run is already idempotent per file), retries only where the outside world
(files, MLflow) can fail, and never a retry of bad input or of the pipeline's own code failing
(:func:`calmops.core.errors.retry_can_help`).
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from calmops.core.errors import BadInput, retry_can_help

__all__ = ["BadInput", "step"]


def _retry_when_it_can_help(task, task_run, state) -> bool:
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - transient unless it is bad input or the user's code
        return retry_can_help(exc)
    return False


def step(name: str, *, retries: int = 0) -> Callable:
    options = {"name": name, "cache_policy": NO_CACHE, "persist_result": False}
    if retries:
        options.update(retries=retries, retry_delay_seconds=1, retry_condition_fn=_retry_when_it_can_help)
    return task(**options)
