"""What the warm runner's children run in tests/deployments/test_warm.py instead of Prefect's engine."""

import atexit
import os
import subprocess
import sys
import time

if __name__ == "__main__":
    atexit.register(lambda: print("exit handlers ran", flush=True))
    print(f"argv0={os.path.basename(sys.argv[0])} argv={sys.argv[1:]} greeting={os.environ.get('GREETING')} cwd={os.getcwd()} "
          f"pid={os.getpid()} ppid={os.getppid()}", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    if sys.argv[1] == "settings":  # how Prefect is set up in this run (a runner that preloads it)
        from prefect import context
        from prefect.settings import get_current_settings

        refreshed = getattr(context, "refreshed_by", None) == os.getpid()  # set by the test's runner
        print(f"refreshed={refreshed} level={get_current_settings().logging.level}", flush=True)
        sys.exit(0)
    if sys.argv[1] == "spawn":  # a flow that starts a subprocess of its own
        helper = subprocess.Popen(["sleep", "120"])
        print(f"helper={helper.pid}", flush=True)
    if sys.argv[1] == "bad-spec":  # a flow that refuses its pipeline's spec (an error CalmOps raises on purpose)
        from calmops.core.spec import SpecError

        raise SpecError("sea.yaml: 'target' is missing")
    if sys.argv[1] == "bug":  # a flow that fails unexpectedly
        raise RuntimeError("an unexpected failure")
    if sys.argv[1] in ("sleep", "spawn"):
        time.sleep(120)
    sys.exit(int(sys.argv[1]))
