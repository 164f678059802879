"""modelfleet deployer: Drives each model through shadow, canary, approval, promotion and rollback."""
