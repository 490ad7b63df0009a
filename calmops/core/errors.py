"""The errors CalmOps raises on purpose, in one tree, and what each branch means for a run.

* :class:`BadInput`: the data itself is wrong (the file is quarantined with the message as its reason, or the
  step refuses); retrying cannot help.
* :class:`UserCodeFailed`: the pipeline's own code (``preprocess``, a training or validation hook) raised or
  returned something unusable; the run fails, the file stays pending, the breaker counts it; retrying the
  same code on the same data cannot help either.
* Configuration: :class:`calmops.core.spec.SpecError` and :class:`calmops.core.settings.ConfigError`, refused
  before anything runs.

Anything else (a network error reaching MLflow or Prefect, a full disk) is not a ``CalmOpsError`` and may be
transient: the steps that touch the outside world retry it (see :func:`calmops.tasks.step`).

>>> issubclass(BadInput, ValueError) and issubclass(UserCodeFailed, RuntimeError)
True
>>> retry_can_help(UserCodeFailed("preprocess raised KeyError: 'x'")), retry_can_help(TimeoutError())
(False, True)
"""

from __future__ import annotations


class CalmOpsError(Exception):
    """An error CalmOps raised on purpose; its message names the file, key or value at fault."""


class BadInput(CalmOpsError, ValueError):
    """An error about the data itself: retrying cannot help. ``hint``: what to do, where the message does not say."""

    def __init__(self, *args: object, hint: str | None = None):
        super().__init__(*args)
        self.hint = hint


class UserCodeFailed(CalmOpsError, RuntimeError):
    """The pipeline's own code (preprocess, hooks) raised or returned something unusable."""


def retry_can_help(exc: BaseException) -> bool:
    """Whether running the same step again on the same input might succeed."""
    return not isinstance(exc, (BadInput, UserCodeFailed))


def described(exc: BaseException) -> str:
    """``Type: message``, or the type alone for an error that says nothing more (a signal, an interrupt).

    >>> described(ValueError("column 'x1' is missing")), described(KeyboardInterrupt())
    ("ValueError: column 'x1' is missing", 'KeyboardInterrupt')
    """
    said = str(exc).strip()
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__


def listed(items: list[str], most: int = 20) -> str:
    """The first ``most`` of ``items`` for a message, then how many more there are.

    >>> listed(["a.csv", "b.csv", "c.csv"], most=2)
    'a.csv, b.csv and 1 more'
    """
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")
