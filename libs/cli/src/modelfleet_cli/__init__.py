"""The `modelfleet` command line: the human door to the fleet."""
