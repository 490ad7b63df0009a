"""Helpers for flow tests: run files, read MLflow runs, compare bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mlflow import MlflowClient

from calmops.core import registry
from calmops.core.names import model_name
from calmops.core.store import pipeline_paths, read_spec, save_spec, spec_from_dict
from calmops.flows import run_file


def run(pipeline: str, path: Path) -> dict:
    outcome, _ = run_file(pipeline, path)
    return outcome


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def versions(name: str) -> list[int]:
    return sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name='{model_name(name)}'"))


def runs_for_sha(name: str, sha: str) -> list:
    exp = MlflowClient().get_experiment_by_name(registry.experiment_name(name))
    return MlflowClient().search_runs([exp.experiment_id], f"tags.`calmops.sha256` = '{sha}'")


def update_spec(name: str, **changes) -> None:
    data = read_spec(name).model_dump(mode="json", by_alias=True)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    save_spec(spec_from_dict(data), create=False)


def incoming(name: str) -> Path:
    return pipeline_paths(read_spec(name)).incoming
