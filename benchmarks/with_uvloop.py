"""Run a module's command line under uvloop, to measure what uvloop would change.

``python -m benchmarks.with_uvloop ticker_server --port 0 ...`` is ``python -m ticker_server
--port 0 ...`` with uvloop's event loop (``pip install uvloop`` first; it is not a dependency).
"""

from __future__ import annotations

import asyncio
import importlib
import runpy
import sys


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m benchmarks.with_uvloop MODULE [ARGS...]")
    uvloop = importlib.import_module("uvloop")
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
