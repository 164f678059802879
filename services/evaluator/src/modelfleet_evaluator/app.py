"""evaluator: wiring of the broker, subscribers and publishers (dependencies: `bootstrap`)."""

from functools import cache

from modelfleet_common.service import FleetService
from modelfleet_contracts import TrainingFinished
from modelfleet_contracts.topics import MODEL_EVALUATIONS, TRAINING_FINISHED

from . import handlers
from .bootstrap import bootstrap
from .config import EvaluatorSettings
from .metrics import EvaluatorMetrics

settings = EvaluatorSettings()
service = FleetService("evaluator", settings)
publish = service.publisher(MODEL_EVALUATIONS)
metrics = EvaluatorMetrics(service.metrics.registry)


@cache
def dependencies() -> handlers.EvaluatorDeps:
    """Built once, by the startup hook (or by the first event in tests)."""
    return bootstrap(settings, publish=publish, metrics=metrics)


@service.subscriber(TRAINING_FINISHED, max_workers=settings.consumer_workers)
async def on_training_finished(event: TrainingFinished) -> None:
    await handlers.evaluate_candidate(event, dependencies())


app = service.app()


@app.on_startup
def build_dependencies() -> None:
    """Load and validate the policies before consuming: a bad file stops the service, naming it."""
    dependencies()
