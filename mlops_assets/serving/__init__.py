"""Serving: the KServe model server and predictor, deployments with canary and rollback, the
InferenceService for production, the inference log, batch scoring and the label engine (no Dagster)."""
