"""modelfleet serving: Serves the fleet: many models per process, routed by the deployments topic."""
