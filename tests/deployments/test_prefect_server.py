"""Prefect's server on SQLite takes the write lock at the start of its transactions (stack-started servers).

A DEFERRED transaction that read before another connection wrote cannot write any more: SQLite answers
"database is locked" at once. Through ``calmops.deployments.prefect_server`` the server's transactions begin
IMMEDIATE, so a second writer waits its turn instead; this checks it on Prefect's own SQLite configuration.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import text


def _writer_blocked_while_a_transaction_reads(db_path) -> bool:
    """Open one of Prefect's transactions, read only, and ask another connection for the write lock."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    async def go() -> bool:
        config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{db_path}")
        engine = await config.engine()
        try:
            async with await config.session(engine) as session, config.begin_transaction(session):
                await session.execute(text("SELECT count(*) FROM t"))
                other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
                try:
                    other.execute("BEGIN IMMEDIATE")
                    other.execute("ROLLBACK")
                    return False
                except sqlite3.OperationalError as exc:
                    assert "locked" in str(exc)
                    return True
                finally:
                    other.close()
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "prefect.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE t (x)")
    return path


def test_prefects_own_sqlite_transactions_are_deferred(db_path):
    assert not _writer_blocked_while_a_transaction_reads(db_path)  # what the stack's server no longer does


def test_started_through_calmops_every_transaction_takes_the_write_lock_first(db_path, monkeypatch):
    from prefect.server.database.configurations import AioSqliteConfiguration

    from calmops.deployments.prefect_server import take_sqlite_writes_in_turn

    monkeypatch.setattr(AioSqliteConfiguration, "begin_transaction", AioSqliteConfiguration.begin_transaction)
    assert take_sqlite_writes_in_turn()
    assert take_sqlite_writes_in_turn()  # idempotent: not wrapped twice
    assert _writer_blocked_while_a_transaction_reads(db_path)


def test_the_stack_starts_prefect_through_it(calmops_home):
    from calmops.deployments import stack

    cmd, _ = stack.command(stack.services()["prefect"], stack.get_settings())
    assert cmd[1:5] == ["-m", "calmops.deployments.prefect_server", "server", "start"]


def test_the_stack_trims_prefects_database_unless_the_user_set_prefects_own_variables(calmops_home, monkeypatch):
    """The server's environment reaches Prefect's own settings as Prefect parses them; a variable the user set
    is left as it is."""
    import json
    from datetime import timedelta

    from prefect.settings import Settings

    from calmops.deployments import stack

    def vacuum(env):
        with monkeypatch.context() as m:
            for key, value in env.items():
                if key.startswith("PREFECT_"):
                    m.setenv(key, value)
            return Settings().server.services.db_vacuum

    for key in stack.PREFECT_SERVER_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    _, env = stack.command(stack.services()["prefect"], stack.get_settings())
    ours = vacuum(env)
    day = timedelta(days=1)
    assert ours.event_retention_overrides == {"prefect.flow-run.heartbeat": 7 * day, "prefect.task-run.Pending": day,
                                              "prefect.task-run.Running": day, "prefect.task-run.Completed": day}
    assert {"events", "flow_runs"} <= ours.enabled_vacuum_types and ours.retention_period == 30 * day

    monkeypatch.setenv("PREFECT_SERVER_SERVICES_DB_VACUUM_EVENT_RETENTION_OVERRIDES",
                       json.dumps({"prefect.task-run.Completed": 3600}))
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED", "events")
    _, env = stack.command(stack.services()["prefect"], stack.get_settings())
    theirs = vacuum(env)
    assert theirs.event_retention_overrides == {"prefect.task-run.Completed": timedelta(hours=1)}
    assert theirs.enabled_vacuum_types == {"events"}


def test_the_database_refusals_of_the_service_logs_are_found_by_name(tmp_path):
    from calmops.deployments.prefect_server import database_refusals

    (tmp_path / "prefect.log").write_text("started\nsqlite3.OperationalError) database is locked\nok\n")
    (tmp_path / "worker.log").write_text("Encountered error during state validation: 503\n")
    (tmp_path / "worker.log.1").write_text("database is locked\n")  # rotated away: not a *.log
    assert database_refusals(tmp_path) == ["prefect.log: sqlite3.OperationalError) database is locked",
                                           "worker.log: Encountered error during state validation: 503"]
    assert database_refusals(tmp_path / "absent") == []
