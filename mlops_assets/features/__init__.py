"""Feature store plumbing (Feast) and versioned training data (DVC), without Dagster."""
