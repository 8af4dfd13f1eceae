"""Training on Kubeflow Pipelines, the MLflow registry and the promotion gate, one set per model."""
