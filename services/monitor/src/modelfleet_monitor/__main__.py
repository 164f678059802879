"""`python -m modelfleet_monitor` runs the service until SIGTERM."""

from .app import app, service

service.run(app)
