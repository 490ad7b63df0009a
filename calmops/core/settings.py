"""The one settings object: every path and address CalmOps uses comes from here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where CalmOps keeps its state and how it reaches its services.

    Read from the environment once per call of :func:`get_settings`, so tests and the
    CLI can point a process at another home by setting ``CALMOPS_HOME``.
    """

    home: Path
    mlflow_tracking_uri: str
    mlflow_registry_uri: str | None

    @property
    def pipelines_dir(self) -> Path:
        return self.home / "pipelines"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        """Pid files and state of the local stack's processes."""
        return self.home / "run"

    def pipeline_dir(self, name: str) -> Path:
        return self.pipelines_dir / name


def get_settings() -> Settings:
    home = Path(os.environ.get("CALMOPS_HOME", ".calmops")).expanduser().resolve()
    default_tracking = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    return Settings(
        home=home,
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", default_tracking),
        mlflow_registry_uri=os.environ.get("MLFLOW_REGISTRY_URI"),
    )
