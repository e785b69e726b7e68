"""``python -m ticker_desktop``: the same as the ``ticker-desktop`` command."""

import sys

from .app import main

sys.exit(main())
