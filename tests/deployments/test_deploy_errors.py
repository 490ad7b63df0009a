"""``calmops deploy`` (every pipeline) when one pipeline cannot be deployed: the others are, and the one that is
not is said in a sentence that names it and what to do. Against Prefect's test server."""

import pytest
import yaml
from typer.testing import CliRunner

from calmops.core.store import pipeline_paths, save_spec, spec_from_dict
from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC

pytestmark = pytest.mark.integration

runner = CliRunner()


@pytest.fixture
def prefect_api(prefect_server, monkeypatch):
    """The test server named in the environment, as the CLI finds a running stack's; the deployments made here are
    removed afterwards (the server is the session's)."""
    from prefect.settings import PREFECT_API_URL

    from calmops.deployments.deploy import delete_pipeline_deployments

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    yield
    for name in ("sea", "fraud"):
        delete_pipeline_deployments(name)


def test_a_pipeline_whose_spec_does_not_read_is_named_with_what_to_do_and_the_others_are_deployed(
        prefect_api, stream_spec):
    """'calmops deploy' said 'fraud: SpecError: …' for a spec.yaml broken in place: now a sentence names the
    pipeline, that its spec cannot be read and the command that mends it; sea is deployed all the same, and the
    exit code says that not every pipeline was."""
    from calmops.deployments.deploy import describe

    save_spec(spec_from_dict({**STREAM_SPEC, "name": "fraud"}), create=True)
    broken = pipeline_paths(spec_from_dict({**STREAM_SPEC, "name": "fraud"})).spec_file
    broken.write_text(yaml.safe_dump({**STREAM_SPEC, "name": "fraud"}) + "kind: [stream\n")

    done = runner.invoke(app, ["deploy"], terminal_width=400)
    assert done.exit_code == 1, done.output
    said = " ".join(done.stderr.split())
    assert "SpecError" not in done.output, done.output
    assert f"pipeline fraud was not deployed: its spec cannot be read ({broken}: " in said, said
    assert "'calmops update fraud SPEC.yaml'" in said and "'calmops deploy fraud'" in said, said
    assert "sea: deployment calmops-stream/sea" in done.stdout, done.stdout
    assert describe("sea")["deployments"] == ["calmops-stream/sea"]

    pipeline_paths(stream_spec).spec_file.write_text("name: sea\nkind: [stream\n")  # two: a line for each
    both = runner.invoke(app, ["deploy"], terminal_width=400)
    assert both.exit_code == 1, both.output
    assert "2 pipelines were not deployed: fraud, sea" in both.stderr, both.output
    lines = [line for line in both.stdout.splitlines() if ": not deployed: its spec cannot be read" in line]
    assert [line.split(":")[0] for line in lines] == ["fraud", "sea"], both.stdout


def test_update_whose_deployment_waits_for_a_run_in_flight_says_the_spec_is_saved_and_what_to_run(
        prefect_api, stream_spec, tmp_path, monkeypatch):
    """Bringing the deployments in step can wait for a run in flight (a pipeline's own deployment is removed only
    once its run has ended) and give up: `update` has saved the spec by then, so it says so, with the command
    to run once the run has ended, and succeeds; it said "RuntimeError: … run again with 'calmops --debug'"."""
    from calmops.core.store import read_spec
    from calmops.deployments import deploy

    def still_running(name, *args, **kwargs):
        raise deploy.RunInFlight(f"calmops-stream/{name} still has run(s) odd-run in flight after 120 s; "
                                 "nothing was removed")

    monkeypatch.setattr(deploy, "deploy_pipeline", still_running)  # what waiting on a stale run ends with
    changed = tmp_path / "sea.yaml"
    changed.write_text(yaml.safe_dump({**STREAM_SPEC, "order": "none"}))
    done = runner.invoke(app, ["update", "sea", str(changed)], terminal_width=400)
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    assert "the spec is saved, but the deployments of sea are as they were" in said, said
    assert "odd-run in flight" in said and "once it ends, run 'calmops deploy' again" in said, said
    assert read_spec("sea").order == "none"
