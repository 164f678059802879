"""Registering one evaluated candidate: verify its files, create the version, sign it if it passed.

The digest signed is the one the registry computes itself from the run's files in MLflow, never
the event's word: a candidate whose files differ from the digest it was evaluated with is refused.
What is signed is the `VersionBinding` (model, the version MLflow assigned, that digest, this
fleet's topic prefix), and only for a version that passed its evaluation: a failed candidate is
registered (for the record) with no signature, so no verifier will ever load it.

Blocking work (MLflow): the handler runs `Registrar.register` in a thread.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelfleet_common.consumer import PermanentError
from modelfleet_common.signing import ArtifactSigner, VersionBinding, directory_digest
from modelfleet_contracts import ModelEvaluated, ModelRegistered

from .domain import (
    CHALLENGER,
    DIGEST_TAG,
    VERDICT_TAG,
    challenger_moves_to,
    is_run_artifact,
    is_signed_for,
    is_valid_run_id,
    registered_model_tags,
    registration_from_tags,
    signature_tags,
    version_tags,
)
from .mlflow_registry import ArtifactMissing, RegistrationFailed, VersionInfo

logger = logging.getLogger("modelfleet.registry")


class ModelRegistry(Protocol):
    """The model registry and artifact store (MLflow; a fake in tests)."""

    def find_version(self, model: str, run_id: str) -> VersionInfo | None: ...

    def download(self, uri: str, into: Path) -> Path: ...

    def ensure_registered_model(
        self, model: str, tags: Mapping[str, str], description: str | None
    ) -> None: ...

    def create_version(
        self, model: str, source: str, run_id: str, tags: Mapping[str, str]
    ) -> VersionInfo: ...

    def wait_until_ready(self, model: str, version: str) -> VersionInfo: ...

    def set_version_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None: ...

    def alias_version(self, model: str, alias: str) -> str | None: ...

    def set_alias(self, model: str, alias: str, version: str) -> None: ...


@dataclass
class Registrar:
    """Turns evaluated candidates into registry versions, one per (model, run), signed if they passed."""

    registry: ModelRegistry
    signer: ArtifactSigner
    #: This fleet's topic prefix: part of what every signature binds.
    topic_prefix: str

    def register(self, event: ModelEvaluated) -> ModelRegistered:
        """The registration of the candidate; an existing version of the run is reused, never doubled.

        Raises `PermanentError` (dead-lettered with the reason) when the candidate must not be
        registered: no digest to check, a malformed run id, missing files, or files that differ
        from the digest the trainer and evaluator vouched for.
        """
        if not event.artifact_digest:
            raise PermanentError(
                f"evaluation of {event.model} run {event.run_id} carries no artifact_digest: "
                "its files cannot be verified, so they are not registered"
            )
        if not is_valid_run_id(event.run_id):
            raise PermanentError(f"run id {event.run_id!r} is not an MLflow run id")
        if not is_run_artifact(event.model_uri, event.run_id):
            # One version per run is the natural key: a model from elsewhere would break it.
            raise PermanentError(f"model_uri {event.model_uri!r} is not an artifact of run {event.run_id}")
        existing = self.registry.find_version(event.model, event.run_id)
        if existing is not None:
            return self._resume(event, existing)
        digest = self._verified_digest(event, event.artifact_digest)
        self.registry.ensure_registered_model(
            event.model, registered_model_tags(event.lineage), event.lineage.get("purpose") or None
        )
        tags = version_tags(event, digest=digest)
        try:
            created = self.registry.create_version(event.model, event.model_uri, event.run_id, tags)
        except RegistrationFailed as error:
            raise PermanentError(str(error)) from error
        # A crash before the signature is tagged leaves an unsigned (unservable) version; the
        # redelivery finds it in `_resume` and signs it then.
        signed = self._sign(event.model, created.version, digest) if event.passed else {}
        self._maybe_challenger(event, created.version)
        logger.info(
            "model version registered",
            extra={
                "model": event.model,
                "version": created.version,
                "run_id": event.run_id,
                "passed": event.passed,
                "signed": bool(signed),
            },
        )
        return registration_from_tags(event, created.version, {**tags, **signed})

    def _sign(self, model: str, version: str, digest: str) -> dict[str, str]:
        """Sign the binding of a passing version, tag it on the version, return the tags."""
        binding = VersionBinding(model=model, version=version, digest=digest, topic_prefix=self.topic_prefix)
        tags = signature_tags(
            self.signer.sign(binding), signing_key_id=self.signer.key_id, topic_prefix=self.topic_prefix
        )
        self.registry.set_version_tags(model, version, tags)
        return tags

    def _verified_digest(self, event: ModelEvaluated, expected: str) -> str:
        with tempfile.TemporaryDirectory(prefix="modelfleet-registry-") as scratch:
            try:
                directory = self.registry.download(event.model_uri, Path(scratch))
            except ArtifactMissing as error:
                raise PermanentError(f"cannot register {event.model} run {event.run_id}: {error}") from error
            actual = directory_digest(directory)
        if actual != expected:
            raise PermanentError(
                f"refusing to register {event.model} run {event.run_id}: its files digest to {actual[:12]}… "
                f"but the evaluated artifact was {expected[:12]}…; the stored model changed after evaluation"
            )
        return actual

    def _resume(self, event: ModelEvaluated, existing: VersionInfo) -> ModelRegistered:
        # Reached after a crash between creating the version and recording the mark, or after the
        # local state was lost: finish what is missing and announce the same registration again.
        try:
            ready = self.registry.wait_until_ready(event.model, existing.version)
        except RegistrationFailed as error:
            raise PermanentError(str(error)) from error
        tags = dict(ready.tags)
        passed = tags.get(VERDICT_TAG) == "passed"
        if passed and tags.get(DIGEST_TAG) and not is_signed_for(tags, self.topic_prefix):
            # Created but not yet signed (a crash in between), or signed in an older format.
            tags |= self._sign(event.model, ready.version, tags[DIGEST_TAG])
        try:
            found = registration_from_tags(event, ready.version, tags)
        except ValueError as error:
            raise PermanentError(str(error)) from error
        self._maybe_challenger(event, ready.version, passed=found.passed_evaluation)
        logger.info(
            "run already registered; announcing the existing version",
            extra={"model": event.model, "version": ready.version, "run_id": event.run_id},
        )
        return found

    def _maybe_challenger(self, event: ModelEvaluated, version: str, *, passed: bool | None = None) -> None:
        if not (event.passed if passed is None else passed):
            return
        if challenger_moves_to(self.registry.alias_version(event.model, CHALLENGER), version):
            self.registry.set_alias(event.model, CHALLENGER, version)
