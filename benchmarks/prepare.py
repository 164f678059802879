"""Make the benchmarks' peers ready: each peer's own venv, made by the script that runs it.

    .venv/bin/python benchmarks/prepare.py     # run by `make bench`

Evidently (drift.py) and Ray Serve (serving.py) clash with the project's pins, so each runs in its
own `.venv-bench-*` with the versions the script pins; both are checked and made only when missing.
The MLflow baseline of fleet_onboarding.py runs in .venv itself.
"""

from __future__ import annotations

import drift
import serving


def main() -> None:
    for peer, python in (
        ("Evidently (drift.py)", drift.ensure_evidently_venv()),
        ("Ray Serve (serving.py)", serving.ensure_ray_venv()),
    ):
        print(f"{peer}: {python}")


if __name__ == "__main__":
    main()
