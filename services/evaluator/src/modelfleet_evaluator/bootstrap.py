"""evaluator's wiring: builds its ports (MLflow, state, Kafka publisher) once, for the app or a test.

    deps = bootstrap(settings, publish=publish, metrics=metrics)     # the service
    deps = bootstrap(settings, publish=fake, evaluator=stub, handled=InMemoryIdempotencyStore())

Nothing here runs at import: the app calls it from its startup hook, so a bad policy file, an
unreadable MLflow password or an unreachable state engine stops the service, naming the problem.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from modelfleet_common.idempotency import IdempotencyStore, durable_idempotency
from modelfleet_common.mlflow_auth import use_mlflow_credentials
from modelfleet_common.policies import load_policies
from modelfleet_common.state import KeyLocks, open_service_state
from modelfleet_contracts.envelope import Event

from .config import EvaluatorSettings
from .evaluation import Evaluator
from .handlers import CandidateEvaluator, EvaluatorDeps
from .metrics import EvaluatorMetrics
from .mlflow_store import MlflowEvaluationStore

logger = logging.getLogger("modelfleet.evaluator")


def bootstrap(
    settings: EvaluatorSettings,
    *,
    publish: Callable[[Event], Awaitable[None]],
    evaluator: CandidateEvaluator | None = None,
    handled: IdempotencyStore | None = None,
    metrics: EvaluatorMetrics | None = None,
) -> EvaluatorDeps:
    """The handlers' dependencies; any port given replaces the real one."""
    if evaluator is None:
        # Its own MLflow user (FLEET_MLFLOW_USERNAME, password from FLEET_MLFLOW_PASSWORD_FILE).
        use_mlflow_credentials(settings)
        policies = load_policies(settings.policy_dir)
        logger.info(
            "risk policies loaded",
            extra={"policy_dir": str(settings.policy_dir.resolve()), "risk_classes": sorted(policies)},
        )
        evaluator = Evaluator(
            store=MlflowEvaluationStore(
                settings.mlflow_tracking_uri,
                attempts=settings.mlflow_retry_attempts,
                backoff_seconds=settings.mlflow_retry_backoff_seconds,
            ),
            policies=policies,
            trusted_keys_file=settings.trusted_keys_file,
            topic_prefix=settings.topic_prefix,
            latency_rows=settings.latency_sample_rows,
            seed=settings.random_seed,
            dpi=settings.report_dpi,
        )
    locks = KeyLocks()
    if handled is None:
        engine = open_service_state(settings, "evaluator")
        locks = engine.locks
        handled = durable_idempotency(engine, settings.state)
    return EvaluatorDeps(evaluator=evaluator, handled=handled, publish=publish, locks=locks, metrics=metrics)
