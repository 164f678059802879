"""Reference profiles for tests, written the way ingest writes them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from modelfleet_common.profiles import reference_profile


def profile_of(
    columns: Mapping[str, Any], *, dataset: str = "telemetry", version: str = "v1"
) -> dict[str, Any]:
    """The profile of a table made of `columns` (name -> values)."""
    return reference_profile(pa.table(dict(columns)), dataset=dataset, version=version)
