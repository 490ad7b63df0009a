"""Prefect tasks, one module per step."""
