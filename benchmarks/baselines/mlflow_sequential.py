"""The baseline: train, log and register models one after the other, the way MLflow's docs show.

`mlflow.sklearn.log_model` with an input example, default requirement inference and
`registered_model_name` (https://mlflow.org/docs/latest/ml/model-registry/ - "Adding an MLflow
Model to the Model Registry"). No modelfleet code is imported. Prints one JSON line per model:
{"model", "fit_seconds", "log_seconds"} where log_seconds covers the run, its parameters and
metrics, the model upload and the registration.

    python benchmarks/baselines/mlflow_sequential.py DATA.parquet SEGMENT [SEGMENT ...]
"""

from __future__ import annotations

import json
import sys
import time

import mlflow
import mlflow.sklearn
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = ["x1", "x2", "x3", "x4", "x5", "x6"]
CATEGORICAL = ["channel"]


def pipeline() -> Pipeline:
    features = ColumnTransformer(
        [
            ("numeric", StandardScaler(), NUMERIC),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    return Pipeline([("features", features), ("model", LogisticRegression(C=1.0, max_iter=200))])


def main(data_path: str, segments: list[str]) -> None:
    data = pd.read_parquet(data_path)
    mlflow.set_experiment("baseline-sequential")
    for segment in segments:
        rows = data[data["segment"] == segment]
        x, y = rows[NUMERIC + CATEGORICAL], rows["label"]
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
        started = time.perf_counter()
        model = pipeline().fit(x_train, y_train)
        fitted = time.perf_counter()
        with mlflow.start_run(run_name=f"baseline-{segment}"):
            mlflow.log_params({"C": 1.0, "max_iter": 200, "segment": segment})
            mlflow.log_metrics(
                {
                    "roc_auc": roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]),
                    "accuracy": accuracy_score(y_test, model.predict(x_test)),
                }
            )
            mlflow.sklearn.log_model(
                model,
                name="model",
                input_example=x_train.head(5),
                registered_model_name=f"baseline-{segment}",
            )
        logged = time.perf_counter()
        record = {"model": segment, "fit_seconds": fitted - started, "log_seconds": logged - fitted}
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
