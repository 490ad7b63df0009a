"""Drift detection on frouros. Imports nothing of the project."""
