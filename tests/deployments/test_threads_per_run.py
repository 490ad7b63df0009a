"""The flow runs a worker takes at once share the cores: each gets cores // the worker's limit OpenMP threads
(at least one), unless OMP_NUM_THREADS is set. bench/threads.py measures what that changes."""

import os

import pytest

from calmops.core.settings import get_settings
from calmops.deployments import stack


@pytest.fixture
def prefect_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # a server named explicitly
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize("cores, limit, threads", [(2, None, "1"), (16, None, "1"), (16, "4", "4"), (3, "8", "1")])
def test_the_worker_and_the_runner_give_each_run_its_share_of_the_cores(prefect_named, monkeypatch, cores, limit,
                                                                        threads):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    if limit:
        monkeypatch.setenv("CALMOPS_WORKER_LIMIT", limit)
    else:
        monkeypatch.delenv("CALMOPS_WORKER_LIMIT", raising=False)
    for name in ("worker", "runner"):
        _, env = stack.command(stack.services()[name], get_settings())
        assert env["OMP_NUM_THREADS"] == threads, name
    cmd, _ = stack.command(stack.services()["worker"], get_settings())
    assert cmd[cmd.index("--limit") + 1] == (limit or str(max(2, cores)))  # the same limit the worker takes


def test_the_users_own_thread_count_is_kept(prefect_named, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    _, env = stack.command(stack.services()["worker"], get_settings())
    assert env["OMP_NUM_THREADS"] == "3"
