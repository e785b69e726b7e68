"""``python -m ticker_server``: the same as the ``ticker-server`` command."""

import sys

from .cli import main

sys.exit(main())
