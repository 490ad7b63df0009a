"""`create` and `update` warn about settings the pipeline's kind never reads, and keep the spec; `update` says what it
changed."""

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


def test_thresholds_in_an_ipip_pipeline_are_warned_about_and_kept(calmops_home, tmp_path, monkeypatch):
    """IPIP serves every update of its ensemble: a threshold in its spec gates nothing, which the user who wrote
    it expects it to do."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    thresholds = {"balanced_accuracy": {"min": 0.7}, "recall": {"min": 0.5}}
    spec_file = _write(tmp_path, {**IPIP, "evaluation": {"thresholds": thresholds}})
    created = runner.invoke(app, ["create", str(spec_file)])
    assert created.exit_code == 0, created.output
    text = " ".join(created.stdout.split())
    assert f"warning: {spec_file}: evaluation.thresholds (balanced_accuracy, recall) do not apply to kind 'ipip' " \
           "and are ignored" in text, text
    from calmops.core.store import read_spec

    assert set(read_spec("rare").evaluation.thresholds) == set(thresholds)  # saved as given
    block = runner.invoke(app, ["create", str(_write(tmp_path, {**BLOCK, "evaluation": {"thresholds": thresholds}}))])
    assert block.exit_code == 0 and "warning" not in block.stdout, block.output  # a block pipeline gates on them


def test_update_says_which_settings_it_changed(calmops_home, tmp_path, monkeypatch):
    """`update` used to say only "updated pipeline": whether the new file held the intended change (or one not
    intended) was left to a diff in spec_history."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert runner.invoke(app, ["create", str(_write(tmp_path, BLOCK))]).exit_code == 0
    changed = {**BLOCK, "retrain": {"data": "new_only"}, "evaluation": {"thresholds": {"accuracy": {"min": 0.8}}},
               "model": {"class": "sklearn.ensemble.RandomForestClassifier"}}
    updated = runner.invoke(app, ["update", "wards", str(_write(tmp_path, changed))])
    assert updated.exit_code == 0, updated.output
    lines = [line.strip() for line in updated.stdout.splitlines()]
    from calmops.core.spec import RetrainSpec

    was = RetrainSpec().data
    assert was != "new_only"
    assert f"retrain.data: {was!r} → 'new_only'" in lines, lines
    assert "evaluation.thresholds.accuracy: (not set) → {'min': 0.8, 'max': None}" in lines, lines
    assert ("model.class: 'sklearn.tree.DecisionTreeClassifier' → 'sklearn.ensemble.RandomForestClassifier'"
            in lines), lines  # the key as the spec writes it
    assert sum(" → " in line for line in lines) == 3, lines  # nothing else: the block column … as before
    again = runner.invoke(app, ["update", "wards", str(_write(tmp_path, changed))])
    assert again.exit_code == 0 and "updated pipeline wards: no setting changed" in again.stdout, again.output


def test_update_says_feature_types_and_dropped_columns_apply_from_the_next_model_trained(calmops_home, tmp_path,
                                                                                        monkeypatch):
    """The champion's reference profile and column transformer were built with the types and columns it was trained
    on: after an update of those keys the next file is still tested with them. `update` says so, and when they
    apply; it says nothing of the kind for a key every run reads from the spec."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    stream = {"name": "salary", "kind": "stream", "target": "y", "model": {"class": "sklearn.tree.DecisionTreeClassifier"}}
    assert runner.invoke(app, ["create", str(_write(tmp_path, stream))]).exit_code == 0
    changed = {**stream, "feature_types": {"elevel": "categorical"}, "drop_columns": ["car"]}
    updated = runner.invoke(app, ["update", "salary", str(_write(tmp_path, changed))])
    assert updated.exit_code == 0, updated.output
    text = " ".join(updated.stdout.split())
    assert "drop_columns, feature_types.elevel apply from the next model trained: the current champion keeps" in text, text
    assert "until a retrain promotes a new model" in text and "retrain.retrain_on: always" in text, text

    read_now = {**changed, "drift": {"alpha": 0.01}}
    again = runner.invoke(app, ["update", "salary", str(_write(tmp_path, read_now))])
    assert again.exit_code == 0 and "drift.alpha: 0.05 → 0.01" in again.stdout, again.output
    assert "next model" not in again.stdout, again.output


def test_a_block_column_in_a_stream_pipeline_is_warned_about_and_kept(calmops_home, tmp_path, monkeypatch):
    """A stream pipeline has no blocks: its block_column was accepted silently, while it only keeps the column out
    of the model's inputs."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    stream = {"name": "flat", "kind": "stream", "target": "y", "block_column": "site"}
    created = runner.invoke(app, ["create", str(_write(tmp_path, stream))])
    assert created.exit_code == 0, created.output  # warned, not refused
    text = " ".join(created.stdout.split())
    assert "block_column: 'site' does not apply to kind 'stream': a stream pipeline has no blocks, and the column is " \
           "only left out of the model's inputs (as drop_columns does); remove it, or use kind: block" in text, text
    from calmops.core.features import feature_columns
    from calmops.core.store import read_spec

    assert read_spec("flat").block_column == "site"  # saved as given
    assert feature_columns(read_spec("flat"), ["a", "site", "y"]) == ["a"]  # what the warning says it does
    assert "warning" not in runner.invoke(app, ["create", str(_write(tmp_path, BLOCK))]).stdout  # blocks: no warning
