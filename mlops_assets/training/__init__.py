"""Models: the estimators, the MLflow registry and its aliases, the promotion gate and the decision
log (no Dagster; the KFP pipeline that trains them is in `pipelines/`)."""
