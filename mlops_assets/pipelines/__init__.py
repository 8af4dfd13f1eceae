"""Kubeflow Pipelines v2: the training pipeline, its components, and the two runners
(`kfp.local` and a cluster through `kfp.Client`)."""
