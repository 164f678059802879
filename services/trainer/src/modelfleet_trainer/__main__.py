"""`python -m modelfleet_trainer` runs the service until SIGTERM."""

from .app import app, service

service.run(app)
