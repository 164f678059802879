"""Pure rules of the registry: what a version records, and how a registration is rebuilt from it."""

from __future__ import annotations

import re
from collections.abc import Mapping

from modelfleet_common.signing import BINDING_STATEMENT
from modelfleet_contracts import ModelEvaluated, ModelRegistered

SERVICE = "registry"
TAG_PREFIX = "modelfleet."
DIGEST_TAG = "modelfleet.digest"
SIGNATURE_TAG = "modelfleet.signature"
KEY_ID_TAG = "modelfleet.signing_key_id"
#: The format of the signed statement (`signing.BINDING_STATEMENT`) and the topic prefix it binds.
STATEMENT_TAG = "modelfleet.signed_statement"
SIGNED_PREFIX_TAG = "modelfleet.signed_topic_prefix"
VERDICT_TAG = "modelfleet.verdict"
REPORT_TAG = "modelfleet.report_uri"
CHALLENGER = "challenger"
#: MLflow's own run id format; anything else must not reach a registry search filter.
RUN_ID_PATTERN = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")


def is_valid_run_id(run_id: str) -> bool:
    """Whether `run_id` looks like an MLflow run id (and is safe inside a search filter)."""
    return RUN_ID_PATTERN.fullmatch(run_id) is not None


def is_run_artifact(model_uri: str, run_id: str) -> bool:
    """Whether `model_uri` is an artifact of run `run_id` (`runs:/<run_id>/…`), as the layout requires."""
    return model_uri.startswith(f"runs:/{run_id}/") and len(model_uri) > len(f"runs:/{run_id}/")


def version_tags(event: ModelEvaluated, *, digest: str) -> dict[str, str]:
    """Every lineage entry as `modelfleet.<key>`, plus the verified digest and the verdict.

    The signature is not among them: it binds the version number, which MLflow assigns when the
    version is created (see `signature_tags`).
    """
    tags = {f"{TAG_PREFIX}{key}": value for key, value in event.lineage.items()}
    tags |= {DIGEST_TAG: digest, VERDICT_TAG: "passed" if event.passed else "failed"}
    if event.report_uri:
        tags[REPORT_TAG] = event.report_uri
    return tags


def signature_tags(signature: str, *, signing_key_id: str, topic_prefix: str) -> dict[str, str]:
    """The tags of a passing version's signature: what a verifier needs besides the version itself."""
    return {
        SIGNATURE_TAG: signature,
        KEY_ID_TAG: signing_key_id,
        STATEMENT_TAG: BINDING_STATEMENT,
        SIGNED_PREFIX_TAG: topic_prefix,
    }


def is_signed_for(tags: Mapping[str, str], topic_prefix: str) -> bool:
    """Whether a version's tags hold a signature of the current statement format for this fleet."""
    return (
        bool(tags.get(SIGNATURE_TAG))
        and bool(tags.get(KEY_ID_TAG))
        and tags.get(STATEMENT_TAG) == BINDING_STATEMENT
        and tags.get(SIGNED_PREFIX_TAG) == topic_prefix
    )


def registered_model_tags(lineage: Mapping[str, str]) -> dict[str, str]:
    """Owner and risk class of the model, from the lineage (when known)."""
    return {f"{TAG_PREFIX}{key}": lineage[key] for key in ("owner", "risk_class") if lineage.get(key)}


def registration(
    event: ModelEvaluated,
    *,
    version: str,
    digest: str,
    passed: bool,
    signature: str = "",
    signing_key_id: str = "",
    topic_prefix: str | None = None,
) -> ModelRegistered:
    """The `ModelRegistered` of version `version` of the evaluated candidate (unsigned when failed)."""
    return ModelRegistered(
        producer=SERVICE,
        model=event.model,
        version=version,
        run_id=event.run_id,
        model_uri=f"models:/{event.model}/{version}",
        digest=digest,
        signature=signature,
        signing_key_id=signing_key_id,
        passed_evaluation=passed,
        lineage=dict(event.lineage),
        topic_prefix=topic_prefix,
        **event.caused(),
    )


def registration_from_tags(event: ModelEvaluated, version: str, tags: Mapping[str, str]) -> ModelRegistered:
    """The registration an existing version records; raises ValueError if modelfleet did not make it.

    A failed version is announced unsigned, even if a registry of an older release signed it.
    """
    missing = sorted(tag for tag in (DIGEST_TAG, VERDICT_TAG) if not tags.get(tag))
    passed = tags.get(VERDICT_TAG) == "passed"
    if passed:
        missing += sorted(tag for tag in (SIGNATURE_TAG, KEY_ID_TAG, SIGNED_PREFIX_TAG) if tag not in tags)
    if missing:
        raise ValueError(
            f"version {version} of {event.model} for run {event.run_id} lacks {', '.join(missing)}: "
            "it was not registered by modelfleet; delete it or register the run again"
        )
    if not passed:
        return registration(event, version=version, digest=tags[DIGEST_TAG], passed=False)
    return registration(
        event,
        version=version,
        digest=tags[DIGEST_TAG],
        passed=True,
        signature=tags[SIGNATURE_TAG],
        signing_key_id=tags[KEY_ID_TAG],
        topic_prefix=tags[SIGNED_PREFIX_TAG],
    )


def challenger_moves_to(current: str | None, candidate: str) -> bool:
    """The challenger alias only moves forward: a redelivered older version never takes it back."""
    return current is None or int(candidate) >= int(current)
