"""What the warm runner's children run in tests/deployments/test_warm.py instead of Prefect's engine."""

import os
import sys
import time

if __name__ == "__main__":
    print(f"argv={sys.argv[1:]} greeting={os.environ.get('GREETING')} cwd={os.getcwd()} "
          f"pid={os.getpid()} ppid={os.getppid()}", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    if sys.argv[1] == "sleep":
        time.sleep(120)
    sys.exit(int(sys.argv[1]))
