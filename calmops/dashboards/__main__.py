"""``python -m calmops.dashboards --address A --port P``: the viewer's Streamlit server in this process.

The local stack starts the viewer this way; the process becomes Streamlit's (``exec``), so stopping it stops
Streamlit."""

from __future__ import annotations

import argparse
import os

from calmops.dashboards.cli import command

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m calmops.dashboards")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args()
    argv = command(args.address, args.port)
    os.execv(argv[0], argv)
