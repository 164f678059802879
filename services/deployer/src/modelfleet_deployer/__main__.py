"""`python -m modelfleet_deployer` runs the service until SIGTERM."""

from .app import app, service

service.run(app)
