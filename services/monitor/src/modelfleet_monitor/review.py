"""The periodic review of a model: what happened since the last one, and what to do. Pure, no I/O.

Regulators and model-risk teams ask for a review of every model at a cadence set by its risk class
(`review_interval_seconds`). The monitor keeps one `ReviewPeriod` per model, adds every health
window, drift and decay finding and deployment decision to it, and when the period is over turns
it into a `ModelReviewed` with one decision:

- `canary`: a new version is in shadow, canary or awaiting approval; let the rollout finish;
- `rollback`: a version was rolled back in the period; find out why before the next one;
- `retrain`: inputs drifted or live performance decayed and no new champion came since;
- `retire`: nothing was served in the whole period; nobody uses the model;
- `keep`: none of the above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Decision = Literal["keep", "retrain", "canary", "rollback", "retire"]


@dataclass
class ReviewPeriod:
    """Everything that happened to one model since its last review."""

    start: datetime
    requests: int = 0
    errors: int = 0
    labelled: int = 0
    score_sum: float = 0.0
    compute_ms: float = 0.0
    business_value: float | None = None
    drift_events: int = 0
    max_drift_share: float | None = None
    decays: int = 0
    rollbacks: int = 0
    incidents: list[str] = field(default_factory=list)
    #: Set by a drift or decay finding, cleared by a promotion: is a retrain still owed?
    needs_retrain: str | None = None

    def add_health(
        self,
        requests: int,
        errors: int,
        labelled: int,
        score_sum: float,
        compute_ms: float,
        value: float | None,
    ) -> None:
        """Add one health window."""
        self.requests += requests
        self.errors += errors
        self.labelled += labelled
        self.score_sum += score_sum
        self.compute_ms += compute_ms
        if value is not None:
            self.business_value = (self.business_value or 0.0) + value

    def add_drift(self, share: float, summary: str) -> None:
        self.drift_events += 1
        self.max_drift_share = max(share, self.max_drift_share or 0.0)
        self.needs_retrain = f"inputs drifted ({summary})"

    def add_decay(self, summary: str) -> None:
        self.decays += 1
        self.incidents.append(f"decay: {summary}")
        self.needs_retrain = f"live performance decayed ({summary})"

    def add_incident(self, line: str) -> None:
        self.incidents.append(line)

    def add_rollback(self, line: str) -> None:
        self.rollbacks += 1
        self.incidents.append(line)

    def add_promotion(self) -> None:
        self.needs_retrain = None

    def live_metric_value(self) -> float | None:
        return self.score_sum / self.labelled if self.labelled else None


def decide(
    period: ReviewPeriod, *, challenger: str | None, stage: str | None, end: datetime
) -> tuple[Decision, str]:
    """The review's decision and its reason, with the numbers."""
    days = (end - period.start).total_seconds() / 86400
    if challenger is not None:
        return "canary", f"v{challenger} is in {stage or 'rollout'}: let it finish before deciding"
    if period.rollbacks:
        return "rollback", f"{period.rollbacks} rollback(s) in the period: {period.incidents[-1]}"
    if period.needs_retrain is not None:
        return "retrain", f"{period.needs_retrain}, and no new champion since"
    if period.requests == 0:
        return "retire", f"no prediction served in {days:.3g} days: retire the model if nobody needs it"
    live = period.live_metric_value()
    live_text = f", live score {live:.3g} on {period.labelled} labels" if live is not None else ""
    return "keep", (
        f"{period.requests} predictions, {period.errors} errors{live_text}, "
        f"{period.drift_events} drift event(s), {len(period.incidents)} incident(s)"
    )
