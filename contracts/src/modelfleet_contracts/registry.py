"""Model versions in the registry and the moves of their aliases."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .envelope import Event
from .specs import MODEL_NAME_PATTERN


class ModelRegistered(Event):
    """A candidate became a registry version, with its lineage, digest and signature."""

    event_type: Literal["model.registered"] = "model.registered"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    version: str = Field(description="Registry version.")
    run_id: str = Field(description="MLflow run id it was trained in.")
    model_uri: str = Field(description="MLflow URI of the artifact (`models:/name/version`).")
    digest: str = Field(description="sha256 hex digest of the artifact.")
    signature: str = Field(
        description=(
            "Base64 Ed25519 signature by the registry of the version binding (model, version, "
            "digest, topic prefix; `modelfleet_common.signing.VersionBinding`). Empty when the "
            "version failed its evaluation: failed versions are never signed, so never servable."
        )
    )
    signing_key_id: str = Field(description="Id of the key that signed it; empty when unsigned.")
    passed_evaluation: bool = Field(description="Whether it passed every gate.")
    lineage: dict[str, str] = Field(
        default_factory=dict, description="Dataset version, template, spec revision, code, environment."
    )
    topic_prefix: str | None = Field(
        default=None,
        description=(
            "Topic prefix of the fleet the signature binds the version to. Empty when unsigned, and "
            "in events from registries that signed the digest alone (verifiers refuse those)."
        ),
    )


class ModelPromoted(Event):
    """A version became the champion."""

    event_type: Literal["model.promoted"] = "model.promoted"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    version: str = Field(description="New champion version.")
    previous_version: str | None = Field(default=None, description="Former champion, now last known good.")
    decided_by: str = Field(description="Service or person that decided.")
    reason: str = Field(description="Why, with the numbers.")


class ModelRolledBack(Event):
    """Traffic went back to the last known good version."""

    event_type: Literal["model.rolled_back"] = "model.rolled_back"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    from_version: str = Field(description="Version taken out of traffic.")
    to_version: str | None = Field(description="Version now serving; empty if none is left.")
    decided_by: str = Field(description="Service or person that decided.")
    reason: str = Field(description="Why, with the numbers.")


class ModelArtifactRefused(Event):
    """A service refused to load a version: its files failed the digest, signature or safe-load check.

    The version is never served or compared against; people should treat this as a security
    incident (the artifact store was changed after signing) until shown otherwise.
    """

    event_type: Literal["model.artifact.refused"] = "model.artifact.refused"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    version: str = Field(description="Refused version.")
    model_uri: str = Field(description="Where the refused files were fetched from.")
    digest: str = Field(description="sha256 hex digest the registry signed for this version.")
    reason: str = Field(description="Which check failed, with the digests or the disallowed types.")
