"""evaluator: wiring of the broker, subscribers and publishers."""

import logging
from functools import cache

from modelfleet_common.idempotency import SqliteIdempotencyStore
from modelfleet_common.mlflow_auth import use_mlflow_credentials
from modelfleet_common.policies import load_policies
from modelfleet_common.service import FleetService
from modelfleet_contracts import TrainingFinished
from modelfleet_contracts.topics import MODEL_EVALUATIONS, TRAINING_FINISHED

from . import handlers
from .config import EvaluatorSettings
from .evaluation import Evaluator
from .mlflow_store import MlflowEvaluationStore

logger = logging.getLogger("modelfleet.evaluator")

settings = EvaluatorSettings()
# Its own MLflow user (FLEET_MLFLOW_USERNAME, password from FLEET_MLFLOW_PASSWORD_FILE).
use_mlflow_credentials(settings)
service = FleetService("evaluator", settings)
publish = service.publisher(MODEL_EVALUATIONS)


@cache
def dependencies() -> handlers.EvaluatorDeps:
    """The handlers' dependencies, built once (by the startup hook, or by the first event in tests)."""
    policies = load_policies(settings.policy_dir)
    store = MlflowEvaluationStore(
        settings.mlflow_tracking_uri,
        attempts=settings.mlflow_retry_attempts,
        backoff_seconds=settings.mlflow_retry_backoff_seconds,
    )
    evaluator = Evaluator(
        store=store,
        policies=policies,
        trusted_keys_file=settings.trusted_keys_file,
        topic_prefix=settings.topic_prefix,
        latency_rows=settings.latency_sample_rows,
        seed=settings.random_seed,
        dpi=settings.report_dpi,
    )
    logger.info(
        "risk policies loaded",
        extra={"policy_dir": str(settings.policy_dir.resolve()), "risk_classes": sorted(policies)},
    )
    return handlers.EvaluatorDeps(
        evaluator=evaluator,
        handled=SqliteIdempotencyStore(settings.state_dir / "evaluator-handled.sqlite"),
        publish=publish,
    )


@service.subscriber(TRAINING_FINISHED, max_workers=settings.consumer_workers)
async def on_training_finished(event: TrainingFinished) -> None:
    await handlers.evaluate_candidate(event, dependencies())


app = service.app()


@app.on_startup
def build_dependencies() -> None:
    """Load and validate the policies before consuming: a bad file stops the service, naming it."""
    dependencies()
