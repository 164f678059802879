"""The drift engine against scipy on raw values, and its verdicts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from modelfleet_monitor.drift import (
    DriftWindow,
    ProfileError,
    Reference,
    categorical_method,
    drift_share,
    reference_from_profile,
)

from .profiles import profile_of

ROWS = 5000
FEATURES = ["pressure", "temperature", "vibration"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


@pytest.fixture
def reference_rows(rng: np.random.Generator) -> np.ndarray[Any, Any]:
    return rng.normal(loc=[5.0, 70.0, 0.3], scale=[1.0, 8.0, 0.05], size=(ROWS, 3))


def _reference(rows: np.ndarray[Any, Any], categorical: dict[str, list[str]] | None = None) -> Reference:
    columns: dict[str, Any] = {name: rows[:, index] for index, name in enumerate(FEATURES)}
    columns.update(categorical or {})
    return reference_from_profile(profile_of(columns), list(columns))


def _window(
    reference: Reference, rows: np.ndarray[Any, Any], categorical: list[list[str | None]] | None = None
) -> DriftWindow:
    window = DriftWindow(reference)
    window.add_columns(rows, categorical or [])
    return window


@pytest.mark.parametrize("method", ["psi", "ks", "jensen_shannon", "wasserstein", "chi_square"])
def test_live_rows_drawn_like_the_reference_do_not_drift(
    method: Any, rng: np.random.Generator, reference_rows: np.ndarray[Any, Any]
) -> None:
    live = rng.normal(loc=[5.0, 70.0, 0.3], scale=[1.0, 8.0, 0.05], size=(2000, 3))
    results = _window(_reference(reference_rows), live).check(method)
    assert [result.feature for result in results] == FEATURES
    assert not any(result.drifted for result in results)
    assert drift_share(results) == 0.0


@pytest.mark.parametrize("method", ["psi", "ks", "jensen_shannon", "wasserstein", "chi_square"])
def test_a_shifted_feature_drifts_and_the_others_do_not(
    method: Any, rng: np.random.Generator, reference_rows: np.ndarray[Any, Any]
) -> None:
    live = rng.normal(loc=[5.0, 82.0, 0.3], scale=[1.0, 8.0, 0.05], size=(2000, 3))
    results = _window(_reference(reference_rows), live).check(method)
    assert [result.drifted for result in results] == [False, True, False]
    assert drift_share(results) == pytest.approx(1 / 3)


def test_ks_and_wasserstein_on_the_bins_are_close_to_scipy_on_the_raw_values(
    rng: np.random.Generator, reference_rows: np.ndarray[Any, Any]
) -> None:
    live = rng.normal(loc=[5.1, 71.0, 0.302], scale=[1.0, 8.4, 0.05], size=(ROWS, 3))
    window = _window(_reference(reference_rows), live)
    for index, result in enumerate(window.check("ks")):
        exact = stats.ks_2samp(reference_rows[:, index], live[:, index])
        assert result.statistic == pytest.approx(exact.pvalue, abs=0.05, rel=0.5)
    for index, result in enumerate(window.check("wasserstein")):
        exact = (
            stats.wasserstein_distance(reference_rows[:, index], live[:, index])
            / reference_rows[:, index].std()
        )
        assert result.statistic == pytest.approx(exact, rel=0.1, abs=0.005)


def test_batches_add_up_to_the_same_statistics_as_one_window(
    rng: np.random.Generator, reference_rows: np.ndarray[Any, Any]
) -> None:
    reference = _reference(reference_rows)
    live = rng.normal(loc=[5.3, 70.0, 0.31], scale=[1.0, 8.0, 0.05], size=(900, 3))
    whole = _window(reference, live)
    batched = DriftWindow(reference)
    for batch in np.array_split(live, 7):
        batched.add_columns(batch)
    assert batched.rows == whole.rows == 900
    for method in ("psi", "ks", "wasserstein"):
        assert [r.statistic for r in batched.check(method)] == pytest.approx(
            [r.statistic for r in whole.check(method)]
        )


def test_rows_as_dicts_skip_missing_values_and_read_booleans_and_strings(
    reference_rows: np.ndarray[Any, Any],
) -> None:
    reference = _reference(reference_rows[:200], {"contract": ["monthly"] * 150 + ["yearly"] * 50})
    window = DriftWindow(reference)
    window.add_rows(
        [
            {"pressure": 5.0, "temperature": None, "vibration": 0.3, "contract": "monthly"},
            {"pressure": "n/a", "temperature": 71.0, "vibration": 0.31, "contract": None},
        ]
    )
    assert window.rows == 2
    counts = {result.feature: result for result in window.check("psi")}
    assert set(counts) == {*FEATURES, "contract"}


def test_a_category_the_reference_never_had_is_drift_by_chi_square(
    reference_rows: np.ndarray[Any, Any],
) -> None:
    reference = _reference(reference_rows[:1000], {"contract": ["monthly"] * 700 + ["yearly"] * 300})
    same = [["monthly"] * 70 + ["yearly"] * 30]
    new = [["monthly"] * 60 + ["yearly"] * 30 + ["weekly"] * 10]
    assert categorical_method("ks") == "chi_square"
    assert not _window(reference, reference_rows[:100], same).check("ks")[-1].drifted
    result = _window(reference, reference_rows[:100], new).check("ks")[-1]
    assert (result.feature, result.method, result.drifted) == ("contract", "chi_square", True)
    assert result.statistic < 1e-6


def test_a_feature_without_live_values_is_not_compared(reference_rows: np.ndarray[Any, Any]) -> None:
    window = DriftWindow(_reference(reference_rows))
    live = np.column_stack([np.full(500, np.nan), np.full(500, 90.0), reference_rows[:500, 2]])
    window.add_columns(live)
    pressure, temperature, _ = window.check("psi")
    assert np.isnan(pressure.statistic)
    assert not pressure.drifted
    assert temperature.drifted
    assert drift_share(window.check("psi")) == pytest.approx(1 / 2)


def test_a_profile_without_drift_bins_is_refused_with_what_to_do() -> None:
    with pytest.raises(ProfileError, match="without drift bins: ingest the data again"):
        reference_from_profile({"profile_version": 1, "dataset": "d", "version": "v", "columns": {}}, ["x"])


def test_a_feature_missing_from_the_profile_is_named(reference_rows: np.ndarray[Any, Any]) -> None:
    profile = profile_of({"pressure": reference_rows[:, 0]})
    with pytest.raises(ProfileError, match="feature 'torque' is not a column"):
        reference_from_profile(profile, ["pressure", "torque"])


def test_chi_square_matches_scipys_two_sample_test_and_keeps_false_alarms_near_five_percent() -> None:
    rng = np.random.default_rng(3)
    categories = list("abcdefgh")
    alarms = 0
    for trial in range(50):
        reference_values = rng.choice(categories, 3000).tolist()
        live = rng.choice(categories, 3000).tolist()
        reference = reference_from_profile(profile_of({"c": reference_values}), ["c"])
        window = DriftWindow(reference)
        window.add_columns(np.empty((len(live), 0)), [live])
        [result] = window.check("chi_square")
        alarms += result.drifted
        if trial == 0:
            table = [[reference_values.count(c) for c in categories], [live.count(c) for c in categories]]
            assert result.statistic == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)
    # A window as large as the reference is where a one-sample test would flag about 45 %;
    # 8 or more of 50 at a true 5 % has a probability of about 0.001.
    assert alarms <= 7
