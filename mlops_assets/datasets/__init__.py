"""Training sets: labels joined point-in-time to a feature service, split by time, versioned with DVC
(no Dagster)."""
