"""The lakehouse every domain shares: the Iceberg catalog, the one registry of Iceberg tables and
their migrations, the warehouse, and analyst SQL in Trino's dialect (`sql/`)."""
