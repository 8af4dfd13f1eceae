"""Serving: predictions (batch now; the online predictor follows), the business-rules layer and
the Iceberg tables analysts query."""
