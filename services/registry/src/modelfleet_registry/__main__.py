"""`python -m modelfleet_registry` runs the service until SIGTERM."""

from .app import app, service

service.run(app)
