"""How flows are started and operated: watcher, deployments, CLI, prediction API, local stack."""
