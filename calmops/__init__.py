"""CalmOps: drift monitoring and safe retraining for ML models fed by files."""
