"""Shared test setup: the repository's risk policies, whatever directory pytest runs from."""

import os
from pathlib import Path

# Settings are read when the app module is imported, so this must happen before any test imports it.
os.environ.setdefault("FLEET_POLICY_DIR", str(Path(__file__).resolve().parents[3] / "policies"))
