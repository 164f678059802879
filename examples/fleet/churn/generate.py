"""Synthetic subscribers of a Nordic telecom operator: one row per subscriber and market.

Each subscriber has a contract, a tenure, a monthly bill and a history of support calls. Whether
they churned (cancelled within the following 90 days) follows the patterns retention teams see:
month-to-month contracts and short tenures churn most; every support call (a sign of a problem
that was not solved) raises the risk; expensive plans and paying by invoice raise it a little; a
two-year contract holds customers in. Markets differ in price level and competition.

Run `python generate.py` to rewrite `data/subscribers.csv`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240902
OUTPUT = Path(__file__).parent / "data" / "subscribers.csv"


@dataclass(frozen=True)
class Market:
    """Price level and competitive pressure of one country."""

    price_level: float  # multiplies the EUR list price of every plan
    competition: float  # log-odds of churn added by competitors' offers


MARKETS = {
    "se": Market(price_level=1.0, competition=0.0),
    "no": Market(price_level=1.2, competition=-0.2),
    "dk": Market(price_level=0.95, competition=0.15),
    "fi": Market(price_level=0.85, competition=0.3),
}
CONTRACTS = {"monthly": 1.5, "yearly": -0.6, "two_year": -2.2}  # log-odds of churn
PAYMENT_METHODS = {"card": 0.1, "direct_debit": -0.35, "invoice": 0.5}  # log-odds of churn
PAYMENT_SHARES = (0.45, 0.35, 0.20)
AGE_BANDS = ("18-29", "30-44", "45-64", "65+")
AGE_SHARES = (0.2, 0.3, 0.32, 0.18)
PLAN_PRICES_EUR = np.array([19.0, 29.0, 39.0, 49.0, 69.0, 89.0])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    probability: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return probability


def _market_subscribers(rng: np.random.Generator, code: str, subscribers: int) -> pd.DataFrame:
    market = MARKETS[code]
    tenure = np.ceil(rng.gamma(1.4, 16.0, subscribers)).clip(1, 72).astype(np.int64)
    # Long-standing customers have mostly moved to fixed-term contracts.
    loyal = np.clip(tenure / 72.0, 0.0, 1.0)
    contract_probabilities = np.column_stack([0.7 - 0.4 * loyal, 0.2 + 0.15 * loyal, 0.1 + 0.25 * loyal])
    draws = rng.random(subscribers)[:, None] > np.cumsum(contract_probabilities, axis=1)
    contract = np.array(list(CONTRACTS))[draws.sum(axis=1)]
    payment = rng.choice(list(PAYMENT_METHODS), size=subscribers, p=PAYMENT_SHARES)
    age_band = rng.choice(AGE_BANDS, size=subscribers, p=AGE_SHARES)

    plan = rng.integers(0, len(PLAN_PRICES_EUR), subscribers)
    add_ons = rng.choice([0.0, 5.0, 10.0], size=subscribers, p=(0.6, 0.3, 0.1))
    charges = (PLAN_PRICES_EUR[plan] * market.price_level + add_ons) * rng.normal(1.0, 0.03, subscribers)
    data_usage = rng.lognormal(np.log(2.0 + 0.5 * PLAN_PRICES_EUR[plan] / 10.0) + 1.0, 0.5, subscribers)

    # Unsolved problems: drive support calls and churn alike, but are only seen through the calls.
    problems = rng.normal(0.0, 1.0, subscribers)
    support_calls = rng.poisson(np.exp(-0.3 + 0.7 * problems)).clip(0, 20)

    churn_log_odds = (
        -2.1
        + market.competition
        + np.array([CONTRACTS[c] for c in contract])
        - 0.06 * tenure
        + 0.9 * support_calls
        + 0.04 * (charges - 50.0)
        + np.array([PAYMENT_METHODS[p] for p in payment])
        + 0.15 * problems
    )
    churned = rng.random(subscribers) < _sigmoid(churn_log_odds)
    return pd.DataFrame(
        {
            "subscriber_id": [f"{code}-{n:06d}" for n in rng.choice(1_000_000, subscribers, replace=False)],
            "market": code,
            "age_band": age_band,
            "tenure_months": tenure,
            "contract_type": contract,
            "payment_method": payment,
            "monthly_charges": charges.round(2),
            "data_usage_gb": data_usage.round(1),
            "support_calls_90d": support_calls.astype(np.int64),
            "churned": churned.astype(np.int64),
        }
    )


def generate(subscribers_per_market: int = 4000, seed: int = SEED) -> pd.DataFrame:
    """`subscribers_per_market` subscribers of every market with their churn outcome."""
    rng = np.random.default_rng(seed)
    return pd.concat(
        [_market_subscribers(rng, code, subscribers_per_market) for code in MARKETS], ignore_index=True
    )


def main(output: Path = OUTPUT) -> None:
    """Write the dataset as CSV (LF line endings, so every platform produces the same bytes)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    generate().to_csv(output, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
