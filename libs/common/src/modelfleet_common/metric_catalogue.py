"""The metrics a service exports, read from its metric objects: name, type, labels, meaning.

    python -m modelfleet_common.metric_catalogue modelfleet_deployer.app:service   # JSON on stdout

Importing a service's `app` module builds its `FleetService` and every metric object of its
wiring on the service's registry (faststream's own, the lag gauge, the service's named metric
objects), without connecting to anything. The table of `docs/monitoring.md` is generated from
this (`docs/generate_metrics.py`, run in each service's own environment), so it says what the
code exports, not what someone remembered to write down.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import asdict, dataclass

from prometheus_client import CollectorRegistry


@dataclass(frozen=True)
class MetricFamily:
    """One metric as Prometheus scrapes it (a counter's name with its `_total`)."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


def families(registry: CollectorRegistry) -> list[MetricFamily]:
    """Every metric family of a registry, by name.

    Labels are not part of the exposition of a metric without samples, so they are read from the
    metric objects (prometheus_client keeps them as `_labelnames`; a registry without that
    attribute on its collectors fails here rather than documenting metrics without labels).
    """
    labels: dict[str, tuple[str, ...]] = {}
    for collector, names in registry._collector_to_names.items():
        for name in names:
            labels[name] = tuple(collector._labelnames)  # type: ignore[attr-defined]
    found = []
    for metric in registry.collect():
        name = f"{metric.name}_total" if metric.type == "counter" else metric.name
        found.append(MetricFamily(name, metric.type, labels[metric.name], metric.documentation))
    return sorted(found, key=lambda family: family.name)


def of_service(target: str) -> list[MetricFamily]:
    """The metric families of `module:attribute`, a `FleetService` (its `metrics.registry`)."""
    module_name, _, attribute = target.partition(":")
    service = getattr(importlib.import_module(module_name), attribute or "service")
    registry: CollectorRegistry = service.metrics.registry
    return families(registry)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m modelfleet_common.metric_catalogue module:service", file=sys.stderr)
        return 2
    json.dump([asdict(family) for family in of_service(argv[0])], sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
