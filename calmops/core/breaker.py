"""The circuit breaker (docs/operations.md): a state machine, stored per pipeline in a Prefect Block.

``closed`` → ``open`` after ``max_failures`` consecutive failed runs → ``half_open`` once the
cooldown has passed (exponential backoff, capped) → ``closed`` after ``half_open_trials``
successes, or back to ``open`` with a longer cooldown on a failure.

The transitions are plain methods on :class:`BreakerState` (unit-tested without Prefect);
:func:`update_breaker` applies one under a Prefect global concurrency lock so that concurrent
runs never lose an update (Block writes alone are last-writer-wins).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect.blocks.core import Block

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
HISTORY_LIMIT = 200


@dataclass
class BreakerPolicy:
    max_failures: int = 3
    cooldown_seconds: float = 60.0
    max_cooldown_seconds: float = 3600.0
    half_open_trials: int = 1

    @classmethod
    def from_spec(cls, spec) -> BreakerPolicy:
        b = spec.breaker
        return cls(b.max_failures, b.cooldown_seconds, b.max_cooldown_seconds, b.half_open_trials)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass
class BreakerState:
    state: str = CLOSED
    consecutive_failures: int = 0
    times_opened: int = 0          # consecutive openings without a close: drives the backoff
    opened_at: float | None = None
    next_retry_at: float | None = None
    half_open_successes: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    # -- transitions ----------------------------------------------------------------------
    def _move(self, to: str, now: float, reason: str) -> None:
        self.history.append({"time": _iso(now), "from": self.state, "to": to, "reason": reason})
        del self.history[:-HISTORY_LIMIT]
        self.state = to

    def allows_training(self, policy: BreakerPolicy, now: float | None = None) -> bool:
        """Whether a run may train; moves ``open`` to ``half_open`` once the cooldown is over."""
        now = time.time() if now is None else now
        if self.state == OPEN and self.next_retry_at is not None and now >= self.next_retry_at:
            self._move(HALF_OPEN, now, "cooldown over, trying again")
            self.half_open_successes = 0
        return self.state != OPEN

    def record_success(self, policy: BreakerPolicy, now: float | None = None) -> None:
        """A run that succeeded. While open, one that tried nothing the breaker holds back (no training) leaves
        the failures that opened it on show; closed or half-open, the count starts again."""
        now = time.time() if now is None else now
        if self.state == OPEN:
            return
        self.consecutive_failures = 0
        if self.state == HALF_OPEN:
            self.half_open_successes += 1
            if self.half_open_successes >= policy.half_open_trials:
                self._move(CLOSED, now, "run succeeded while half-open")
                self.times_opened, self.opened_at, self.next_retry_at = 0, None, None

    def record_failure(self, policy: BreakerPolicy, reason: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.consecutive_failures += 1
        if self.state == HALF_OPEN or (self.state == CLOSED and self.consecutive_failures >= policy.max_failures):
            cooldown = min(policy.cooldown_seconds * 2 ** self.times_opened, policy.max_cooldown_seconds)
            self.times_opened += 1
            self.opened_at, self.next_retry_at = now, now + cooldown
            self._move(OPEN, now, f"{reason} ({self.consecutive_failures} consecutive failures; "
                                  f"retry after {cooldown:.0f} s)")

    def reset(self, reason: str = "reset by operator", now: float | None = None) -> None:
        now = time.time() if now is None else now
        if self.state != CLOSED:
            self._move(CLOSED, now, reason)
        self.consecutive_failures = self.times_opened = self.half_open_successes = 0
        self.opened_at = self.next_retry_at = None

    def to_public(self) -> dict[str, Any]:
        d = asdict(self)
        d["opened_at"], d["next_retry_at"] = _iso(self.opened_at), _iso(self.next_retry_at)
        return d


# -- storage in a Prefect Block ------------------------------------------------------------


class CircuitBreakerBlock(Block):
    """Circuit-breaker state of one CalmOps pipeline (shown in the Prefect UI under Blocks)."""

    _block_type_name = "CalmOps Circuit Breaker"
    _block_type_slug = "calmops-circuit-breaker"
    _description = "State, failure count, next retry time and transition history of a pipeline's breaker."

    pipeline: str
    state: str = CLOSED
    consecutive_failures: int = 0
    times_opened: int = 0
    opened_at: float | None = None
    next_retry_at: float | None = None
    half_open_successes: int = 0
    history: list[dict[str, Any]] = []  # noqa: RUF012 - pydantic copies field defaults per instance


def block_name(pipeline: str) -> str:
    return f"calmops-breaker-{pipeline}"


def _lock_name(pipeline: str) -> str:
    return f"calmops-breaker-lock-{pipeline}"


def _ensure_lock(pipeline: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(_lock_name(pipeline))
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=_lock_name(pipeline), limit=1)
                )
            except ObjectAlreadyExists:
                pass


def read_breaker(pipeline: str) -> BreakerState:
    try:
        block = CircuitBreakerBlock.load(block_name(pipeline))
    except ValueError:  # no block yet: a new pipeline's breaker is closed
        return BreakerState()
    return BreakerState(**{k: getattr(block, k) for k in BreakerState.__dataclass_fields__})


def _write_breaker(pipeline: str, state: BreakerState) -> None:
    CircuitBreakerBlock(pipeline=pipeline, **asdict(state)).save(block_name(pipeline), overwrite=True)


def update_breaker(pipeline: str, change: Callable[[BreakerState], Any]) -> tuple[BreakerState, Any]:
    """Read, change and write the breaker as one step, serialized across processes."""
    from prefect.concurrency.sync import concurrency

    _ensure_lock(pipeline)
    with concurrency(_lock_name(pipeline), occupy=1, strict=True):
        state = read_breaker(pipeline)
        result = change(state)
        _write_breaker(pipeline, state)
    return state, result


def delete_breaker(pipeline: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for call in (lambda: client.delete_global_concurrency_limit_by_name(_lock_name(pipeline)),):
            try:
                call()
            except ObjectNotFound:
                pass
        try:
            doc = client.read_block_document_by_name(block_name(pipeline), "calmops-circuit-breaker")
            client.delete_block_document(doc.id)
        except ObjectNotFound:
            pass
