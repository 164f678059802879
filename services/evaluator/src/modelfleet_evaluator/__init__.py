"""modelfleet evaluator: Evaluates candidates against policy-as-code gates."""
