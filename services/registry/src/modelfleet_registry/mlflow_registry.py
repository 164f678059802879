"""The registry's view of MLflow: model files, registered models, versions and aliases.

Every call goes through bounded retries with exponential backoff for transient failures (server
errors, timeouts, dropped connections); "does not exist" and bad requests are never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from modelfleet_common.consumer import PermanentError
from modelfleet_common.mlflow_calls import RunArtifacts, mlflow_retrying

logger = logging.getLogger("modelfleet.registry.mlflow")

P = ParamSpec("P")
R = TypeVar("R")

_POLL_SECONDS = 0.5


class ArtifactMissing(Exception):
    """The artifact an event points at does not exist in MLflow."""


class RegistrationFailed(Exception):
    """MLflow reports the version as FAILED_REGISTRATION."""


class AliasTargetMissing(PermanentError):
    """An alias was to point at a model or version MLflow does not have; retrying cannot help."""


@dataclass(frozen=True)
class VersionInfo:
    """A model version as far as the registry cares."""

    version: str
    status: str
    status_message: str
    tags: dict[str, str]

    @classmethod
    def of(cls, version: ModelVersion) -> VersionInfo:
        return cls(
            version=str(version.version),
            status=str(version.status),
            status_message=str(version.status_message or ""),
            tags=dict(version.tags or {}),
        )


class MlflowModelRegistry:
    """`ModelRegistry` on an MLflow tracking server and model registry."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        ready_timeout_seconds: float = 120,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.artifacts = RunArtifacts(self.client)
        self.ready_timeout_seconds = ready_timeout_seconds
        self._retrying = mlflow_retrying(attempts, backoff_seconds)

    def _call(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self._retrying.copy()(function, *args, **kwargs)
        return result

    def find_version(self, model: str, run_id: str) -> VersionInfo | None:
        """The oldest version of `model` made from run `run_id`, if any (the natural key)."""
        found = self._call(self.client.search_model_versions, f"name='{model}' and run_id='{run_id}'")
        versions = sorted(found, key=lambda v: int(v.version))
        return VersionInfo.of(versions[0]) if versions else None

    def download(self, uri: str, into: Path) -> Path:
        """Copy the artifact(s) at `uri` into `into`; returns the local directory or file."""
        try:
            return self._call(self.artifacts.download, uri, into)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise ArtifactMissing(f"{uri} does not exist: {error.message}") from error
            raise

    def ensure_registered_model(self, model: str, tags: Mapping[str, str], description: str | None) -> None:
        """Create the registered model, or bring its tags and description up to date."""
        try:
            self._call(self.client.create_registered_model, model, tags=dict(tags), description=description)
            return
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        for key, value in tags.items():
            self._call(self.client.set_registered_model_tag, model, key, value)
        if description:
            self._call(self.client.update_registered_model, model, description=description)

    def create_version(self, model: str, source: str, run_id: str, tags: Mapping[str, str]) -> VersionInfo:
        """A new version of `model` from `source`, with its tags, once MLflow reports it READY."""
        created = self._call(self.client.create_model_version, model, source, run_id=run_id, tags=dict(tags))
        return self.wait_until_ready(model, str(created.version))

    def set_version_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) tags of an existing version."""
        for key, value in tags.items():
            self._call(self.client.set_model_version_tag, model, version, key, value)

    def wait_until_ready(self, model: str, version: str) -> VersionInfo:
        """Poll until the version is READY; raises `RegistrationFailed` or `TimeoutError`."""
        deadline = time.monotonic() + self.ready_timeout_seconds
        while True:
            info = VersionInfo.of(self._call(self.client.get_model_version, model, version))
            if info.status == "READY":
                return info
            if info.status == "FAILED_REGISTRATION":
                raise RegistrationFailed(
                    f"{model} version {version} failed to register: {info.status_message}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{model} version {version} is still {info.status} after {self.ready_timeout_seconds}s"
                )
            time.sleep(_POLL_SECONDS)

    def alias_version(self, model: str, alias: str) -> str | None:
        """The version an alias of `model` points at, if it is set."""
        registered = self._call(self.client.get_registered_model, model)
        version = (registered.aliases or {}).get(alias)
        return None if version is None else str(version)

    def set_alias(self, model: str, alias: str, version: str) -> None:
        """Point `alias` of `model` at `version`; raises `AliasTargetMissing` if either is unknown."""
        try:
            self._call(self.client.set_registered_model_alias, model, alias, version)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise AliasTargetMissing(
                    f"cannot point {model}@{alias} at version {version}: {error.message}"
                ) from error
            raise

    def delete_alias(self, model: str, alias: str) -> None:
        """Remove `alias` of `model`; removing an alias that is not set is not an error."""
        try:
            self._call(self.client.delete_registered_model_alias, model, alias)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
