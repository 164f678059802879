"""`python -m modelfleet_ingest` runs the service until SIGTERM."""

from .app import app, service

service.run(app)
