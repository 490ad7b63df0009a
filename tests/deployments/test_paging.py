"""Past the Prefect API's page (at most 200 deployments or automations a request), the checks over every CalmOps
deployment see them all: with more than about a hundred pipelines, a single read left the rest out, so a pipeline
both schemes run was not found, and pruning deleted the file triggers of deployments it had not read."""

import uuid

import pytest

from calmops.core.names import TAG, kind_tag, pipeline_tag
from calmops.core.paging import PAGE, every

pytestmark = pytest.mark.integration

MANY = PAGE + 5  # pipelines, each with its own deployment: one page and a few more


@pytest.fixture(scope="module")
def many_deployments(prefect_server):
    """``MANY`` pipelines' own stream deployments and prefect.yaml's per-kind one (whose name, ``stream``, sorts
    after theirs), on the session's test server; all removed afterwards."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from calmops.flows import flow_for

    with pytest.MonkeyPatch.context() as monkeypatch, get_client(sync_client=True) as client:
        monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # as the CLI finds a running stack's
        flow_id = client.create_flow(flow_for("stream"))
        own = {f"p{i:03d}": client.create_deployment(flow_id, f"p{i:03d}", tags=[TAG, kind_tag("stream"),
                                                                                 pipeline_tag(f"p{i:03d}")])
               for i in range(MANY)}
        per_kind = client.create_deployment(flow_id, "stream", tags=[TAG, kind_tag("stream")])
        try:
            yield own
        finally:
            for deployment_id in [*own.values(), per_kind]:
                client.delete_deployment(deployment_id)


def test_both_schemes_are_found_for_every_pipeline_past_one_page(many_deployments):
    from calmops.core.schemes import both_schemes
    from calmops.deployments import readout
    from calmops.deployments.deploy import deployed_pipelines

    last = max(many_deployments)
    expected = [f"calmops-stream/{last}", "calmops-stream/stream"]
    for schemes in (both_schemes(), readout.schemes()):  # the client's and the quick HTTP read
        assert set(many_deployments) <= set(schemes.own)
        assert schemes.conflict(last, "stream") == expected  # its files are not announced: two runs each
    assert set(many_deployments) <= set(deployed_pipelines())


def test_pruning_keeps_the_triggers_of_deployments_past_one_page(many_deployments):
    from prefect.client.orchestration import get_client
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import AutomationCore, EventTrigger

    from calmops.deployments.deploy import automation_name, prune_automations

    last = max(many_deployments)
    targets = {last: many_deployments[last], "gone": uuid.uuid4()}  # the second's deployment does not exist
    with get_client(sync_client=True) as client:
        made = {name: client.create_automation(AutomationCore(
            name=automation_name(name), trigger=EventTrigger(expect={"calmops.test"}, posture="Reactive", threshold=1),
            actions=[RunDeployment(source="selected", deployment_id=deployment_id)]))
            for name, deployment_id in targets.items()}
    try:
        removed = prune_automations()
        assert automation_name("gone") in removed  # it still prunes what has no deployment
        assert automation_name(last) not in removed
        with get_client(sync_client=True) as client:
            assert client.read_automation(made[last]) is not None
    finally:
        with get_client(sync_client=True) as client:
            for automation in every(client.read_automations):
                if automation.id in made.values():  # not pruned already
                    client.delete_automation(automation.id)
