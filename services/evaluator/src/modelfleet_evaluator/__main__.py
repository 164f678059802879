"""`python -m modelfleet_evaluator` runs the service until SIGTERM."""

from .app import app, service

service.run(app)
