"""modelfleet trainer: Trains candidate models from specs and dataset versions on Ray, tracked in MLflow."""
