"""Command-line interface of the service package: ``python -m service --help``."""
