"""Command-line interface of the training package: ``python -m training --help``."""
