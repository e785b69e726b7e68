"""``python -m ticker_bench``: the same as the ``ticker-bench`` command."""

import sys

from .bench import main

if __name__ == "__main__":  # not again in the spawned load workers
    sys.exit(main())
