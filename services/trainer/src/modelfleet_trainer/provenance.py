"""Where a model came from: code version, environment hash and the requirements to load it.

Each value is computed once per process: listing installed distributions or asking git costs
milliseconds that a fleet of trainings should not pay per model.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Distributions a fitted pipeline needs to be loaded and used (MLflow adds itself).
MODEL_DISTRIBUTIONS = ("scikit-learn", "skops", "numpy", "scipy", "pandas")


@dataclass(frozen=True)
class Provenance:
    """Code and environment a training ran with."""

    code_version: str
    environment_hash: str


def current_provenance(code_version_override: str | None = None) -> Provenance:
    """This process's provenance; `code_version_override` (FLEET_CODE_VERSION) wins when set."""
    return Provenance(
        code_version=code_version_override or code_version(),
        environment_hash=environment_hash(),
    )


@functools.cache
def code_version() -> str:
    """The git commit of the checkout the trainer runs from, else the trainer package version."""
    try:
        completed = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        completed = None
    if completed is not None and completed.returncode == 0 and completed.stdout.strip():
        return completed.stdout.strip()
    return f"modelfleet-trainer=={importlib.metadata.version('modelfleet-trainer')}"


@functools.cache
def environment_hash() -> str:
    """sha256 of the sorted `name==version` lines of every installed distribution."""
    lines = sorted(
        {
            f"{dist.metadata['Name'].lower()}=={dist.version}"
            for dist in importlib.metadata.distributions()
            if dist.metadata["Name"]
        }
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@functools.cache
def model_requirements() -> tuple[str, ...]:
    """Pinned requirements of a logged model: the versions it was trained and saved with."""
    return tuple(f"{name}=={importlib.metadata.version(name)}" for name in MODEL_DISTRIBUTIONS)
