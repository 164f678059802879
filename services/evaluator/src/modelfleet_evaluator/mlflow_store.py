"""The evaluator's view of MLflow: candidate files, the champion, and where verdicts are recorded.

Every call goes through bounded retries with exponential backoff for transient failures (server
errors, timeouts, dropped connections); "does not exist" and bad requests are never retried.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from modelfleet_common.mlflow_calls import RunArtifacts, mlflow_retrying
from modelfleet_contracts import ModelEvaluated

logger = logging.getLogger("modelfleet.evaluator.mlflow")

P = ParamSpec("P")
R = TypeVar("R")

VERDICT_TAG = "modelfleet.verdict"
EVALUATION_DIR = "evaluation"
VERDICT_FILE = "verdict.json"


class ArtifactMissing(Exception):
    """A run or artifact the event points at does not exist in MLflow."""


@dataclass(frozen=True)
class ChampionRef:
    """The version behind the `champion` alias: where its files are and what the registry tagged."""

    version: str
    download_uri: str
    tags: dict[str, str]


def _does_not_exist(error: MlflowException) -> bool:
    return str(error.error_code) == "RESOURCE_DOES_NOT_EXIST"


class MlflowEvaluationStore:
    """`EvaluationStore` on an MLflow tracking server and registry."""

    def __init__(self, tracking_uri: str, *, attempts: int = 3, backoff_seconds: float = 0.5) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.artifacts = RunArtifacts(self.client)
        self._retrying = mlflow_retrying(attempts, backoff_seconds)

    def _call(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self._retrying.copy()(function, *args, **kwargs)
        return result

    def stored_verdict(self, run_id: str) -> ModelEvaluated | None:
        """The verdict already recorded on the run, if its evaluation completed before."""
        try:
            run = self._call(self.client.get_run, run_id)
        except MlflowException as error:
            if _does_not_exist(error):
                raise ArtifactMissing(f"run {run_id} does not exist in MLflow") from error
            raise
        # Every later download and upload of this run needs its artifact root: keep it.
        self.artifacts.remember(run_id, str(run.info.artifact_uri))
        if VERDICT_TAG not in run.data.tags:
            return None
        with tempfile.TemporaryDirectory() as scratch:
            try:
                path = self._call(
                    self.artifacts.download, f"runs:/{run_id}/{EVALUATION_DIR}/{VERDICT_FILE}", Path(scratch)
                )
            except MlflowException as error:
                if _does_not_exist(error):
                    return None  # tagged by an evaluator that kept no verdict file: evaluate again
                raise
            try:
                return ModelEvaluated.model_validate_json(Path(path).read_text())
            except ValidationError:
                # Written by another contract version: evaluating again beats dead-lettering the event.
                logger.warning("recorded verdict is unreadable; evaluating again", extra={"run_id": run_id})
                return None

    def download(self, uri: str, into: Path) -> Path:
        """Copy the artifact(s) at `uri` into `into`; returns the local file or directory."""
        try:
            return self._call(self.artifacts.download, uri, into)
        except MlflowException as error:
            if _does_not_exist(error):
                raise ArtifactMissing(f"{uri} does not exist: {error.message}") from error
            raise

    def champion(self, model: str) -> ChampionRef | None:
        """The current champion of `model`, or None when there is none yet."""
        try:
            registered = self._call(self.client.get_registered_model, model)
        except MlflowException as error:
            if _does_not_exist(error):
                return None
            raise
        version = (registered.aliases or {}).get("champion")
        if version is None:
            return None
        details = self._call(self.client.get_model_version, model, str(version))
        # The version's own storage, not `models:/…`: that download adds a registry metadata file
        # the registry's digest never covered.
        uri = self._call(self.client.get_model_version_download_uri, model, str(version))
        return ChampionRef(version=str(version), download_uri=str(uri), tags=dict(details.tags or {}))

    def record(
        self, run_id: str, files: Sequence[Path], metrics: Mapping[str, float], verdict: ModelEvaluated
    ) -> None:
        """Log the report files, the metrics and the verdict on the run; the verdict tag goes last,
        so it marks a complete record."""
        for path in files:
            self._call(self.artifacts.upload, run_id, path, EVALUATION_DIR)
        with tempfile.TemporaryDirectory() as scratch:
            verdict_path = Path(scratch) / VERDICT_FILE
            verdict_path.write_text(verdict.model_dump_json(indent=2))
            self._call(self.artifacts.upload, run_id, verdict_path, EVALUATION_DIR)
        now = int(time.time() * 1000)
        batch = [Metric(key=key, value=value, timestamp=now, step=0) for key, value in metrics.items()]
        if batch:
            self._call(self.client.log_batch, run_id, metrics=batch)
        self._call(self.client.set_tag, run_id, VERDICT_TAG, "passed" if verdict.passed else "failed")
