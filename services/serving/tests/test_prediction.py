"""One pass over the pipeline answers labels and probabilities exactly as `predict` would."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from modelfleet_serving.prediction import InvalidInputs, features_frame, predict

COLUMNS = ["a", "b", "c"]


def training_data(classes: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, len(COLUMNS)))
    y = np.digitize(x @ np.array([1.0, -0.5, 0.8]), np.linspace(-1, 1, classes - 1))
    return pd.DataFrame(x, columns=COLUMNS), y


def rows(count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(4)
    return [dict(zip(COLUMNS, values, strict=True)) for values in rng.normal(size=(count, 3)).tolist()]


@pytest.mark.parametrize(
    "classifier",
    [
        LogisticRegression(),
        HistGradientBoostingClassifier(max_iter=20),
        RandomForestClassifier(n_estimators=10, random_state=0),
        SVC(probability=True, random_state=0),  # not argmax of its probabilities: predict is called
    ],
    ids=lambda c: type(c).__name__,
)
@pytest.mark.parametrize("classes", [2, 4])
def test_predictions_are_what_the_models_predict_says_with_probabilities_per_class(
    classifier: Any, classes: int
) -> None:
    frame, labels = training_data(classes)
    pipeline = Pipeline(
        [("prep", ColumnTransformer([("num", StandardScaler(), COLUMNS)])), ("model", classifier)]
    ).fit(frame, labels)
    batch = features_frame(pipeline, rows(200))
    outputs = predict(pipeline, batch)
    assert outputs.predictions == pipeline.predict(batch).tolist()
    assert outputs.probabilities is not None
    assert set(outputs.probabilities[0]) == {str(c) for c in range(classes)}
    assert outputs.probabilities[0] == pytest.approx(
        dict(zip(map(str, pipeline.classes_), pipeline.predict_proba(batch)[0], strict=True))
    )


def test_a_regressor_answers_numbers_without_probabilities() -> None:
    frame, labels = training_data(2)
    model = Ridge().fit(frame, labels.astype(float))
    outputs = predict(model, features_frame(model, rows(3)))
    assert outputs.probabilities is None
    assert all(isinstance(value, float) for value in outputs.predictions)


def test_text_in_a_numeric_column_of_a_model_without_schema_is_invalid_input_without_library_internals() -> (
    None
):
    frame, labels = training_data(2)
    model = LogisticRegression().fit(frame, labels)
    bad = features_frame(model, [{"a": "high", "b": 1.0, "c": 0.0}])
    with pytest.raises(InvalidInputs, match="the model could not use these inputs") as raised:
        predict(model, bad)
    assert "convert" not in str(raised.value), "scikit-learn's own message stays in the log"
