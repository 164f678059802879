"""modelfleet registry: registers evaluated candidates in MLflow with lineage and signatures."""
