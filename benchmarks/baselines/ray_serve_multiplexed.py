"""The baseline of `benchmarks/serving.py`: the same models served by Ray Serve model multiplexing.

One deployment whose replicas load models on demand with `@serve.multiplexed`
(https://docs.ray.io/en/latest/serve/model-multiplexing.html): the model id comes in the
`serve_multiplexed_model_id` header, `serve.get_multiplexed_model_id()` reads it, and each replica
keeps at most `--max-models` models (LRU). Ingress is Ray Serve's own HTTP proxy.

A cold load does what MLflow's own loader does for a skops model and no more: download the
version's `model/` directory from the same MLflow server over HTTP (the `runs:/` URI serving also
uses), read `skops_trusted_types` from its MLmodel file and `skops.io.load` with those types. It
does *not* recompute the directory digest nor check an Ed25519 signature as modelfleet serving does
(for these ~10 KB directories that is a sha256 of a few files and one signature check, well under a
millisecond). Answers carry the same fields as modelfleet's (`predictions`, `probabilities`).

No modelfleet code is imported: it runs in its own virtualenv (`ray[serve]`, scikit-learn, skops,
mlflow-skinny, pandas), created by `benchmarks/serving.py` on first use.

    python ray_serve_multiplexed.py --port 8000 --tracking-uri http://127.0.0.1:5000 \\
        --models-file models.json --max-models 1000 [--replicas 1]

`models.json` maps model name → `runs:/<run_id>/model`. Prints `READY` once the application
answers, then serves until its standard input closes or it gets SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import skops.io
import yaml
from mlflow.artifacts import download_artifacts
from ray import serve
from sklearn.base import is_classifier
from starlette.requests import Request
from starlette.responses import JSONResponse


def load_model(model_uri: str, tracking_uri: str) -> Any:
    """Download a logged skops model and load it with the trusted types its MLmodel declares."""
    with tempfile.TemporaryDirectory(prefix="rayserve-model-") as scratch:
        local = Path(download_artifacts(artifact_uri=model_uri, dst_path=scratch, tracking_uri=tracking_uri))
        flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["sklearn"]
        return skops.io.load(local / flavor["pickled_model"], trusted=flavor["skops_trusted_types"])


def answer(estimator: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Predictions (and class probabilities) for `rows`, in modelfleet serving's answer format."""
    columns = [str(name) for name in estimator.feature_names_in_]
    frame = pd.DataFrame([[row[column] for column in columns] for row in rows], columns=columns)
    result: dict[str, Any] = {"predictions": np.asarray(estimator.predict(frame)).tolist()}
    if is_classifier(estimator):
        classes = [str(label) for label in np.asarray(estimator.classes_).tolist()]
        result["probabilities"] = [
            dict(zip(classes, row, strict=True))
            for row in np.asarray(estimator.predict_proba(frame)).tolist()
        ]
    return result


def build_app(
    *, tracking_uri: str, models: dict[str, str], max_models: int, replicas: int, max_ongoing: int
) -> Any:
    """The multiplexed deployment; built in a function because the model cap is a decorator argument."""

    @serve.deployment(
        num_replicas=replicas,
        max_ongoing_requests=max_ongoing,
        # Logical CPUs only decide placement; 0 lets any replica count fit the 2-core machine.
        ray_actor_options={"num_cpus": 0},
        # modelfleet serving writes no access log either.
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )
    class MultiplexedModels:
        def __init__(self) -> None:
            self.models = models

        @serve.multiplexed(max_num_models_per_replica=max_models)  # type: ignore[untyped-decorator]
        async def get_model(self, model_id: str) -> Any:
            # A thread, so a download does not stall the replica's other requests.
            return await asyncio.to_thread(load_model, self.models[model_id], tracking_uri)

        async def __call__(self, request: Request) -> JSONResponse:
            model_id = serve.get_multiplexed_model_id()
            if model_id not in self.models:
                return JSONResponse({"error": f"unknown model {model_id!r}"}, status_code=404)
            body = await request.json()
            estimator = await self.get_model(model_id)
            result = answer(estimator, body["inputs"])
            return JSONResponse({"model": model_id, **result})

    return MultiplexedModels.bind()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True, help="HTTP port of Ray Serve's proxy.")
    parser.add_argument("--tracking-uri", required=True, help="MLflow server holding the models.")
    parser.add_argument("--models-file", type=Path, required=True, help="JSON: model name → runs:/ URI.")
    parser.add_argument("--max-models", type=int, required=True, help="max_num_models_per_replica.")
    parser.add_argument("--replicas", type=int, default=1, help="Replicas of the deployment.")
    parser.add_argument("--max-ongoing", type=int, default=32, help="max_ongoing_requests per replica.")
    args = parser.parse_args()

    models = json.loads(args.models_file.read_text())
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(
        build_app(
            tracking_uri=args.tracking_uri,
            models=models,
            max_models=args.max_models,
            replicas=args.replicas,
            max_ongoing=args.max_ongoing,
        ),
        name="bench",
        route_prefix="/predict",
    )
    print("READY", flush=True)

    stop = threading.Event()

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        stop.set()

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    stop.wait()
    serve.shutdown()  # type: ignore[no-untyped-call]
    ray.shutdown()


if __name__ == "__main__":
    main()
