"""Which deployments start a pipeline's runs: the two deployment schemes, read from the Prefect API.

prefect.yaml's deployment for a kind (``prefect deploy --all``: ``calmops-<kind>/<kind>``) starts a run for every
file event of that kind; a pipeline's own deployment (``calmops deploy``: ``calmops-<kind>/<pipeline>``) for every
file event of the pipeline. One of them serves a pipeline. While both exist, every file announced would start two
runs: so nothing that announces files (the watcher, a turn that gives way, ``calmops relaunch``) announces one of
that pipeline, each saying so with :func:`scheme_advice`, and ``calmops status`` shows it as not served. Kept
here, below the flows, so that each of them reads the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from calmops.core.kinds import KINDS
from calmops.core.names import PIPELINE_PREFIX, TAG, kind_tag, pipeline_tag
from calmops.core.paging import every


def is_kind_deployment(name: str, tags: list[str] | None) -> bool:
    """One of prefect.yaml's per-kind deployments (``calmops-<kind>/<kind>``), not a pipeline named like a kind."""
    tags = tags or []
    return (name in KINDS and TAG in tags and kind_tag(name) in tags
            and not any(t.startswith(PIPELINE_PREFIX) for t in tags))


@dataclass
class Schemes:
    """Which deployments trigger runs: prefect.yaml's by kind, and the pipelines' own (``calmops deploy``)."""

    per_kind: dict[str, str] = field(default_factory=dict)  # kind -> "calmops-<kind>/<kind>"
    own: dict[str, list[str]] = field(default_factory=dict)  # pipeline -> its own run deployments

    @classmethod
    def of(cls, deployments: Iterable[tuple[str, list[str] | None, str]]) -> Schemes:
        """From the ``(name, tags, flow name)`` of CalmOps' deployments (a scan deployment starts no run)."""
        run_flows = {spec.flow_name for spec in KINDS.values()}
        schemes = cls()
        for name, tags, flow in deployments:
            if is_kind_deployment(name, tags):
                schemes.per_kind[name] = f"{flow}/{name}"
            elif flow in run_flows and pipeline_tag(name) in (tags or []):
                schemes.own.setdefault(name, []).append(f"{flow}/{name}")
        return schemes

    def serving(self, pipeline: str, kind: str) -> list[str]:
        """The deployments that start a run for each file of the pipeline (none: it is not deployed)."""
        return [*self.own.get(pipeline, []), *([self.per_kind[kind]] if kind in self.per_kind else [])]

    def conflict(self, pipeline: str, kind: str) -> list[str]:
        """The deployments that would each start a run for every file of the pipeline (its own and prefect.yaml's
        for its kind); empty when one scheme serves it."""
        own = self.own.get(pipeline, [])
        return [*own, self.per_kind[kind]] if own and kind in self.per_kind else []


def both_schemes() -> Schemes:
    """The per-kind and per-pipeline run deployments on the server (every page of them, then their flows); raises
    what the client raises."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowFilter,
        FlowFilterId,
    )

    with get_client(sync_client=True) as client:
        found = every(client.read_deployments, deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[TAG])))
        flows = {}
        if found:
            flows = {f.id: f.name for f in client.read_flows(
                flow_filter=FlowFilter(id=FlowFilterId(any_=list({d.flow_id for d in found}))))}
    return Schemes.of((d.name, d.tags, flows.get(d.flow_id, "")) for d in found)


def two_runs(deployments: list[str]) -> str:
    """Why no file of a pipeline is announced while both schemes serve it."""
    return f"the deployments {' and '.join(deployments)} would each start a run for every one of its files"


def scheme_advice(pipeline: str, deployments: list[str]) -> str:
    """What to do when both schemes would run a pipeline's files: the command that keeps each one."""
    *own, per_kind = deployments
    return (f"run 'calmops deploy {pipeline}' to keep prefect.yaml's {per_kind} (it removes {', '.join(own)}), or "
            f"'prefect deployment delete {per_kind}' then 'calmops deploy' to keep the pipeline's own")
