"""Open-loop load test of a running service (python -m service loadtest)."""
