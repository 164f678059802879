"""evaluator: wiring of the broker, subscribers and publishers."""

from modelfleet_common.service import FleetService
from modelfleet_contracts import TrainingFinished
from modelfleet_contracts.topics import MODEL_EVALUATIONS, TRAINING_FINISHED

from . import handlers
from .config import EvaluatorSettings

service = FleetService("evaluator", EvaluatorSettings())
# Declared now so the AsyncAPI document shows what evaluator produces; handlers use it from #3-#5.
publish = service.publisher(MODEL_EVALUATIONS)


@service.subscriber(TRAINING_FINISHED)
async def on_training_finished(event: TrainingFinished) -> None:
    await handlers.note_training_finished(event)


app = service.app()
