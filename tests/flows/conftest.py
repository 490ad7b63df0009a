"""Fixtures of the flow tests."""

import pytest


@pytest.fixture
def refused_metric_rows():
    """Every metric row MLflow's store sent twice to its database (refused by its primary key ``metric_pk``;
    on SQLite the store then keeps the first row quietly, PostgreSQL logs the refusal as an ERROR)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    refused = []

    def on_error(context):
        statement = context.statement or ""
        if "INSERT INTO metrics" in statement and "IntegrityError" in type(context.sqlalchemy_exception).__name__:
            refused.append(str(context.original_exception))

    event.listen(Engine, "handle_error", on_error)
    yield refused
    event.remove(Engine, "handle_error", on_error)

