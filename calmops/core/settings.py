"""The one settings object: every path and address CalmOps uses comes from here.

Each setting is read from the environment (``CALMOPS_<NAME>``), else from a ``calmops.toml`` file (``[calmops]``
table, ``<name> = ...``; the file is ``$CALMOPS_CONFIG`` or ``./calmops.toml``), else its embedded default: the
local stack on SQLite and folders under ``$CALMOPS_HOME``. docs/production.md lists them in one table.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from calmops.core.errors import CalmOpsError

#: name -> what it picks; the environment variable is ``CALMOPS_`` + the name in capitals
BACKEND_SETTINGS = {
    "home": "the data root: pipelines (spec, incoming, processed, quarantine, ledger), logs, pid files",
    "prefect_database_url": "Prefect server's database (SQLAlchemy URL, e.g. postgresql+asyncpg://…)",
    "mlflow_backend_store_uri": "MLflow server's backend store (e.g. postgresql://…)",
    "mlflow_artifacts_destination": "where MLflow's artifact proxy stores artifacts (a folder, or s3://bucket/prefix)",
    "work_pool": "the Prefect work pool the workers poll",
    "state_database_url": "CalmOps' own shared state (ledgers, rows awaiting labels, pipeline turns): "
                          "postgresql://… for several hosts; unset: SQLite files in each pipeline's folder",
    "run_dir": "this host's process state: pid files, the warm runner's socket, stack.json (never shared)",
}


class ConfigError(CalmOpsError, ValueError):
    """The configuration file cannot be read or names a setting that does not exist; ``hint``: what to do, when
    it is not to fix the file."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Settings:
    """Where CalmOps keeps its state and how it reaches its services.

    Read once per call of :func:`get_settings`, so tests and the CLI can point a process at another home by
    setting ``CALMOPS_HOME``.
    """

    home: Path
    mlflow_tracking_uri: str
    mlflow_registry_uri: str | None
    prefect_database_url: str | None = None  # None: Prefect's own SQLite file under $CALMOPS_HOME/prefect
    mlflow_backend_store_uri: str = ""
    mlflow_artifacts_destination: str = ""
    work_pool: str = "calmops"
    run_path: Path | None = None  # None: $CALMOPS_HOME/run
    state_database_url: str | None = None  # None: SQLite files in each pipeline's folder (calmops.core.statedb)

    @property
    def pipelines_dir(self) -> Path:
        return self.home / "pipelines"

    @property
    def logs_dir(self) -> Path:
        """The services' logs: ``$CALMOPS_HOME/logs``, or the run folder's ``logs/`` when the run folder is set
        (a host of its own): each host writes and reads its own, never another's lines in the same file."""
        own = self.run_path is not None and self.run_path.resolve() != (self.home / "run").resolve()
        # (the services are handed CALMOPS_RUN_DIR even when it is the default: their logs stay where `up`'s are)
        return self.run_path / "logs" if own else self.home / "logs"

    @property
    def run_dir(self) -> Path:
        """Pid files and state of this host's processes (per host even when the data root is shared)."""
        return self.run_path or self.home / "run"

    def pid_file(self, service: str) -> Path:
        """Where this host's running ``service`` of the stack keeps its pid."""
        return self.run_dir / f"{service}.pid"

    def pipeline_dir(self, name: str) -> Path:
        return self.pipelines_dir / name


def _config_file() -> dict[str, str]:
    explicit = os.environ.get("CALMOPS_CONFIG")
    path = Path(explicit).expanduser() if explicit else Path("calmops.toml")
    if not path.is_file():
        if explicit:
            raise ConfigError(f"CALMOPS_CONFIG names {path}, which is not a file")
        return {}
    try:
        table = tomllib.loads(path.read_text()).get("calmops", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown = sorted(set(table) - set(BACKEND_SETTINGS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)} in [calmops]; "
                          f"known: {', '.join(BACKEND_SETTINGS)}")
    return {k: str(v) for k, v in table.items()}


def setting(name: str, default: str | None = None) -> str | None:
    """One setting: ``CALMOPS_<NAME>``, else ``calmops.toml``, else ``default``."""
    value = os.environ.get(f"CALMOPS_{name.upper()}")
    if value:
        return value
    return _config_file().get(name, default)


def get_settings() -> Settings:
    home = Path(setting("home", ".calmops")).expanduser().resolve()
    default_tracking = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    return Settings(
        home=home,
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", default_tracking),
        mlflow_registry_uri=os.environ.get("MLFLOW_REGISTRY_URI"),
        prefect_database_url=setting("prefect_database_url"),
        mlflow_backend_store_uri=setting("mlflow_backend_store_uri", default_tracking),
        mlflow_artifacts_destination=setting("mlflow_artifacts_destination", str(home / "mlflow" / "artifacts")),
        work_pool=setting("work_pool", "calmops"),
        run_path=Path(run).expanduser().resolve() if (run := setting("run_dir")) else None,
        state_database_url=setting("state_database_url"),
    )
