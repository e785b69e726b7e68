"""Settings shared by every test package."""

from __future__ import annotations

import os

# Qt must never look for a display in tests; set before any test module imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
