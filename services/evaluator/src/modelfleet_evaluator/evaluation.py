"""Evaluating one candidate: download, verify, load, run every gate, write the report, record it.

Blocking work (MLflow, model calls, plotting): the handler runs `Evaluator.evaluate` in a thread.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from modelfleet_common.model_files import ModelRefused, directory_size, load_skops_model, verify_digest
from modelfleet_common.policies import Overrides, resolve_policy
from modelfleet_common.signing import IntegrityError, TrustedKeys, VersionBinding, verify_artifact
from modelfleet_contracts import GateResult, ModelEvaluated, ModelSpec, RiskPolicy, TrainingFinished
from modelfleet_contracts.specs import RiskClass
from modelfleet_contracts.training import Task

from .domain import (
    PRIMARY_METRIC,
    Gates,
    Outcomes,
    bootstrap_non_inferiority,
    cohort_metrics,
    fairness_gate,
    gate_metrics,
    gates_for,
    latency_gate,
    metric_gates,
    metric_value,
    non_inferiority_gate,
    robustness_gate,
    size_gate,
    with_gaussian_noise,
)
from .mlflow_store import ArtifactMissing, ChampionRef
from .report import REPORT_FILE, write_report

logger = logging.getLogger("modelfleet.evaluator")
SERVICE = "evaluator"
#: Version tags the registry writes; a champion without them cannot be trusted.
DIGEST_TAG = "modelfleet.digest"
SIGNATURE_TAG = "modelfleet.signature"
KEY_ID_TAG = "modelfleet.signing_key_id"
#: MLflow's own run id format; anything else would make MLflow reject (or misread) the URIs built from it.
RUN_ID_PATTERN = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")


class EvaluationStore(Protocol):
    """Where candidates, holdouts and champions come from, and where verdicts are recorded."""

    def stored_verdict(self, run_id: str) -> ModelEvaluated | None: ...

    def download(self, uri: str, into: Path) -> Path: ...

    def champion(self, model: str) -> ChampionRef | None: ...

    def record(
        self, run_id: str, files: list[Path], metrics: Mapping[str, float], verdict: ModelEvaluated
    ) -> None: ...


@dataclass(frozen=True)
class Candidate:
    """A `TrainingFinished` that carries everything an evaluation needs."""

    event: TrainingFinished
    task: Task
    spec: ModelSpec
    artifact_digest: str
    holdout_uri: str


def candidate_of(event: TrainingFinished) -> Candidate | str:
    """The candidate, or what the event lacks (an actionable message)."""
    required = {
        "task": event.task,
        "spec": event.spec,
        "artifact_digest": event.artifact_digest,
        "holdout_uri": event.holdout_uri,
    }
    missing = [name for name, value in required.items() if value is None]
    if missing or event.task is None or event.spec is None:
        return (
            f"TrainingFinished lacks {', '.join(missing)}: the trainer must send them so the candidate "
            "can be verified and evaluated on its holdout"
        )
    if not RUN_ID_PATTERN.fullmatch(event.run_id):
        return f"run id {event.run_id!r} is not an MLflow run id"
    return Candidate(
        event=event,
        task=event.task,
        spec=event.spec,
        artifact_digest=str(event.artifact_digest),
        holdout_uri=str(event.holdout_uri),
    )


def lineage_of(event: TrainingFinished) -> dict[str, str]:
    """Where a candidate comes from, as strings (repeated as registry version tags)."""
    lineage = {
        "dataset": event.dataset,
        "dataset_version": event.dataset_version,
        "template": event.template,
        "template_version": event.template_version,
        "spec_revision": event.spec_revision,
        "code_version": event.code_version,
        "environment_hash": event.environment_hash,
        "run_id": event.run_id,
    }
    if event.spec is not None:
        lineage["owner"] = event.spec.metadata.owner
        lineage["risk_class"] = event.spec.metadata.risk_class
        if event.spec.metadata.purpose:
            lineage["purpose"] = event.spec.metadata.purpose
    return lineage


def class_scores(model: Any, features: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.float64]]:
    """One score column per class: probabilities, else decision values, else a one-hot of labels."""
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(features), dtype=np.float64)
    classes = np.asarray(model.classes_)
    if hasattr(model, "decision_function"):
        decision = np.asarray(model.decision_function(features), dtype=np.float64)
        return np.column_stack([-decision, decision]) if decision.ndim == 1 else decision
    predicted = np.asarray(model.predict(features))
    return np.asarray(predicted[:, np.newaxis] == classes[np.newaxis, :], dtype=np.float64)


def predict_outcomes(task: Task, model: Any, features: pd.DataFrame, target: pd.Series[Any]) -> Outcomes:
    """The model's predictions on the holdout, in the form the gate math expects."""
    if task == "classification":
        position = {label: index for index, label in enumerate(np.asarray(model.classes_).tolist())}
        truth = np.array([position.get(label, -1) for label in target.tolist()], dtype=np.intp)
        scores = class_scores(model, features)
        return Outcomes(truth=truth, predicted=scores.argmax(axis=1).astype(np.intp), scores=scores)
    predicted = np.asarray(model.predict(features), dtype=np.float64).reshape(len(features))
    return Outcomes(truth=target.to_numpy(dtype=np.float64), predicted=predicted)


def prediction_function(task: Task, model: Any) -> Callable[[pd.DataFrame], Any]:
    """What serving calls per request: probabilities for a classifier, else predictions."""
    if task == "classification" and hasattr(model, "predict_proba"):
        return model.predict_proba  # type: ignore[no-any-return]
    return model.predict  # type: ignore[no-any-return]


def measure_latency_ms(
    predict: Callable[[pd.DataFrame], Any], features: pd.DataFrame, rows: int, rounds: int = 2
) -> list[float]:
    """Milliseconds of single-row predictions on the first `rows` rows, after one warm-up call.

    Each row is timed `rounds` times and keeps its fastest time: on a busy machine (a fleet
    trains while it evaluates) waiting for a CPU only ever adds time, so the minimum is the
    model's own cost, while the p95 over rows still shows a model that is slow on some inputs.
    """
    sample = [features.iloc[[index]] for index in range(min(rows, len(features)))]
    if not sample:
        return []
    fastest = [float("inf")] * len(sample)
    # One thread, as a serving worker answers one row: OpenMP teams (gradient boosting) gain
    # nothing on a single row and, on a machine busy training, spin-wait for cores that are taken.
    with threadpool_limits(limits=1):
        predict(sample[0])  # the first call pays lazy imports and caches; serving warms up too
        for _ in range(max(rounds, 1)):
            for index, row in enumerate(sample):
                started = time.perf_counter()
                predict(row)
                fastest[index] = min(fastest[index], (time.perf_counter() - started) * 1000)
    return fastest


def verify_champion(
    directory: Path, model: str, champion: ChampionRef, topic_prefix: str, trusted_keys_file: Path | None
) -> None:
    """Raise `IntegrityError` unless the registry signed (model, champion version, digest, this fleet's
    topic prefix) with a trusted key and the files match that digest."""
    tags = champion.tags
    if not tags.get(DIGEST_TAG):
        raise IntegrityError(f"its version lacks {DIGEST_TAG}: the registry never registered it")
    if trusted_keys_file is None:
        raise IntegrityError("FLEET_TRUSTED_KEYS_FILE is not set, so no signature can be trusted")
    try:
        trusted = TrustedKeys.from_file(trusted_keys_file)
    except OSError as error:
        raise IntegrityError(f"cannot read the trusted keys {trusted_keys_file}: {error}") from error
    verify_artifact(
        directory,
        binding=VersionBinding(model, champion.version, tags[DIGEST_TAG], topic_prefix),
        signature=tags.get(SIGNATURE_TAG, ""),
        signing_key_id=tags.get(KEY_ID_TAG, ""),
        trusted=trusted,
    )


@dataclass
class Findings:
    """What the gates found, and what the report draws."""

    gates: list[GateResult]
    outcomes: Outcomes | None = None
    champion_version: str | None = None


@dataclass
class Holdout:
    """The holdout split into what the model sees, what it must predict, and the cohorts."""

    features: pd.DataFrame
    target: pd.Series[Any]
    cohorts: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class Evaluator:
    """Evaluates candidates against the gates of their risk policy (overridden by their spec)."""

    store: EvaluationStore
    policies: Mapping[RiskClass, RiskPolicy]
    trusted_keys_file: Path | None = None
    #: This fleet's topic prefix: a champion must be signed for it.
    topic_prefix: str = ""
    latency_rows: int = 12
    seed: int = 0
    dpi: int = 80

    def evaluate(self, event: TrainingFinished) -> ModelEvaluated:
        """The verdict on the candidate of `event`, recorded on its run; computed once per run."""
        candidate = candidate_of(event)
        if isinstance(candidate, str):
            return self._verdict(event, Findings([GateResult(gate="inputs", passed=False, detail=candidate)]))
        try:
            stored = self.store.stored_verdict(event.run_id)
        except ArtifactMissing as error:
            return self._verdict(
                event, Findings([GateResult(gate="inputs", passed=False, detail=str(error))])
            )
        if stored is not None:
            logger.info(
                "verdict already recorded on the run; publishing it unchanged", extra={"run_id": event.run_id}
            )
            return stored
        with tempfile.TemporaryDirectory(prefix="modelfleet-evaluation-") as scratch:
            findings = self._run_gates(candidate, Path(scratch))
            report_uri = f"runs:/{event.run_id}/evaluation/{REPORT_FILE}"
            verdict = self._verdict(event, findings, report_uri=report_uri)
            files = write_report(
                Path(scratch) / "report",
                verdict,
                task=candidate.task,
                outcomes=findings.outcomes,
                dpi=self.dpi,
            )
            self.store.record(event.run_id, files, gate_metrics(verdict.gates), verdict)
        return verdict

    def _verdict(
        self, event: TrainingFinished, findings: Findings, report_uri: str | None = None
    ) -> ModelEvaluated:
        return ModelEvaluated(
            producer=SERVICE,
            model=event.model,
            run_id=event.run_id,
            model_uri=event.model_uri,
            spec_revision=event.spec_revision,
            passed=bool(findings.gates) and all(gate.passed for gate in findings.gates),
            gates=findings.gates,
            champion_version=findings.champion_version,
            report_uri=report_uri,
            artifact_digest=event.artifact_digest,
            lineage=lineage_of(event),
            **event.caused(),
        )

    def _run_gates(self, candidate: Candidate, scratch: Path) -> Findings:
        policy = resolve_policy(
            self.policies[candidate.spec.metadata.risk_class],
            Overrides(gates=candidate.spec.spec.gates),
            loosened="floor",
        )
        if policy.floored:
            # `modelfleet apply` refuses such a spec; one published around it is held to the floor.
            logger.warning(
                "spec loosens floors of the %s risk policy; evaluated at the floor: %s",
                policy.risk_class,
                "; ".join(str(violation) for violation in policy.floored),
                extra={"model": candidate.event.model, "run_id": candidate.event.run_id},
            )
        gates = gates_for(policy.gates, candidate.task)
        try:
            model_dir = self.store.download(candidate.event.model_uri, scratch / "candidate")
            holdout_path = self.store.download(candidate.holdout_uri, scratch / "holdout")
        except ArtifactMissing as error:
            return Findings([GateResult(gate="inputs", passed=False, detail=str(error))])
        try:
            digest = verify_digest(model_dir, candidate.artifact_digest, expected_from="the trainer's")
        except IntegrityError as error:
            detail = f"{error}; the model was not loaded"
            return Findings([GateResult(gate="integrity", passed=False, detail=detail)])
        results = [
            GateResult(gate="integrity", passed=True, detail=f"sha256 {digest[:12]}… matches the trainer's")
        ]
        try:
            model = load_skops_model(model_dir)
        except ModelRefused as error:
            return Findings([*results, GateResult(gate="safe_load", passed=False, detail=str(error))])
        results.append(
            GateResult(
                gate="safe_load", passed=True, detail="skops; every trusted type is in the fleet's allow-list"
            )
        )
        holdout = self._read_holdout(candidate.spec, holdout_path)
        if isinstance(holdout, str):
            return Findings([*results, GateResult(gate="holdout", passed=False, detail=holdout)])
        try:
            outcomes = predict_outcomes(candidate.task, model, holdout.features, holdout.target)
        except Exception as error:  # whatever the model raises, the candidate cannot score its holdout
            detail = f"the model cannot predict its holdout: {type(error).__name__}: {error}"
            return Findings([*results, GateResult(gate="holdout", passed=False, detail=detail)])
        results += metric_gates(candidate.task, gates.metric_thresholds, outcomes)
        non_inferiority, champion_version = self._non_inferiority(
            candidate, gates, holdout, outcomes, scratch
        )
        results.append(non_inferiority)
        latencies = measure_latency_ms(
            prediction_function(candidate.task, model), holdout.features, self.latency_rows
        )
        results.append(latency_gate(latencies, gates.max_latency_p95_ms))
        results.append(size_gate(directory_size(model_dir), gates.max_model_size_mb))
        results.append(self._fairness(candidate, gates, holdout, outcomes))
        results.append(self._robustness(candidate, gates, model, holdout, outcomes))
        return Findings(results, outcomes=outcomes, champion_version=champion_version)

    @staticmethod
    def _read_holdout(spec: ModelSpec, path: Path) -> Holdout | str:
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as error:
            return f"cannot read the holdout as Parquet: {error}"
        needed = [*spec.spec.features, spec.spec.target]
        missing = [column for column in needed if column not in frame.columns]
        if missing:
            return f"the holdout lacks the column(s) {', '.join(missing)} the spec names"
        if frame.empty:
            return "the holdout has no rows"
        cohorts = [column for column in spec.spec.cohort_columns if column in frame.columns]
        return Holdout(
            features=frame[list(spec.spec.features)],
            target=frame[spec.spec.target],
            cohorts=frame[cohorts],
        )

    def _non_inferiority(
        self, candidate: Candidate, gates: Gates, holdout: Holdout, outcomes: Outcomes, scratch: Path
    ) -> tuple[GateResult, str | None]:
        champion = self.store.champion(candidate.event.model)
        if champion is None:
            gate = GateResult(
                gate="non_inferiority",
                passed=True,
                threshold=-gates.non_inferiority_margin,
                detail="no champion yet",
            )
            return gate, None

        def refused(reason: str) -> tuple[GateResult, str]:
            detail = f"champion v{champion.version} cannot be compared with: {reason}"
            gate = GateResult(
                gate="non_inferiority", passed=False, threshold=-gates.non_inferiority_margin, detail=detail
            )
            return gate, champion.version

        try:
            directory = self.store.download(champion.download_uri, scratch / "champion")
            verify_champion(
                directory, candidate.event.model, champion, self.topic_prefix, self.trusted_keys_file
            )
            champion_model = load_skops_model(directory)
        except (ArtifactMissing, IntegrityError, ModelRefused) as error:
            return refused(str(error))
        try:
            champion_outcomes = predict_outcomes(
                candidate.task, champion_model, holdout.features, holdout.target
            )
        except Exception as error:  # e.g. the features changed since the champion was trained
            return refused(
                f"it cannot predict this holdout ({type(error).__name__}: {error}); a person must decide"
            )
        result = bootstrap_non_inferiority(
            candidate.task,
            outcomes,
            champion_outcomes,
            margin=gates.non_inferiority_margin,
            confidence=gates.confidence,
            samples=gates.bootstrap_samples,
            seed=self.seed,
        )
        return non_inferiority_gate(result, champion.version), champion.version

    @staticmethod
    def _fairness(candidate: Candidate, gates: Gates, holdout: Holdout, outcomes: Outcomes) -> GateResult:
        absent = [c for c in candidate.spec.spec.cohort_columns if c not in holdout.cohorts.columns]
        if absent:
            detail = f"the holdout lacks the cohort column(s) {', '.join(absent)} the spec names"
            return GateResult(
                gate="fairness_gap", passed=False, threshold=gates.max_fairness_gap, detail=detail
            )
        metric = PRIMARY_METRIC[candidate.task]
        per_column = cohort_metrics(metric, outcomes, holdout.cohorts, gates.min_cohort_rows)
        return fairness_gate(metric, per_column, gates.max_fairness_gap, gates.min_cohort_rows)

    def _robustness(
        self, candidate: Candidate, gates: Gates, model: Any, holdout: Holdout, outcomes: Outcomes
    ) -> GateResult:
        metric = PRIMARY_METRIC[candidate.task]
        noisy_features = with_gaussian_noise(
            holdout.features, gates.noise_scale, np.random.default_rng(self.seed)
        )
        try:
            noisy = predict_outcomes(candidate.task, model, noisy_features, holdout.target)
        except Exception as error:  # noise may push a value outside what a transformer accepts
            detail = f"the model fails on noisy inputs: {type(error).__name__}: {error}"
            return GateResult(gate="robustness", passed=False, threshold=gates.min_robustness, detail=detail)
        return robustness_gate(
            metric,
            metric_value(metric, outcomes),
            metric_value(metric, noisy),
            gates.noise_scale,
            gates.min_robustness,
        )
