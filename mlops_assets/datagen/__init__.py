"""The synthetic e-commerce source (pure numpy/pyarrow, no Dagster). Import submodules directly:
`simulate` (the world), `landing` (file layout and validation), `tables` (names only)."""
