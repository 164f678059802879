"""modelfleet monitor: Watches live predictions for drift, decay and SLO breaches."""
