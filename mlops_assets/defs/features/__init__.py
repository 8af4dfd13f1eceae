"""Features and training data: Feast over gold tables, DVC-versioned training sets per model."""
