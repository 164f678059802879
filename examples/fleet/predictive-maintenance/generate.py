"""Synthetic sensor telemetry of industrial machines: one row per machine and week.

Each machine is simulated week by week. Operating hours since the last overhaul wear it; wear and
age raise the hazard that a fault starts (a bearing or seal begins to go); an active fault grows
every week and shows up in the sensors before it breaks the machine: vibration rises first, then
the temperature, and pumps and gearboxes lose pressure. The label `fails_within_7d` says whether
the machine broke down in the week after the snapshot; after a breakdown, or when the hours reach
the overhaul interval, the machine is overhauled and starts fresh.

Breakdowns are rare (a few percent of machine-weeks), so, as maintenance teams usually do, the
healthy weeks are down-sampled until breakdown weeks are about `positive_share` of the rows.

Sites differ in climate (ambient temperature) and duty (how hard machines run); machine types
differ in their normal sensor levels and how long they last between overhauls.

Run `python generate.py` to rewrite `data/maintenance-telemetry.csv`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240611
OUTPUT = Path(__file__).parent / "data" / "maintenance-telemetry.csv"


@dataclass(frozen=True)
class Site:
    """Conditions at one plant."""

    ambient_c: float  # mean hall temperature, degrees Celsius
    duty: float  # extra fault hazard from heavier duty (log scale)


@dataclass(frozen=True)
class MachineType:
    """Normal behaviour of one kind of machine."""

    vibration_mm_s: float  # healthy RMS vibration velocity
    temperature_rise_c: float  # healthy bearing temperature above ambient
    pressure_bar: float  # discharge pressure (pump, compressor) or lube-oil pressure (gearbox)
    pressure_loss_bar: float  # pressure lost at full fault severity
    rpm: float  # nominal shaft speed
    overhaul_hours: float  # planned hours between overhauls
    failure_logit: float  # log-odds of a breakdown in a week when healthy and new


SITES = {
    "gbg": Site(ambient_c=18.0, duty=0.0),
    "lul": Site(ambient_c=12.0, duty=0.25),
    "ume": Site(ambient_c=14.0, duty=0.1),
}
MACHINE_TYPES = {
    "pump": MachineType(2.2, 35.0, 6.0, 1.6, 1480.0, 16_000.0, -8.0),
    "compressor": MachineType(3.0, 55.0, 8.5, 0.8, 2950.0, 12_000.0, -7.6),
    "gearbox": MachineType(1.6, 40.0, 2.4, 0.7, 990.0, 24_000.0, -8.2),
}
AGE_BANDS = ("under_5y", "5_to_10y", "over_10y")
HOURS_PER_WEEK = 168.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    probability: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return probability


def _simulate_slice(
    rng: np.random.Generator, site_code: str, type_code: str, machines: int, weeks: int
) -> pd.DataFrame:
    site, kind = SITES[site_code], MACHINE_TYPES[type_code]
    age = rng.uniform(0.5, 18.0, machines)
    hours = rng.uniform(0.0, kind.overhaul_hours, machines)
    utilisation = rng.uniform(0.45, 0.95, machines)
    severity = np.zeros(machines)  # 0 = healthy; grows by ~0.15 a week once a fault starts
    frames = []
    for _ in range(weeks):
        hours += utilisation * HOURS_PER_WEEK * rng.normal(1.0, 0.05, machines).clip(0.8, 1.2)
        age += 7.0 / 365.0
        wear = hours / kind.overhaul_hours
        # A fault starts more often in worn machines on hard-duty sites, and along the bathtub
        # curve of age: installation defects in the first years, fatigue in old machines.
        infant_mortality = 0.8 * np.exp(-age / 1.5)
        onset = _sigmoid(-4.5 + 2.0 * wear + 0.03 * age + infant_mortality + site.duty)
        starts = (severity == 0.0) & (rng.random(machines) < onset)
        severity = np.where(starts, 0.05, severity)
        severity = np.where(severity > 0.0, severity + rng.uniform(0.05, 0.25, machines), 0.0)

        vibration = (
            kind.vibration_mm_s
            * (1.0 + 0.2 * wear)
            * (1.0 + 2.2 * severity)
            * rng.lognormal(0.0, 0.12, machines)
        )
        hall_c = site.ambient_c + rng.normal(0.0, 2.0, machines)  # the hall's week-to-week swing
        temperature = (
            hall_c
            + kind.temperature_rise_c * (1.0 + 0.05 * wear)
            + 16.0 * severity**1.5
            + rng.normal(0.0, 2.0, machines)  # load and sensor noise
        )
        pressure = (
            kind.pressure_bar
            - kind.pressure_loss_bar * severity
            + rng.normal(0.0, 0.04 * kind.pressure_bar, machines)
        )
        rpm = kind.rpm * (1.0 - 0.015 * severity) + rng.normal(0.0, 0.004 * kind.rpm, machines)
        breakdown = _sigmoid(kind.failure_logit + 10.0 * severity + 0.8 * wear)
        fails = rng.random(machines) < breakdown

        frames.append(
            pd.DataFrame(
                {
                    "machine": np.arange(machines),
                    "age_years": age.round(1),
                    "operating_hours": hours.round().astype(np.int64),
                    "temperature": temperature.round(1),
                    "vibration_rms": vibration.round(2),
                    "pressure": pressure.clip(0.0).round(2),
                    "rpm": rpm.round().astype(np.int64),
                    "fails_within_7d": fails.astype(np.int64),
                }
            )
        )
        # A breakdown forces a repair; otherwise the planned overhaul comes at the interval.
        overhauled = fails | (hours >= kind.overhaul_hours)
        hours = np.where(overhauled, 0.0, hours)
        severity = np.where(overhauled, 0.0, severity)

    frame = pd.concat(frames, ignore_index=True)
    frame.insert(0, "machine_type", type_code)
    frame.insert(0, "site", site_code)
    frame.insert(0, "machine_id", [f"{site_code}-{type_code}-{m:03d}" for m in frame.pop("machine")])
    frame.insert(
        4,
        "age_band",
        pd.cut(frame["age_years"], [0.0, 5.0, 10.0, np.inf], right=False, labels=AGE_BANDS).astype(str),
    )
    return frame


def _down_sample_healthy_weeks(
    rng: np.random.Generator, frame: pd.DataFrame, positive_share: float
) -> pd.DataFrame:
    failing = frame.index[frame["fails_within_7d"] == 1]
    healthy = frame.index[frame["fails_within_7d"] == 0]
    wanted = min(len(healthy), round(len(failing) * (1.0 - positive_share) / positive_share))
    kept = np.sort(np.concatenate([failing, rng.choice(healthy, size=wanted, replace=False)]))
    return frame.loc[kept]


def generate(
    machines_per_slice: int = 120, weeks: int = 52, positive_share: float = 0.15, seed: int = SEED
) -> pd.DataFrame:
    """A year of weekly snapshots of `machines_per_slice` machines of every site and machine type,
    with healthy weeks down-sampled so breakdown weeks are about `positive_share` of the rows."""
    rng = np.random.default_rng(seed)
    slices = [
        _down_sample_healthy_weeks(
            rng, _simulate_slice(rng, site, kind, machines_per_slice, weeks), positive_share
        )
        for site in SITES
        for kind in MACHINE_TYPES
    ]
    return pd.concat(slices, ignore_index=True)


def main(output: Path = OUTPUT) -> None:
    """Write the dataset as CSV (LF line endings, so every platform produces the same bytes)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    generate().to_csv(output, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
