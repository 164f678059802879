"""MLflow calls the way every modelfleet service makes them: bounded retries of transient
failures, and run artifact locations resolved once per run.

Only services that talk to MLflow import this module (it needs the `mlflow` package).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

logger = logging.getLogger("modelfleet.mlflow")

#: MLflow error codes worth another try; every other MlflowException is permanent.
TRANSIENT_ERROR_CODES = frozenset(
    {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "ABORTED"}
)


def is_transient(error: BaseException) -> bool:
    """Whether an MLflow failure may go away on its own (server errors, timeouts, dropped links)."""
    if isinstance(error, MlflowException):
        return str(error.error_code) in TRANSIENT_ERROR_CODES
    return isinstance(error, requests.RequestException | ConnectionError | TimeoutError)


def mlflow_retrying(attempts: int, backoff_seconds: float) -> Retrying:
    """Retries of transient MLflow failures with exponential backoff, logged; the last error is raised."""

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "MLflow call failed, retrying", extra={"attempt": state.attempt_number, "error": repr(error)}
        )

    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=backoff_seconds, max=30),
        retry=retry_if_exception(is_transient),
        before_sleep=log_retry,
        reraise=True,
    )


class RunArtifacts:
    """Downloads and uploads of run artifacts without a run lookup per call.

    MLflow resolves every `runs:/<run>/<path>` by fetching the whole run (parameters, tags,
    dataset inputs with their schema); at fleet scale those lookups were the tracking server's
    largest cost. A run's artifact root never changes, so it is looked up once and kept.
    """

    def __init__(self, client: MlflowClient, capacity: int = 4096) -> None:
        self.client = client
        self.capacity = capacity
        self._roots: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def root(self, run_id: str) -> str:
        """The artifact root URI of a run (e.g. `mlflow-artifacts:/1/<run>/artifacts`)."""
        with self._lock:
            if run_id in self._roots:
                self._roots.move_to_end(run_id)
                return self._roots[run_id]
        root = str(self.client.get_run(run_id).info.artifact_uri).rstrip("/")
        self.remember(run_id, root)
        return root

    def remember(self, run_id: str, artifact_root: str) -> None:
        """Keep a root the caller already has (from a run it fetched anyway)."""
        with self._lock:
            self._roots[run_id] = artifact_root.rstrip("/")
            while len(self._roots) > self.capacity:
                self._roots.popitem(last=False)

    def resolve(self, uri: str) -> str:
        """`runs:/<run>/<path>` as the artifact store's own URI; any other URI unchanged."""
        if not uri.startswith("runs:/"):
            return uri
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        return f"{self.root(run_id)}/{path}" if path else self.root(run_id)

    def download(self, uri: str, into: Path) -> Path:
        """Copy the file or directory at `uri` into `into`; returns the local path."""
        resolved = self.resolve(uri)
        parent, _, name = resolved.rpartition("/")
        repository = get_artifact_repository(parent, tracking_uri=self.client.tracking_uri)
        into.mkdir(parents=True, exist_ok=True)
        return Path(repository.download_artifacts(name, dst_path=str(into)))  # type: ignore[no-untyped-call]

    def upload(self, run_id: str, local_path: Path, artifact_path: str) -> None:
        """Put a local file under `artifact_path` of the run."""
        repository = get_artifact_repository(self.root(run_id), tracking_uri=self.client.tracking_uri)
        repository.log_artifact(str(local_path), artifact_path)  # type: ignore[no-untyped-call]
