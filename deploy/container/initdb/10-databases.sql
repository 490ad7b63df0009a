-- the postgres image creates the prefect database (POSTGRES_DB); MLflow and CalmOps get their own
CREATE DATABASE mlflow OWNER calmops;
-- CalmOps' own shared state: each pipeline's ledger, rows awaiting labels (tables made by 'calmops db upgrade')
CREATE DATABASE calmops OWNER calmops;
