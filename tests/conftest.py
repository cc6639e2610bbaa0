"""Registers the shared fixture modules (append new ones to the list)."""

pytest_plugins = [
    "tests.fixtures.redis_server",
    "tests.fixtures.redis_cluster",
    "tests.fixtures.published_model",
    "tests.fixtures.uvicorn_server",
    "tests.fixtures.trained_run",
    "tests.fixtures.zoo",
]
