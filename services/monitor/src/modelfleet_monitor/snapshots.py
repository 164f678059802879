"""The monitor's state as JSON for the state engine, and back. Pure, no I/O.

What is written: a model's profile (from its spec) and deployment, its open review period, and
the windows of each of its versions (`VersionWatch`): the input window's bin counts, the
prediction reference and window, the label scores. Arrays are stored compressed (zlib, base64):
a window of 20 numeric features is 20 x 200 bins of counts and sums.

An input window is stored without its reference: that is the profile of the dataset version the
version was trained on, which the monitor reads again (and checks the counts still fit) when it
loads the window. The prediction reference was built from the version's first live predictions,
so it is stored with its window.
"""

from __future__ import annotations

import base64
import dataclasses
import zlib
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet_contracts.specs import BusinessKpi, MonitoringPolicy

from .drift import CategoricalReference, DriftWindow, NumericReference, Reference
from .review import ReviewPeriod
from .watch import VersionWatch

#: Most incidents of a review period kept in the state engine (a review shows the last 20).
KEPT_INCIDENTS = 100


def jsonable(value: Any) -> Any:
    """`value` with every array in it encoded (`encode_array`): what the state engine stores.

    The `*_state` functions return arrays as copies, taken in the event loop in microseconds;
    encoding them (compressing, base64) is the costly part, done here, off the event loop.
    """
    if isinstance(value, np.ndarray):
        return encode_array(value)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def encode_array(array: npt.NDArray[Any]) -> dict[str, Any]:
    """An array as JSON: dtype, shape and its bytes, compressed."""
    contiguous = np.ascontiguousarray(array)
    return {
        "dtype": contiguous.dtype.str,
        "shape": list(contiguous.shape),
        "z": base64.b64encode(zlib.compress(contiguous.tobytes(), 1)).decode("ascii"),
    }


def decode_array(value: dict[str, Any] | npt.NDArray[Any]) -> npt.NDArray[Any]:
    if isinstance(value, np.ndarray):  # a state not through JSON (yet)
        return value
    raw = zlib.decompress(base64.b64decode(value["z"]))
    return np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def window_state(window: DriftWindow) -> dict[str, Any]:
    """The counts of an input window, with what they were counted against."""
    return {
        "dataset_version": window.reference.dataset_version,
        "features": list(window.reference.features),
        "rows": window.rows,
        # Copies: the window goes on counting while they are encoded and written.
        "counts": {name: array.copy() for name, array in window.counts().items()},
    }


def _window_counts(state: dict[str, Any]) -> dict[str, Any]:
    return {
        **state,
        "counts": {name: decode_array(array) for name, array in state["counts"].items()},
    }


def reference_state(reference: Reference) -> dict[str, Any]:
    numeric, categorical = reference.numeric, reference.categorical
    return {
        "dataset_version": reference.dataset_version,
        "numeric": {
            "names": list(numeric.names),
            # A reference is never changed once built: no copy needed.
            "edges": numeric.edges,
            "edge_counts": numeric.edge_counts,
            "counts": numeric.counts,
            "means": numeric.means,
            "std": numeric.std,
        },
        "categorical": {
            "names": list(categorical.names),
            # Each feature's categories in index order.
            "categories": [sorted(index, key=index.__getitem__) for index in categorical.categories],
            "counts": categorical.counts,
        },
    }


def reference_from_state(state: dict[str, Any]) -> Reference:
    numeric, categorical = state["numeric"], state["categorical"]
    return Reference(
        NumericReference(
            names=tuple(numeric["names"]),
            edges=decode_array(numeric["edges"]),
            edge_counts=decode_array(numeric["edge_counts"]),
            counts=decode_array(numeric["counts"]),
            means=decode_array(numeric["means"]),
            std=decode_array(numeric["std"]),
        ),
        CategoricalReference(
            names=tuple(categorical["names"]),
            categories=tuple(
                {str(value): index for index, value in enumerate(values)}
                for values in categorical["categories"]
            ),
            counts=decode_array(categorical["counts"]),
        ),
        dataset_version=str(state["dataset_version"]),
    )


def watch_state(watch: VersionWatch) -> dict[str, Any]:
    """Everything a version's windows hold, to carry on counting after a restart or a move
    (arrays as copies: `jsonable` makes it JSON)."""
    if watch.window is not None:
        window: dict[str, Any] | None = window_state(watch.window)
    elif watch.restored_window is not None:
        # Loaded but its reference not read again yet: keep it as it was loaded.
        window = dict(watch.restored_window)
    else:
        window = None
    predictions = watch.prediction_window
    return {
        "live_task": watch.live_task,
        "window": window,
        "window_start": _time(watch.window_start),
        "first_predictions": list(watch.first_predictions),
        "prediction_reference": reference_state(predictions.reference) if predictions else None,
        "prediction_window": window_state(predictions) if predictions else None,
        "labelled": watch.labelled,
        "score_sum": watch.score_sum,
        "score_squares": watch.score_squares,
        "labels_since": _time(watch.labels_since),
        "evidence": list(watch.evidence),
    }


def watch_from_state(model: str, version: str, state: dict[str, Any]) -> VersionWatch:
    """A version's windows as `watch_state` wrote them; the input window waits for its reference."""
    watch = VersionWatch(
        model,
        version,
        state["live_task"],
        window_start=_parse_time(state.get("window_start")),
        first_predictions=list(state.get("first_predictions", [])),
        labelled=int(state.get("labelled", 0)),
        score_sum=float(state.get("score_sum", 0.0)),
        score_squares=float(state.get("score_squares", 0.0)),
        labels_since=_parse_time(state.get("labels_since")),
        restored_window=_window_counts(state["window"]) if state.get("window") else None,
    )
    if state.get("prediction_reference") and state.get("prediction_window"):
        predictions = DriftWindow(reference_from_state(state["prediction_reference"]))
        counts = _window_counts(state["prediction_window"])
        predictions.restore(counts["rows"], counts["counts"])
        watch.prediction_window = predictions
    watch.evidence.extend(state.get("evidence", []))
    return watch


def review_state(period: ReviewPeriod) -> dict[str, Any]:
    state = dataclasses.asdict(period)
    state["start"] = period.start.isoformat()
    state["incidents"] = period.incidents[-KEPT_INCIDENTS:]
    return state


def review_from_state(state: dict[str, Any]) -> ReviewPeriod:
    """A review period as `review_state` wrote it (or only its start, as monitors before wrote)."""
    fields = {field.name for field in dataclasses.fields(ReviewPeriod)}
    values = {key: value for key, value in state.items() if key in fields}
    values["start"] = datetime.fromisoformat(state.get("start") or state["since"])
    values["incidents"] = list(values.get("incidents", []))
    return ReviewPeriod(**values)


def monitoring_state(policy: MonitoringPolicy) -> dict[str, Any]:
    return policy.model_dump(mode="json")


def monitoring_from_state(state: dict[str, Any]) -> MonitoringPolicy:
    return MonitoringPolicy.model_validate(state)


def kpi_state(kpi: BusinessKpi | None) -> dict[str, Any] | None:
    return kpi.model_dump(mode="json") if kpi is not None else None


def kpi_from_state(state: dict[str, Any] | None) -> BusinessKpi | None:
    return BusinessKpi.model_validate(state) if state is not None else None
