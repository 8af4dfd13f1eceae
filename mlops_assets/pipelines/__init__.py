"""Kubeflow Pipelines v2: the training pipeline and its components."""
