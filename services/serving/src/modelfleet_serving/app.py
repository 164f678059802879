"""serving: wiring of the broker, the deployments subscriber, the data plane and its background tasks.

The data plane (`POST /predict`, `POST /feedback`) is mounted on the service's `AsgiFastStream`
app; `api.py` explains why it is not a BentoML service.
"""

from __future__ import annotations

import time

from modelfleet_common.service import FleetService
from modelfleet_contracts import DeploymentChanged
from modelfleet_contracts.topics import ARTIFACT_REFUSALS, DEPLOYMENTS, GROUND_TRUTH, PREDICTION_LOGS

from . import handlers
from .api import AnsweredRequests, DataPlane, Limits, json_endpoint
from .bootstrap import bootstrap
from .config import ServingSettings
from .model_store import StoreMetrics
from .prediction_log import PredictionLog
from .request_metrics import RequestMetrics
from .routing_table import RoutingTable
from .tracing import traced

settings = ServingSettings()
service = FleetService("serving", settings)
publish = service.publisher(PREDICTION_LOGS, GROUND_TRUTH, ARTIFACT_REFUSALS)

table = RoutingTable()
routing_metrics = handlers.RoutingMetrics(service.metrics.registry)
store_metrics = StoreMetrics(service.metrics.registry)
prediction_log = PredictionLog(
    publish,
    batch_size=settings.serving_log_batch_size,
    buffer_limit=settings.serving_log_buffer_limit,
    registry=service.metrics.registry,
    max_event_bytes=settings.serving_log_max_event_bytes,
    buffer_bytes=settings.serving_log_buffer_bytes,
    dead_letter=lambda value, headers: service.broker.publish(
        value, topic=service.namer.dead_letter(), headers=headers
    ),
    source_topic=service.namer.topic(PREDICTION_LOGS),
)
# The store needs the trusted keys and the doors the tokens file; both are set at startup so a
# missing file stops the service from starting rather than from being imported (e.g. to write its
# AsyncAPI document). Until then every request is answered 503.
plane = DataPlane(
    table,
    store=None,
    log=prediction_log,
    publish_ground_truth=publish,
    publish_refusal=publish,
    limits=Limits(
        max_body_bytes=settings.serving_max_body_bytes,
        max_rows=settings.serving_max_rows,
        max_columns=settings.serving_max_columns,
    ),
    answered=AnsweredRequests(
        ttl_seconds=settings.serving_feedback_ttl_seconds,
        max_per_model=settings.serving_feedback_max_requests,
    ),
    metrics=RequestMetrics(service.metrics.registry),
)


# Every replica needs every model's table, so each reads the whole compacted topic from its
# beginning, in no consumer group: nothing is committed and no group is left behind by a restart.
@service.subscriber(DEPLOYMENTS, shared_group=False)
async def on_deployment_changed(event: DeploymentChanged) -> None:
    await handlers.apply_deployment_changed(event, table, routing_metrics)


async def unload_idle_models() -> None:
    """Unload the models idle for longer than `FLEET_SERVING_IDLE_UNLOAD_SECONDS`."""
    if plane.store is not None:
        plane.store.unload_idle(time.monotonic())


async def start_data_plane() -> None:
    bootstrap(settings, plane, store_metrics=store_metrics)


async def stop_data_plane() -> None:
    # The periodic tasks are cancelled before this (FleetService's own shutdown hook runs first).
    await plane.wait_for_mirrors()
    # The broker is still connected here (on_shutdown runs before it stops): flush what is buffered.
    await prediction_log.flush()


# Flushes every FLEET_SERVING_LOG_FLUSH_SECONDS or as soon as a batch is full.
service.background(lambda: prediction_log.run(settings.serving_log_flush_seconds), name="prediction-log")
service.every(settings.serving_unload_check_seconds, unload_idle_models, name="unload-idle-models")
app = service.app()
# The route templates: the paths mounted, the spans' names and the `route` label of the metrics.
PREDICT, FEEDBACK = "/predict", "/feedback"
app.mount(PREDICT, traced(json_endpoint(plane.predict, plane, scope="predict", route=PREDICT), PREDICT))
app.mount(
    FEEDBACK,
    traced(
        json_endpoint(plane.feedback, plane, scope="feedback", route=FEEDBACK, success_status=202), FEEDBACK
    ),
)
app.on_startup(start_data_plane)
app.on_shutdown(stop_data_plane)
