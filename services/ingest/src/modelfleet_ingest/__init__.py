"""modelfleet ingest: Turns data batches into immutable, content-addressed dataset versions."""
