"""modelfleet's development kit: what runs a fleet on one machine, never part of a service image.

- Docker-free launchers of the local infrastructure: ``python -m modelfleet_devkit.kafka start``
  (`make kafka`), ``python -m modelfleet_devkit.postgres start`` (`make postgres`),
  ``python -m modelfleet_devkit.mlflow start`` (`make mlflow`); state under ``$FLEET_LOCAL_HOME``
  (default ``./.local``);
- the local fleet, every service as a background process (`fleet`, ``modelfleet-dev up|down|status``);
- the closed-loop demo and its traffic driver (`demo`, `loop_driver`: ``modelfleet-dev demo``,
  `make demo`), also used by the closed-loop benchmark.

The operator's CLI (`modelfleet`) only reads what these write (`modelfleet_cli.local_home`).
"""
