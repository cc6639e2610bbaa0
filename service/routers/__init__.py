"""One router per resource: rank, health, metrics, admin."""
