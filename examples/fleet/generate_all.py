"""Regenerate the data of every example use case: `python examples/fleet/generate_all.py`.

Each use case directory has a `generate.py` with a pure `generate()` and a `main()` that writes
`data/<dataset>.csv`. The generators are seeded, so running this again rewrites the same bytes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FLEET_DIR = Path(__file__).resolve().parent


def generator_paths() -> list[Path]:
    """The `generate.py` of every use case, in a stable order."""
    return sorted(FLEET_DIR.glob("*/generate.py"))


def load_generator(path: Path) -> ModuleType:
    """Import one use case's `generate.py` (its directory name is no valid package name)."""
    name = "fleet_example_" + path.parent.name.replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it: dataclasses look their module up while the class is built.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    """Run every generator's `main()`; print what was written."""
    for path in generator_paths():
        module = load_generator(path)
        module.main()
        written = Path(module.OUTPUT)
        print(f"{written.relative_to(FLEET_DIR)}: {written.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
