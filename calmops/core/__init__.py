"""What a pipeline is: spec, store and ledger, registry, breaker, metrics, estimators, settings, names and errors.

No flows or tasks live here. Prefect appears only where its state is kept (the breaker's Block, run logs
forwarded to a flow run, the Prefect environment of a run), MLflow only in the registry.
"""
