"""Pipelines: the only code that reads configs. CLI commands and notebooks call these functions."""
