"""Prefect flows, one module per pipeline kind."""
