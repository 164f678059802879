"""`modelfleet lineage`: the chain dataset version → run → model version → evaluation → deployment.

Read from the MLflow Model Registry, where the registry service writes every link as a
`modelfleet.*` tag on the version; the aliases say where each version is deployed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


class RegistryReader(Protocol):
    """The part of `mlflow.MlflowClient` lineage needs (a fake implements it in tests)."""

    def search_model_versions(self, filter_string: str) -> Any: ...

    def get_registered_model(self, name: str) -> Any: ...


@dataclass(frozen=True)
class VersionLineage:
    """Every link of one model version."""

    version: str
    dataset: str
    dataset_version: str
    run_id: str
    template: str
    spec_revision: str
    code_version: str
    environment_hash: str
    verdict: str
    report_uri: str
    digest: str
    signing_key_id: str
    aliases: tuple[str, ...]
    created_at_ms: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_lineage(client: RegistryReader, model: str) -> list[VersionLineage]:
    """Lineage of every version of `model`, oldest first; empty if the model has no version."""
    versions = client.search_model_versions(f"name='{model}'")
    if not versions:
        return []
    # Search results leave aliases out; the registered model has them all (alias -> version).
    aliases: dict[str, list[str]] = {}
    for alias, version_number in (client.get_registered_model(model).aliases or {}).items():
        aliases.setdefault(str(version_number), []).append(alias)
    chain = []
    for version in versions:
        tags: dict[str, str] = dict(version.tags or {})

        def tag(key: str, tags: dict[str, str] = tags) -> str:
            return tags.get(f"modelfleet.{key}", "")

        template = tag("template")
        if tag("template_version"):
            template = f"{template}@{tag('template_version')}"
        chain.append(
            VersionLineage(
                version=str(version.version),
                dataset=tag("dataset"),
                dataset_version=tag("dataset_version"),
                run_id=str(version.run_id or tag("run_id")),
                template=template,
                spec_revision=tag("spec_revision"),
                code_version=tag("code_version"),
                environment_hash=tag("environment_hash"),
                verdict=tag("verdict"),
                report_uri=tag("report_uri"),
                digest=tag("digest"),
                signing_key_id=tag("signing_key_id"),
                aliases=tuple(sorted(aliases.get(str(version.version), []))),
                created_at_ms=int(version.creation_timestamp or 0),
            )
        )
    return sorted(chain, key=lambda link: int(link.version))
