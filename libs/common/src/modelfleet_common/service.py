"""`FleetService`: the wiring every modelfleet service shares.

A service's `app.py` creates one, declares subscribers (one per consumed topic) and publishers
with it, and exposes `service.app()`; `run()` serves it with /healthz, /readyz and /metrics.

    service = FleetService("trainer", TrainerSettings())
    publish = service.publisher(TRAINING_STARTED, TRAINING_FINISHED)

    @service.subscriber(RETRAIN_REQUESTS)
    async def on_retrain_requested(event: RetrainRequested) -> None:
        await handlers.retrain_model(event, deps)

    app = service.app()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.specification import AsyncAPI
from prometheus_client import make_asgi_app

from modelfleet_contracts.topics import ALL_TOPICS, Topic

from .consumer import ConsumerPolicy
from .kafka import EventPublisher, ensure_topics, fleet_topics, make_broker
from .lag import ConsumerLag, Ownership, ownership, running_consumers
from .logs import configure_logging
from .metrics import ServiceMetrics
from .naming import TopicNamer
from .settings import ServiceSettings
from .telemetry import configure_tracing

logger = logging.getLogger("modelfleet.service")


class CatalogViolation(ValueError):
    """A service declared a publisher or subscriber the topic catalog does not allow it."""


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[None]])

#: Version of the AsyncAPI documents (bumped with the contracts package).
SPEC_VERSION = "0.1.0"

#: The one prefix of every metric the fleet exports, faststream's own included.
METRICS_PREFIX = "fleet"


class FleetService:
    """Broker, names, telemetry, metrics and health of one service."""

    def __init__(self, name: str, settings: ServiceSettings) -> None:
        self.name = name
        self.settings = settings
        self.namer = TopicNamer(settings.topic_prefix)
        self.metrics = ServiceMetrics()
        self.tracer_provider = configure_tracing(name, settings.otel_exporter)
        self.policy = ConsumerPolicy(
            service=name,
            dead_letter_topic=self.namer.dead_letter(),
            metrics=self.metrics,
            max_attempts=settings.max_attempts,
            backoff_seconds=settings.retry_backoff_seconds,
            kill_after_handling_marker=settings.chaos_kill_after_handling_marker,
        )
        self.broker = make_broker(
            settings.kafka,
            client_id=f"modelfleet-{name}",
            middlewares=(
                KafkaTelemetryMiddleware(tracer_provider=self.tracer_provider),
                # faststream's own metrics under the fleet's prefix: fleet_received_messages_total, ...
                KafkaPrometheusMiddleware(
                    registry=self.metrics.registry,
                    app_name=f"modelfleet-{name}",
                    metrics_prefix=METRICS_PREFIX,
                ),
                self.policy,
            ),
            description=f"modelfleet {name} service",
        )
        self.policy.broker = self.broker
        self.lag = ConsumerLag(self.metrics.registry)
        self._topics: set[Topic] = set()
        self._ready = False
        #: (seconds, task, name): `task` every `seconds`, or run once for the service's life (None).
        self._periodic: list[tuple[float | None, Callable[[], Awaitable[None]], str]] = []
        self._running: list[asyncio.Task[None]] = []
        self.every(settings.lag_refresh_seconds, self.refresh_lag, name="consumer-lag")

    async def refresh_lag(self) -> None:
        """Export the lag of every running consumer of this replica (`modelfleet_common.lag`)."""
        await self.lag.refresh(running_consumers(self.broker.subscribers))

    def ownership(self, topic: Topic) -> Ownership | None:
        """The partitions of `topic` this replica's consumer group gave it now, and the topic's
        partition count; None while its subscriber is not running (see `lag.ownership`)."""
        return ownership(running_consumers(self.broker.subscribers), self.namer.topic(topic))

    def subscriber(
        self, topic: Topic, *also: Topic, shared_group: bool = True, group: str | None = None, **options: Any
    ) -> Callable[[Handler], Handler]:
        """Decorator: consume `topic` in this service's own consumer group, at least once.

        The replicas of a service share the group, so each handles the models of the partitions it
        owns. `shared_group=False` reads every partition from the beginning in each replica and
        commits nothing, leaving no group behind (serving's routing tables: every replica needs
        every model's). Only a topic the catalog lets this service read: its Kafka ACLs come from
        the same list.

        Several topics (`also`) make one consumer in one group, which must then be named: `group`
        gives `<prefix>fleet.<service>.<group>.v1`. With `partition_assignment_strategy=
        (RangePartitionAssignor,)` and topics of equal partition counts, a replica gets the same
        partition numbers of each, so one model's events of all of them meet in one replica.
        """
        topics = (topic, *also)
        for each in topics:
            if self.name not in each.consumers:
                raise CatalogViolation(
                    f"{self.name} subscribes to {each.name!r}, but the topic catalog lets only "
                    f"{sorted(each.consumers)} read it: add {self.name!r} to its consumers"
                )
        if also and shared_group and group is None:
            raise ValueError("a subscriber to several topics needs the name of its consumer group")
        self._topics.update(topics)
        names = [self.namer.topic(each) for each in topics]
        group_id = (
            f"{self.namer.group_prefix(self.name)}{group}.v1" if group else self.namer.group(self.name, topic)
        )
        grouping: dict[str, Any] = (
            {"group_id": group_id, "ack_policy": AckPolicy.NACK_ON_ERROR}
            if shared_group
            else {"group_id": None, "ack_policy": AckPolicy.ACK_FIRST}
        )
        decorator: Callable[[Handler], Handler] = self.broker.subscriber(
            *names,
            **grouping,
            auto_offset_reset="earliest",
            title=f"{group}:{self.name}" if also else f"{names[0]}:{self.name}",
            description=(
                f"{', '.join(each.name for each in topics)}, in one consumer group: the events of one "
                "key on all of them reach the same replica."
                if also
                else topic.description
            ),
            **options,
        )
        return decorator

    def publisher(self, *topics: Topic) -> EventPublisher:
        """A callable that publishes events of these topics (declared for the AsyncAPI doc).

        Only topics the catalog lets this service write: its Kafka ACLs come from the same list.
        """
        for topic in topics:
            if self.name not in topic.producers:
                raise CatalogViolation(
                    f"{self.name} publishes to {topic.name!r}, but the topic catalog lets only "
                    f"{sorted(topic.producers)} write it: add {self.name!r} to its producers"
                )
        self._topics.update(topics)
        return EventPublisher(self.broker, self.namer, topics)

    def every(self, seconds: float, task: Callable[[], Awaitable[None]], *, name: str) -> None:
        """Run `task` every `seconds` while the service runs (from after startup to shutdown).

        A failing run is logged and the next one goes on; shutdown cancels a run in progress.
        """
        self._periodic.append((seconds, task, name))

    def background(self, run: Callable[[], Coroutine[Any, Any, None]], *, name: str) -> None:
        """Run the long-lived coroutine `run()` while the service runs (e.g. a loop that wakes on
        its own events); shutdown cancels it before the broker stops."""
        self._periodic.append((None, run, name))

    async def _start_periodic(self) -> None:
        for seconds, task, name in self._periodic:
            run = task() if seconds is None else _repeat(seconds, task, name)
            running = asyncio.ensure_future(run)
            running.set_name(name)
            self._running.append(running)

    async def _stop_periodic(self) -> None:
        for running in self._running:
            running.cancel()
        for running in self._running:
            with contextlib.suppress(asyncio.CancelledError):
                await running
        self._running.clear()

    def uses(self, topic: Topic) -> None:
        """Declare a topic this service reads outside a subscriber (e.g. a snapshot at start)."""
        if self.name not in topic.consumers:
            raise CatalogViolation(f"the topic catalog does not let {self.name} read {topic.name!r}")
        self._topics.add(topic)

    async def _provision_topics(self) -> None:
        # Refuse to start on settings that cannot connect, with the variable to set.
        self.settings.kafka.check()
        # Every topic the service uses, in catalog order: idempotent, and lets services start in
        # any order without a consumer racing the topic's creation with the wrong config. On a
        # secured cluster an admin provisioned them, and this only checks that they exist.
        used = [topic for topic in ALL_TOPICS if topic in self._topics]
        await ensure_topics(self.settings.kafka, fleet_topics(self.namer, used))

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        self.metrics.ready.set(1 if ready else 0)

    def app(self) -> AsgiFastStream:
        """The ASGI + FastStream application of the service."""

        @get(include_in_schema=False)
        async def healthz(scope: Any) -> AsgiResponse:
            return AsgiResponse(b"ok", status_code=200)

        @get(include_in_schema=False)
        async def readyz(scope: Any) -> AsgiResponse:
            if self._ready and await self.broker.ping(timeout=2.0):
                return AsgiResponse(b"ready", status_code=200)
            return AsgiResponse(b"not ready", status_code=503)

        async def after_startup() -> None:
            self._set_ready(True)
            logger.info("service ready", extra={"http_port": self.settings.http_port})

        async def on_shutdown() -> None:
            self._set_ready(False)
            logger.info("service stopping: finishing in-flight events before closing")

        return AsgiFastStream(
            self.broker,
            asgi_routes=[
                ("/healthz", healthz),
                ("/readyz", readyz),
                ("/metrics", make_asgi_app(registry=self.metrics.registry)),
            ],
            on_startup=[self._provision_topics],
            after_startup=[after_startup, self._start_periodic],
            on_shutdown=[on_shutdown, self._stop_periodic],
            logger=logging.getLogger(f"modelfleet.{self.name}"),
            specification=AsyncAPI(
                self.broker,
                title=f"modelfleet {self.name}",
                version=SPEC_VERSION,
                description=f"Events the modelfleet {self.name} service consumes and publishes.",
            ),
        )

    def run(self, app: AsgiFastStream) -> None:
        """Serve the app until SIGTERM/SIGINT; uvicorn then stops the broker gracefully."""
        configure_logging(self.name, self.settings.log_level)
        # uvicorn handles SIGTERM gracefully, then re-raises it to the previous handler; make that
        # one a clean exit so orchestrators see status 0 after a graceful stop.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        asyncio.run(
            app.run(
                log_level=logging.getLevelName(self.settings.log_level.upper()),
                run_extra_options={
                    "host": self.settings.http_host,
                    "port": self.settings.http_port,
                    "log_config": None,
                    "timeout_graceful_shutdown": 30,
                },
            )
        )


async def _repeat(seconds: float, task: Callable[[], Awaitable[None]], name: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await task()
        except Exception:
            logger.exception("periodic task failed; it runs again in %ss", seconds, extra={"task": name})


def _exit_cleanly(signum: int, frame: object) -> None:
    sys.exit(0)
