"""Prefect's server as the local stack runs it: ``prefect server start``, with SQLite writes taken in turn.

On SQLite, Prefect's server opens most write transactions DEFERRED: a transaction reads, then asks for the
write lock. When another connection committed a write in between, SQLite cannot upgrade the stale reader and
answers "database is locked" at once, without waiting its busy timeout (a wait could deadlock). Under a burst
of files (the API, the worker, the watcher's events and the server's own services all writing) that surfaced
as tracebacks in the server's log and 503s to its clients.

Started through this module, every transaction of the server on SQLite begins IMMEDIATE: it takes the write
lock first and waits its turn (Prefect's busy timeout, 60 s) instead of failing half-way. SQLite allows one
writer at a time in any case, so writers only queue where they used to fail and be retried; readers outside
transactions are not affected. PostgreSQL, the production database, has row locks and is left as it is.

    python -m calmops.deployments.prefect_server server start --host 127.0.0.1 --port 4200
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("calmops.prefect_server")

# what a service's log says when Prefect's database refused a statement (a traceback, or a state not recorded)
DATABASE_REFUSALS = ("database is locked", "Encountered error during state validation")


def database_refusals(logs: Path) -> list[str]:
    """Every line of the service logs in ``logs`` (``*.log``) that says Prefect's database refused a statement,
    as ``<log name>: <line>``: none is expected from the local stack, under load or not."""
    return [f"{log.name}: {line}" for log in sorted(logs.glob("*.log"))
            for line in log.read_text(errors="replace").splitlines()
            if any(marker in line for marker in DATABASE_REFUSALS)]


def take_sqlite_writes_in_turn() -> bool:
    """Make Prefect's SQLite transactions IMMEDIATE (in this process); False if Prefect's internals changed."""
    try:
        from prefect.server.database.configurations import AioSqliteConfiguration
    except ImportError:
        return False
    deferred = getattr(AioSqliteConfiguration, "begin_transaction", None)
    if deferred is None or getattr(deferred, "calmops_immediate", False):
        return deferred is not None

    def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> Any:
        return deferred(self, session, with_for_update=True)  # IMMEDIATE: the write lock first, then the reads

    begin_transaction.calmops_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]
    return True


def main(argv: list[str] | None = None) -> int:
    if not take_sqlite_writes_in_turn():
        log.warning("this Prefect version's SQLite configuration is not the one CalmOps knows: running it "
                    "unchanged ('database is locked' may appear under load)")
    from prefect.cli import app

    sys.argv = ["prefect", *(sys.argv[1:] if argv is None else argv)]
    return app() or 0


if __name__ == "__main__":
    sys.exit(main())
