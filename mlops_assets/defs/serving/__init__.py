"""Serving: daily batch predictions and actuals, the online deployment with its canary, promote and
rollback jobs and the canary sensor, one set per model."""
