"""The periodic review's decision, from what happened in the period."""

from datetime import UTC, datetime, timedelta

from modelfleet_monitor.review import ReviewPeriod, decide

START = datetime(2026, 11, 1, tzinfo=UTC)
END = START + timedelta(days=30)


def test_a_version_in_rollout_means_let_the_canary_finish() -> None:
    period = ReviewPeriod(start=START, requests=100)
    period.add_drift(0.6, "temperature psi 0.4")
    assert decide(period, challenger="3", stage="canary", end=END) == (
        "canary",
        "v3 is in canary: let it finish before deciding",
    )


def test_a_rollback_in_the_period_is_the_decision_with_its_reason() -> None:
    period = ReviewPeriod(start=START, requests=100)
    period.add_rollback("rollback v3 -> v2: live accuracy 0.61 below 0.88")
    decision, reason = decide(period, challenger=None, stage=None, end=END)
    assert decision == "rollback"
    assert "live accuracy 0.61" in reason


def test_drift_without_a_new_champion_since_means_retrain() -> None:
    period = ReviewPeriod(start=START, requests=100)
    period.add_drift(0.5, "drift share 0.50")
    assert decide(period, challenger=None, stage=None, end=END)[0] == "retrain"
    period.add_promotion()
    assert decide(period, challenger=None, stage=None, end=END)[0] == "keep"


def test_decay_means_retrain_and_is_an_incident() -> None:
    period = ReviewPeriod(start=START, requests=100)
    period.add_decay("v1 live accuracy 0.6 < 0.8")
    decision, reason = decide(period, challenger=None, stage=None, end=END)
    assert (decision, period.incidents) == ("retrain", ["decay: v1 live accuracy 0.6 < 0.8"])
    assert reason.startswith("live performance decayed")


def test_a_model_nobody_called_for_the_whole_period_may_be_retired() -> None:
    decision, reason = decide(ReviewPeriod(start=START), challenger=None, stage=None, end=END)
    assert decision == "retire"
    assert "no prediction served in 30 days" in reason


def test_a_quiet_healthy_period_keeps_the_model_and_says_what_it_saw() -> None:
    period = ReviewPeriod(start=START)
    period.add_health(requests=500, errors=1, labelled=200, score_sum=180.0, compute_ms=900.0, value=2880.0)
    decision, reason = decide(period, challenger=None, stage=None, end=END)
    assert decision == "keep"
    assert (
        reason == "500 predictions, 1 errors, live score 0.9 on 200 labels, 0 drift event(s), 0 incident(s)"
    )
    assert period.business_value == 2880.0
