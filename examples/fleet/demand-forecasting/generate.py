"""Synthetic daily sales of one product line in Swedish grocery stores: one row per store and day.

Demand multiplies a store's level with a slow trend, a weekly cycle (Friday and Saturday peaks,
quiet Mondays), a yearly cycle (summer and December highs), promotions, the price (elasticity
around -1.5) and public holidays (shorter opening hours), plus day-to-day noise. `lag_7` is the
demand of the same store seven days earlier, the feature forecasters lean on most.

Run `python generate.py` to rewrite `data/store-sales.csv`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20241015
OUTPUT = Path(__file__).parent / "data" / "store-sales.csv"
FIRST_DAY = date(2023, 1, 1)
LAST_DAY = date(2024, 12, 31)
LAG_DAYS = 7


@dataclass(frozen=True)
class Store:
    """Traits of one store."""

    daily_units: float  # typical daily demand at the list price, before seasonality
    yearly_growth: float  # relative growth of demand per year
    list_price_sek: float  # shelf price outside promotions
    promo_lift: float  # demand multiplier during a promotion (on top of the lower price)


STORES = {
    "sthlm-kista": Store(420.0, 0.06, 34.9, 1.35),
    "gbg-nordstan": Store(510.0, 0.02, 34.9, 1.25),
    "malmo-triangeln": Store(330.0, 0.04, 32.9, 1.40),
    "uppsala-centrum": Store(260.0, 0.08, 33.9, 1.30),
    "linkoping-tornby": Store(190.0, -0.02, 31.9, 1.45),
    "umea-avion": Store(150.0, 0.05, 35.9, 1.30),
}
# Monday .. Sunday, as pandas numbers weekdays (Monday = 0).
WEEKLY_PROFILE = np.array([0.82, 0.88, 0.92, 0.98, 1.18, 1.28, 0.94])
PRICE_ELASTICITY = -1.5
PROMO_DISCOUNT = 0.2
HOLIDAY_FACTOR = 0.65
# Swedish public holidays (and the eves when shops close early) of the years generated.
HOLIDAYS = pd.to_datetime(
    [
        "2022-12-24", "2022-12-25", "2022-12-26", "2022-12-31",
        "2023-01-01", "2023-01-06", "2023-04-07", "2023-04-09", "2023-04-10", "2023-05-01",
        "2023-05-18", "2023-06-06", "2023-06-23", "2023-06-24", "2023-11-04", "2023-12-24",
        "2023-12-25", "2023-12-26", "2023-12-31",
        "2024-01-01", "2024-01-06", "2024-03-29", "2024-03-31", "2024-04-01", "2024-05-01",
        "2024-05-09", "2024-06-06", "2024-06-21", "2024-06-22", "2024-11-02", "2024-12-24",
        "2024-12-25", "2024-12-26", "2024-12-31",
    ]
)  # fmt: skip


def _yearly_profile(day_of_year: np.ndarray) -> np.ndarray:
    """Higher in summer (barbecue season) and in December, lowest in February."""
    angle = 2.0 * np.pi * (day_of_year - 1) / 365.25
    return 1.0 + 0.12 * np.cos(angle - 2.0 * np.pi * 196 / 365.25) + 0.07 * np.cos(2.0 * angle)


def _store_sales(rng: np.random.Generator, code: str, days: pd.DatetimeIndex) -> pd.DataFrame:
    store = STORES[code]
    day_of_week = days.day_of_week.to_numpy()
    day_of_year = days.day_of_year.to_numpy()
    years = (days - days[0]).days.to_numpy() / 365.25
    holiday = days.isin(HOLIDAYS)
    # Campaign weeks: about one week in eight, Thursday to Sunday.
    campaign_week = rng.random(len(days) // 7 + 2) < 0.13
    first_monday = days[0] - pd.Timedelta(days=int(day_of_week[0]))
    week_number = (days - first_monday).days.to_numpy() // 7
    promo = campaign_week[week_number] & (day_of_week >= 3)
    # The list price is raised a little twice a year; promotions take 20 % off.
    list_price = store.list_price_sek * (1.0 + 0.02 * np.floor(years * 2.0))
    price = (list_price * np.where(promo, 1.0 - PROMO_DISCOUNT, 1.0)).round(2)

    expected = (
        store.daily_units
        * (1.0 + store.yearly_growth * years)
        * WEEKLY_PROFILE[day_of_week]
        * _yearly_profile(day_of_year)
        * np.where(promo, store.promo_lift, 1.0)
        * (price / store.list_price_sek) ** PRICE_ELASTICITY
        * np.where(holiday, HOLIDAY_FACTOR, 1.0)
    )
    units = rng.poisson(expected * rng.lognormal(0.0, 0.06, len(days)))
    frame = pd.DataFrame(
        {
            "date": days.strftime("%Y-%m-%d"),
            "store": code,
            "day_of_week": day_of_week.astype(np.int64),
            "day_of_year": day_of_year.astype(np.int64),
            "promo": promo.astype(np.int64),
            "holiday": holiday.astype(np.int64),
            "price": price,
            "lag_7": pd.Series(units).shift(LAG_DAYS).to_numpy(),
            "units_sold": units.astype(np.int64),
        }
    )
    # The first week only exists to give the first reported day its lag.
    return frame.iloc[LAG_DAYS:].astype({"lag_7": np.int64})


def generate(first_day: date = FIRST_DAY, last_day: date = LAST_DAY, seed: int = SEED) -> pd.DataFrame:
    """Daily sales of every store from `first_day` to `last_day`, both included."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(pd.Timestamp(first_day) - pd.Timedelta(days=LAG_DAYS), pd.Timestamp(last_day))
    return pd.concat([_store_sales(rng, code, days) for code in STORES], ignore_index=True)


def main(output: Path = OUTPUT) -> None:
    """Write the dataset as CSV (LF line endings, so every platform produces the same bytes)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    generate().to_csv(output, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
