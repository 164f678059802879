"""The MLflow side of a training: experiment, run, lineage tags, inputs, model and holdout.

Follows the layout of `docs/assembly-line.md`. It talks to MLflow through `MlflowClient` with
batched calls and saves the model with `mlflow.sklearn.save_model` into a temporary directory
(no input-example round trip, no requirement inference), then uploads everything in one
`log_artifacts` call. That keeps MLflow's share of a training at tens of milliseconds instead
of the seconds `mlflow.sklearn.log_model` costs.
"""

from __future__ import annotations

import functools
import json
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.sklearn
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from modelfleet_common.signing import directory_digest

from .domain import TrainingJob
from .fitting import FittedModel
from .provenance import Provenance, model_requirements
from .templates import PipelineTemplate, TemplateParams

#: Artifact paths inside a run (shared with the evaluator and registry).
MODEL_PATH = "model"
HOLDOUT_PATH = "evaluation/holdout.parquet"
SPEC_PATH = "modelfleet/spec.json"

#: Longest dataset digest MLflow stores; a dataset version (sha256 hex) is cut to it.
MLFLOW_DIGEST_LENGTH = 36
#: Dataset versions whose MLflow schema a worker keeps (one version usually feeds many models).
DATASET_ENTITY_CACHE_SIZE = 16

# A plain path matches two equivalent local dataset sources; MLflow warns and picks one.
warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
# The signature is documentation here (serving loads the sklearn flavour, not pyfunc).
warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")


@dataclass(frozen=True)
class LoggedModel:
    """Where a training's model and holdout are, and the digest of the model's files."""

    model_uri: str
    holdout_uri: str
    artifact_digest: str


def experiment_name(model: str) -> str:
    return f"modelfleet/{model}"


class MlflowTracking:
    """Runs of one MLflow tracking server; experiment ids are cached per process."""

    def __init__(self, tracking_uri: str, artifact_root: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root.rstrip("/") if artifact_root else None
        self.client = MlflowClient(tracking_uri)
        self._experiments: dict[str, str] = {}
        self._dataset_entities: OrderedDict[tuple[str, str], DatasetEntity] = OrderedDict()
        self._lock = threading.Lock()

    def experiment_id(self, model: str) -> str:
        """Id of `modelfleet/<model>`, created on first use."""
        with self._lock:
            cached = self._experiments.get(model)
        if cached is not None:
            return cached
        name = experiment_name(model)
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            experiment_id = str(existing.experiment_id)
        else:
            location = f"{self.artifact_root}/{model}" if self.artifact_root else None
            try:
                experiment_id = self.client.create_experiment(name, artifact_location=location)
            except MlflowException as error:
                # Another trainer (or thread) created it in between: use theirs.
                if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                    raise
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
                experiment_id = str(found.experiment_id)
        with self._lock:
            self._experiments[model] = experiment_id
        return experiment_id

    def start_run(self, job: TrainingJob, attempt: int, provenance: Provenance) -> str:
        """A new run for one attempt of `job`, tagged with its lineage; returns the run id."""
        tags = {
            **job.run_tags(),
            "modelfleet.code_version": provenance.code_version,
            "modelfleet.environment_hash": provenance.environment_hash,
        }
        run = self.client.create_run(
            self.experiment_id(job.model),
            tags=tags,
            run_name=f"{job.model}-{job.data.version[:8]}-{attempt}",
        )
        return str(run.info.run_id)

    def fail_run(self, run_id: str, message: str) -> None:
        """Mark the run FAILED with the reason as tag `modelfleet.error`."""
        self.client.set_tag(run_id, "modelfleet.error", message[:4000])
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))

    def log_training(
        self,
        run_id: str,
        job: TrainingJob,
        template: PipelineTemplate[Any],
        params: TemplateParams,
        fitted: FittedModel,
        version_frame: pd.DataFrame,
    ) -> LoggedModel:
        """Log params, metrics, dataset input, model, holdout and spec; finish the run."""
        now_ms = int(time.time() * 1000)
        logged_params = [
            Param(name, _param_text(value)) for name, value in params.model_dump(mode="json").items()
        ]
        logged_params += [
            Param("data.train_rows", str(fitted.train_rows)),
            Param("data.holdout_rows", str(len(fitted.holdout))),
        ]
        self.client.log_batch(
            run_id,
            metrics=[Metric(name, value, now_ms, 0) for name, value in sorted(fitted.metrics.items())],
            params=logged_params,
            tags=[RunTag("modelfleet.task", template.task)],
            synchronous=True,
        )
        self._log_dataset_input(run_id, job, version_frame)

        with tempfile.TemporaryDirectory(prefix="modelfleet-run-") as scratch:
            root = Path(scratch)
            model_dir = root / MODEL_PATH
            mlflow.sklearn.save_model(
                fitted.pipeline,
                str(model_dir),
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=list(template.trusted_types),
                pip_requirements=list(model_requirements()),
                signature=infer_signature(
                    fitted.input_example, fitted.pipeline.predict(fitted.input_example)
                ),
            )
            digest = directory_digest(model_dir)
            (root / HOLDOUT_PATH).parent.mkdir(parents=True)
            fitted.holdout.to_parquet(root / HOLDOUT_PATH, index=False)
            (root / SPEC_PATH).parent.mkdir(parents=True)
            (root / SPEC_PATH).write_text(job.spec.model_dump_json(by_alias=True, indent=2))
            # One upload for all three: each call is a round trip to the server.
            self.client.log_artifacts(run_id, str(root))

        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
        return LoggedModel(
            model_uri=f"runs:/{run_id}/{MODEL_PATH}",
            holdout_uri=f"runs:/{run_id}/{HOLDOUT_PATH}",
            artifact_digest=digest,
        )

    def _dataset_entity(self, job: TrainingJob, version_frame: pd.DataFrame) -> DatasetEntity:
        """The MLflow dataset of a version, built once per version and target.

        MLflow infers the schema by visiting every value of the frame; for a version shared by
        hundreds of models (one slice each) that scan, not the fit, dominated a training task.
        """
        key = (job.data.version, job.spec.spec.target)
        with self._lock:
            cached = self._dataset_entities.get(key)
        if cached is not None:
            return cached
        entity = from_pandas(
            version_frame,
            source=job.data.uri,
            name=job.data.dataset,
            # MLflow caps digests at 36 characters; the full version is the input tag below.
            digest=job.data.version[:MLFLOW_DIGEST_LENGTH],
            targets=job.spec.spec.target,
        )._to_mlflow_entity()
        with self._lock:
            self._dataset_entities[key] = entity
            while len(self._dataset_entities) > DATASET_ENTITY_CACHE_SIZE:
                self._dataset_entities.popitem(last=False)
        return entity

    def _log_dataset_input(self, run_id: str, job: TrainingJob, version_frame: pd.DataFrame) -> None:
        dataset = self._dataset_entity(job, version_frame)
        tags = [
            InputTag(MLFLOW_DATASET_CONTEXT, "training"),
            InputTag("modelfleet.dataset_version", job.data.version),
        ]
        if job.spec.spec.dataset.where:
            tags.append(InputTag("modelfleet.where", json.dumps(job.spec.spec.dataset.where, sort_keys=True)))
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=tags)])


def _param_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@functools.cache
def tracking_for(tracking_uri: str, artifact_root: str | None) -> MlflowTracking:
    """One `MlflowTracking` per process and server, so experiment ids stay cached across tasks."""
    return MlflowTracking(tracking_uri, artifact_root)
