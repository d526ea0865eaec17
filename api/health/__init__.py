"""Liveness and readiness probes for the stack runner, `make status` and orchestrators."""
