"""Whether the tests run under CI, where a missing prerequisite fails instead of skipping."""

from __future__ import annotations

import os

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
