"""Reading dataset versions: immutable Parquet files at a path or any fsspec URI, cached by URI.

A version never changes once written, so its URI is a safe cache key; the cache is per process
(each Ray worker keeps its own) and bounded, so a retrain wave over one dataset reads it once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import pandas as pd
import pyarrow as pa

from .domain import UnreadableDataset


class DatasetCache:
    """The most recently read dataset versions, up to `capacity` of them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._frames: OrderedDict[str, pd.DataFrame] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, uri: str, *, label: str) -> pd.DataFrame:
        """The version at `uri`, read once while it stays cached.

        Callers must not modify the frame: it is shared by every training of the version.
        Raises `UnreadableDataset` (permanent) when the file is absent or not Parquet; other
        I/O errors (network, permissions of a remote store) propagate as transient.
        """
        with self._lock:
            frame = self._frames.get(uri)
            if frame is not None:
                self._frames.move_to_end(uri)
                return frame
        frame = read_version(uri, label=label)
        with self._lock:
            if self.capacity > 0:
                self._frames[uri] = frame
                while len(self._frames) > self.capacity:
                    self._frames.popitem(last=False)
        return frame

    def __len__(self) -> int:
        return len(self._frames)


def read_version(uri: str, *, label: str) -> pd.DataFrame:
    """Read one dataset version; see `DatasetCache.read` for how errors are classified."""
    try:
        return pd.read_parquet(uri)
    except FileNotFoundError:
        raise UnreadableDataset(f"{label} is not at {uri!r} (deleted or moved?)") from None
    except (pa.ArrowInvalid, ValueError) as error:
        raise UnreadableDataset(f"{label} at {uri!r} is not readable Parquet: {error}") from None
