"""`create` and `update` warn about retrain settings the pipeline's kind never reads, and keep the spec."""

import yaml
from typer.testing import CliRunner

from calmops.deployments.cli import app

runner = CliRunner()

BLOCK = {"name": "wards", "kind": "block", "target": "y", "block_column": "site",
         "model": {"class": "sklearn.tree.DecisionTreeClassifier"}}
IPIP = {"name": "rare", "kind": "ipip", "target": "y", "block_column": "month"}


def _write(tmp_path, spec: dict):
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_window_mode_in_a_block_pipeline_is_warned_about_and_kept(calmops_home, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    spec_file = _write(tmp_path, {**BLOCK, "retrain": {"mode": "window", "window_rows": 500, "data": "new_only"}})
    created = runner.invoke(app, ["create", str(spec_file)])
    assert created.exit_code == 0, created.output  # warned, not refused
    text = " ".join(created.stdout.split())
    assert f"warning: {spec_file}: retrain.mode: 'window' does not apply to kind 'block' and is ignored: a block " \
           "pipeline refits only its drifted and new blocks and its global model" in text, text
    assert "retrain.window_rows: 500 does not apply to kind 'block'" in text, text
    assert "retrain.data" not in text.replace("(retrain.data and", "")  # a block pipeline reads it: no warning
    from calmops.core.store import read_spec

    assert read_spec("wards").retrain.mode == "window"  # saved as given


def test_an_incremental_mode_in_an_ipip_pipeline_is_warned_about_at_update(calmops_home, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    created = runner.invoke(app, ["create", str(_write(tmp_path, IPIP))])
    assert created.exit_code == 0, created.output
    assert "warning" not in created.stdout  # nothing set that the kind ignores
    updated = runner.invoke(app, ["update", "rare", str(_write(tmp_path, {**IPIP, "retrain": {"mode": "incremental"}}))])
    assert updated.exit_code == 0, updated.output
    text = " ".join(updated.stdout.split())
    assert "retrain.mode: 'incremental' does not apply to kind 'ipip' and is ignored: an ipip pipeline updates its " \
           "ensemble on every file" in text, text
