#!/usr/bin/env bash
# Runs once when the PostgreSQL volume is created: a separate database for MLflow
# (Optuna and MLflow both keep an alembic_version table, so they cannot share one).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"${MLFLOW_DB:-mlflow}\""
