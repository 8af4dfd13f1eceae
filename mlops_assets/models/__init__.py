"""Model configs, training/evaluation code shared by the KFP components, the MLflow registry and
the promotion gate."""
