"""monitor's wiring: builds its ports (state, profile store, Kafka publisher, clock) once.

    deps = bootstrap(settings, publish=publish)                         # the service
    deps = bootstrap(settings, publish=fake, state=store, profiles=fakes, clock=lambda: NOW)

Nothing here runs at import: the app calls it from its startup hook, so a bad policy file or an
unreachable state engine stops the service naming the problem. Its named state:

- `deps.facts`: dataset versions' profiles, registered versions and runs (`references.VersionFacts`);
- `deps.models`: the models this replica owns: specs, deployments, review periods, windows
  (`book.ModelBook`);
- `deps.tracker`: the health windows (and what was recently counted, to count it once), in memory
  only (reported every `monitor_report_seconds`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from modelfleet_common.policies import load_policies
from modelfleet_common.state import KeyValueStore, open_service_state
from modelfleet_contracts.envelope import Event

from .book import ModelBook
from .config import MonitorSettings
from .handlers import MonitorDeps
from .health import HealthTracker
from .metrics import MonitorMetrics
from .references import FsspecProfiles, ProfileSource, ReferenceCache, VersionFacts

logger = logging.getLogger("modelfleet.monitor")


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def bootstrap(
    settings: MonitorSettings,
    *,
    publish: Callable[[Event], Awaitable[None]],
    state: KeyValueStore | None = None,
    profiles: ProfileSource | None = None,
    clock: Callable[[], datetime] = utc_now,
    metrics: MonitorMetrics | None = None,
) -> MonitorDeps:
    """The handlers' dependencies; any port given replaces the real one.

    `state` is the monitor's key-value store in the state engine (`FLEET_STATE_URL`, or its SQLite
    file in `FLEET_STATE_DIR`); `profiles` reads the reference profiles ingest wrote (fsspec).
    """
    policies = load_policies(settings.policy_dir)
    logger.info(
        "risk policies loaded",
        extra={"policy_dir": str(settings.policy_dir.resolve()), "risk_classes": sorted(policies)},
    )
    if state is None:
        state = open_service_state(settings, "monitor").key_values()
    return MonitorDeps(
        tracker=HealthTracker(dedupe_per_model=settings.monitor_dedupe_size, started_at=clock()),
        publish=publish,
        policies=policies,
        clock=clock,
        slo_min_requests=settings.monitor_slo_min_requests,
        facts=VersionFacts(state),
        references=ReferenceCache(
            profiles or FsspecProfiles(), capacity=settings.monitor_reference_cache_size
        ),
        metrics=metrics or MonitorMetrics(),
        book=ModelBook(state, clock=clock),
    )
