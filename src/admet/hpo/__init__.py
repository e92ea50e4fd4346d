"""HPO study service: Optuna studies of Chemprop ensembles, RDB-backed and mirrored to MLflow."""
