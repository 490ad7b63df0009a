"""The ``calmops`` command.

``calmops run`` imports Prefect, MLflow, scikit-learn and the flows before its first step (seconds on a
small machine), and ``create``, ``delete`` and the others of :data:`WARM` import MLflow or Prefect; when the
local stack's warm runner answers, such a command is handed to it instead (a child of the runner, which has
imported all of that already, runs it with this process's arguments, environment, folder and terminal) and
this process only relays signals and the exit code. With no runner, or with ``CALMOPS_RUN_WARM=0``, it runs
here. Every other command goes straight to the Typer app.

Standard library only at import time: this is on the path of every command.
"""

from __future__ import annotations

import os
import sys

#: the commands handed to the warm runner: each imports MLflow, Prefect or the flows before its first step and
#: ends on its own. Never the commands that start, stop or are services (up, down, service, watch, viewer, serve,
#: demo: a service must not be a child of the runner ``down`` stops), nor those that need none of the stack.
WARM = frozenset({"run", "create", "update", "delete", "deploy", "relaunch", "rollback", "report", "history", "breaker"})


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in WARM and not {"--help", "-h"} & set(args) and os.environ.get("CALMOPS_RUN_WARM", "1") != "0":
        from calmops.deployments.warm import hand_over

        code = hand_over(args, entry="cli")
        if code is not None:
            sys.exit(code)
    from calmops.deployments.cli import app

    app()
