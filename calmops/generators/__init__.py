"""Data generators: synthetic (river), real (copula), clinic, drift injection, dynamics. Imports nothing of the project."""
