"""`python -m modelfleet_serving` runs the service until SIGTERM."""

from .app import app, service

service.run(app)
