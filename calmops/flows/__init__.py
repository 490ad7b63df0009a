"""Prefect flows, one module per pipeline kind, and :func:`run_file` to run one file by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def flow_for(kind: str):
    if kind == "stream":
        from calmops.flows.stream import stream_flow

        return stream_flow
    if kind == "block":
        from calmops.flows.block import block_flow

        return block_flow
    if kind == "ipip":
        from calmops.flows.ipip import ipip_flow

        return ipip_flow
    raise NotImplementedError(f"pipeline kind {kind!r} has no flow yet")


def run_file(pipeline: str, path: str | Path) -> tuple[dict[str, Any], str | None]:
    """Run the pipeline's flow on one file in this process; returns (outcome, error or None)."""
    from calmops.core.store import read_spec
    from calmops.flows.common import RunFailed

    spec = read_spec(pipeline)
    state = flow_for(spec.kind)(pipeline=pipeline, path=str(Path(path).absolute()), return_state=True)  # a link stays a link
    if state.is_completed():
        return state.result(), None
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, RunFailed):
        return exc.outcome.to_dict(), exc.outcome.reason
    return {"pipeline": pipeline, "file": Path(path).name, "decision": "failed", "reason": str(exc)}, str(exc)
