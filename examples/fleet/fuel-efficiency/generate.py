"""Synthetic trip logs of heavy trucks: one row per completed trip.

Fuel use per 100 km follows the physics of road vehicles: rolling resistance grows with the gross
weight (truck plus payload), air drag with the square of the average speed, climbing with weight
times the metres climbed, and stop-and-go traffic with weight times the stops (every stop throws
away kinetic energy). Idling burns fuel without moving, and cold weather adds a few percent
(denser air, colder tyres and oil). Segments differ in truck weight, aerodynamics, speed and
terrain; drivers differ in style.

Run `python generate.py` to rewrite `data/truck-trips.csv`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20250120
OUTPUT = Path(__file__).parent / "data" / "truck-trips.csv"


@dataclass(frozen=True)
class Segment:
    """Typical trucks and routes of one transport segment."""

    empty_tonnes: float  # tractor (and trailer) without load
    max_payload_tonnes: float
    drag: float  # litres per 100 km at 100 km/h from air drag alone
    speed_kmh: tuple[float, float]  # range of average trip speeds
    stops_per_100km: float  # mean number of stops
    climb_m_per_100km: float  # mean metres climbed per 100 km
    trip_km: tuple[float, float]  # range of trip lengths


SEGMENTS = {
    "long-haul": Segment(16.0, 24.0, 14.0, (62.0, 84.0), 2.0, 250.0, (250.0, 900.0)),
    "regional": Segment(12.0, 14.0, 11.0, (45.0, 72.0), 12.0, 320.0, (60.0, 300.0)),
    "construction": Segment(14.0, 18.0, 12.0, (25.0, 55.0), 20.0, 600.0, (20.0, 120.0)),
    "city-distribution": Segment(9.0, 8.0, 9.0, (18.0, 38.0), 60.0, 200.0, (30.0, 150.0)),
}
ENGINE_IDLE_LITRES_PER_HOUR = 2.5


def _segment_trips(rng: np.random.Generator, name: str, trips: int) -> pd.DataFrame:
    segment = SEGMENTS[name]
    payload = segment.max_payload_tonnes * rng.beta(2.2, 1.6, trips)
    gross = segment.empty_tonnes + payload
    speed = rng.uniform(*segment.speed_kmh, trips)
    stops = rng.gamma(2.0, segment.stops_per_100km / 2.0, trips)
    climb = rng.gamma(3.0, segment.climb_m_per_100km / 3.0, trips)
    ambient = rng.normal(6.0, 9.0, trips).clip(-30.0, 35.0)
    idle_share = rng.beta(1.5, 12.0, trips)  # share of engine hours spent standing still
    distance = rng.uniform(*segment.trip_km, trips)
    driver_style = rng.normal(1.0, 0.04, trips)  # eco-driving ... aggressive

    rolling = 0.41 * gross
    drag = segment.drag * (speed / 100.0) ** 2
    climbing = 0.0006 * gross * climb
    stop_and_go = 0.008 * gross * stops
    moving_hours_per_100km = 100.0 / speed
    idling = ENGINE_IDLE_LITRES_PER_HOUR * moving_hours_per_100km * idle_share / (1.0 - idle_share)
    cold = 1.0 + 0.004 * np.clip(10.0 - ambient, 0.0, None)
    fuel = (rolling + drag + climbing + stop_and_go + idling) * cold * driver_style
    fuel *= rng.normal(1.0, 0.03, trips)

    return pd.DataFrame(
        {
            "trip_id": [f"{name}-{n:05d}" for n in range(trips)],
            "segment": name,
            "trip_km": distance.round(1),
            "payload_tonnes": payload.round(2),
            "avg_speed_kmh": speed.round(1),
            "stops_per_100km": stops.round(1),
            "climb_m_per_100km": climb.round().astype(np.int64),
            "ambient_temp_c": ambient.round(1),
            "idle_share": idle_share.round(3),
            "fuel_l_per_100km": fuel.round(2),
        }
    )


def generate(trips_per_segment: int = 1200, seed: int = SEED) -> pd.DataFrame:
    """`trips_per_segment` trips of every segment with the fuel they used."""
    rng = np.random.default_rng(seed)
    return pd.concat([_segment_trips(rng, name, trips_per_segment) for name in SEGMENTS], ignore_index=True)


def main(output: Path = OUTPUT) -> None:
    """Write the dataset as CSV (LF line endings, so every platform produces the same bytes)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    generate().to_csv(output, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
