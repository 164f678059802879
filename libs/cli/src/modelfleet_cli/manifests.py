"""Loading the documents people write: `Dataset`, `ModelSpec` and `ModelFleet` YAML files.

A file is all or nothing: if any document in it is invalid, nothing of that file is applied, and
every problem is reported with its file, document number and field. A `ModelFleet` expands its
template over the matrix (`${axis}` placeholders, `string.Template` rules) into one `ModelSpec`
per combination.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, JsonValue, ValidationError

from modelfleet_common.policies import InvalidPolicy, PolicyFloorError, policy_of_spec
from modelfleet_contracts import DatasetSpec, ModelFleet, ModelSpec, RiskPolicy
from modelfleet_contracts.specs import RiskClass

KINDS = ("Dataset", "ModelSpec", "ModelFleet")
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Problem:
    """One reason a document is refused."""

    file: Path
    document: int
    field: str
    message: str


@dataclass(frozen=True)
class DeclaredDataset:
    """A valid `Dataset` document, where it came from, and its first batch (if declared)."""

    spec: DatasetSpec
    revision: str
    file: Path
    source_uri: str | None


@dataclass(frozen=True)
class DeclaredModel:
    """A valid `ModelSpec`, written directly or expanded from a `ModelFleet`."""

    spec: ModelSpec
    revision: str
    file: Path
    origin: str


@dataclass
class Manifest:
    """Everything found under a path, with the problems of the files that were refused."""

    datasets: list[DeclaredDataset] = field(default_factory=list)
    models: list[DeclaredModel] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def refused_files(self) -> list[Path]:
        return sorted({problem.file for problem in self.problems})

    def extend(self, other: Manifest) -> None:
        self.datasets += other.datasets
        self.models += other.models
        self.problems += other.problems


def revision(document: BaseModel) -> str:
    """Content hash of a document's canonical JSON (aliases, defaults, sorted keys)."""
    canonical = json.dumps(
        document.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def manifest_files(path: Path) -> list[Path]:
    """The YAML files of `path`: the file itself, or every `*.yaml`/`*.yml` below a directory."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    return sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())


def load_path(path: Path) -> Manifest:
    """Load every document under `path`, then check what spans files (names, dataset columns)."""
    manifest = Manifest()
    for file in manifest_files(path):
        manifest.extend(load_file(file))
    _refuse_duplicate_names(manifest)
    return manifest


def load_file(file: Path) -> Manifest:
    """Every document of one file, or none of them and the file's problems."""
    found = Manifest()
    try:
        documents = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "file"
        return Manifest(problems=[Problem(file, 0, where, f"not valid YAML: {error}")])
    for number, document in enumerate(documents, start=1):
        found.extend(_load_document(file, number, document))
    if found.problems:
        return Manifest(problems=found.problems)
    return found


def _load_document(file: Path, number: int, document: Any) -> Manifest:
    if not isinstance(document, dict):
        return Manifest(problems=[Problem(file, number, "(document)", "expected a mapping with `kind`")])
    kind = document.get("kind")
    if kind == "Dataset":
        return _load_dataset(file, number, document)
    if kind == "ModelSpec":
        return _load_model(file, number, document, origin=f"{file.name}#{number}")
    if kind == "ModelFleet":
        return _load_fleet(file, number, document)
    return Manifest(
        problems=[Problem(file, number, "kind", f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")]
    )


def _problems(file: Path, number: int, error: ValidationError, prefix: str = "") -> list[Problem]:
    problems = []
    for detail in error.errors():
        location = ".".join(str(part) for part in detail["loc"]) or "(document)"
        problems.append(Problem(file, number, prefix + location, detail["msg"]))
    return problems


def _load_dataset(file: Path, number: int, document: dict[str, Any]) -> Manifest:
    try:
        spec = DatasetSpec.model_validate(document)
    except ValidationError as error:
        return Manifest(problems=_problems(file, number, error))
    source_uri = None
    if spec.spec.source:
        source_uri = _resolve_source(file, spec.spec.source)
        if "://" not in source_uri and not Path(source_uri).is_file():
            return Manifest(problems=[Problem(file, number, "spec.source", f"{source_uri} does not exist")])
    return Manifest(datasets=[DeclaredDataset(spec, revision(spec), file, source_uri)])


def _resolve_source(file: Path, source: str) -> str:
    if "://" in source:
        return source
    return str((file.parent / source).resolve())


def _load_model(file: Path, number: int, document: dict[str, Any], origin: str, prefix: str = "") -> Manifest:
    try:
        spec = ModelSpec.model_validate(document)
    except ValidationError as error:
        return Manifest(problems=_problems(file, number, error, prefix))
    return Manifest(models=[DeclaredModel(spec, revision(spec), file, origin)])


def _load_fleet(file: Path, number: int, document: dict[str, Any]) -> Manifest:
    try:
        fleet = ModelFleet.model_validate(document)
    except ValidationError as error:
        return Manifest(problems=_problems(file, number, error))
    found = Manifest()
    for combination in combinations(fleet.spec.matrix):
        label = ",".join(f"{axis}={value}" for axis, value in combination.items())
        try:
            expanded = substitute(fleet.spec.template, combination)
        except (KeyError, ValueError) as error:
            message = error.args[0] if error.args else str(error)
            return Manifest(problems=[Problem(file, number, "spec.template", str(message))])
        found.extend(
            _load_model(
                file,
                number,
                expanded if isinstance(expanded, dict) else {},
                origin=f"{fleet.metadata.name}[{label}]",
                prefix=f"[{label}] ",
            )
        )
    return found


def combinations(matrix: Mapping[str, list[str | int | float]]) -> Iterator[dict[str, str | int | float]]:
    """Every combination of the matrix's axes, in the order the axes and values are written."""
    axes = list(matrix)
    for values in itertools.product(*(matrix[axis] for axis in axes)):
        yield dict(zip(axes, values, strict=True))


def substitute(value: JsonValue, combination: Mapping[str, str | int | float]) -> JsonValue:
    """Replace `${axis}` in every string of `value`; a string that is exactly one placeholder
    takes the axis value with its type (so numeric axes stay numbers)."""
    if isinstance(value, str):
        for axis, axis_value in combination.items():
            if value in (f"${{{axis}}}", f"${axis}"):
                return axis_value
        try:
            return string.Template(value).substitute(combination)
        except KeyError as error:
            known = ", ".join(f"${{{axis}}}" for axis in combination)
            raise KeyError(f"placeholder ${{{error.args[0]}}} is not a matrix axis (axes: {known})") from None
        except ValueError as error:
            raise ValueError(f"bad placeholder in {value!r}: {error}; write $$ for a literal $") from None
    if isinstance(value, list):
        return [substitute(item, combination) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, combination) for key, item in value.items()}
    return value


def _refuse_duplicate_names(manifest: Manifest) -> None:
    """Two documents declaring the same model or dataset: refuse both files, say where each is."""
    for kind, entries in (
        ("model", [(m.spec.metadata.name, m.file, m.origin) for m in manifest.models]),
        ("dataset", [(d.spec.metadata.name, d.file, d.file.name) for d in manifest.datasets]),
    ):
        seen: dict[str, list[tuple[Path, str]]] = {}
        for name, file, origin in entries:
            seen.setdefault(name, []).append((file, origin))
        for name, places in seen.items():
            if len(places) > 1:
                where = "; ".join(origin for _, origin in places)
                for file, _ in places:
                    manifest.problems.append(
                        Problem(
                            file,
                            0,
                            "metadata.name",
                            f"{kind} {name!r} is declared {len(places)} times: {where}",
                        )
                    )
    drop_refused(manifest)


def drop_refused(manifest: Manifest) -> None:
    """Keep files all-or-nothing: drop every document of a file that has a problem."""
    refused = set(manifest.refused_files)
    manifest.datasets = [d for d in manifest.datasets if d.file not in refused]
    manifest.models = [m for m in manifest.models if m.file not in refused]


def check_policies(manifest: Manifest, policies: Mapping[RiskClass, RiskPolicy]) -> None:
    """Each model must keep its risk policy's floors (and make sense): refuse a file whose spec
    loosens one, naming the field, the spec's value and the floor."""
    for model in manifest.models:
        prefix = f"[{model.origin}] spec."
        try:
            policy_of_spec(policies, model.spec)
        except PolicyFloorError as refused:
            for violation in refused.violations:
                manifest.problems.append(
                    Problem(
                        model.file,
                        0,
                        prefix + violation.field,
                        f"{_shown(violation.value)} loosens the {refused.risk_class} risk policy's floor "
                        f"{_shown(violation.floor)} ({violation.rule})",
                    )
                )
        except InvalidPolicy as error:
            manifest.problems.append(Problem(model.file, 0, prefix + "rollout.canary_steps", str(error)))
    drop_refused(manifest)


def _shown(value: object) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def check_columns(manifest: Manifest, known: Mapping[str, DatasetSpec]) -> None:
    """Each model must name a declared dataset and only its columns (features, target, cohorts, where)."""
    declared = dict(known) | {d.spec.metadata.name: d.spec for d in manifest.datasets}
    for model in manifest.models:
        body = model.spec.spec
        dataset = declared.get(body.dataset.name)
        prefix = f"[{model.origin}] "
        if dataset is None:
            manifest.problems.append(
                Problem(
                    model.file,
                    0,
                    prefix + "spec.dataset.name",
                    f"dataset {body.dataset.name!r} is not declared: add a `kind: Dataset` document "
                    "(in this apply or an earlier one)",
                )
            )
            continue
        columns = {column.name for column in dataset.spec.columns}
        wanted = [("spec.features", name) for name in body.features]
        wanted += [("spec.target", body.target)]
        wanted += [("spec.cohort_columns", name) for name in body.cohort_columns]
        wanted += [("spec.dataset.where", name) for name in body.dataset.where]
        for location, name in wanted:
            if name not in columns:
                manifest.problems.append(
                    Problem(
                        model.file,
                        0,
                        prefix + location,
                        f"column {name!r} is not in dataset {dataset.metadata.name!r} "
                        f"(columns: {', '.join(sorted(columns))})",
                    )
                )
    drop_refused(manifest)
