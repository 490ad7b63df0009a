-- the postgres image creates the prefect database (POSTGRES_DB); MLflow gets its own
CREATE DATABASE mlflow OWNER calmops;
