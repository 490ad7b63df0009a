"""What a pipeline is, with no orchestration: spec, store, registry, breaker, metrics, estimators, settings."""
