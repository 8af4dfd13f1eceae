"""The Iceberg catalog: pyiceberg's SQL catalog over a folder (the embedded profile) or an Iceberg
REST catalog with S3 (production). Trino reads the same catalog (deploy/trino/catalog). Which one
a process uses is decided by `mlops_assets.resources.resources_for`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

CATALOG_NAME = "lakehouse"


def sql_catalog(folder: str | Path) -> Catalog:
    """pyiceberg's SQL catalog: `catalog.db` (SQLite) and the table files under `warehouse/`."""
    folder = Path(folder)
    (folder / "warehouse").mkdir(parents=True, exist_ok=True)
    return _load(
        type="sql",
        uri=f"sqlite:///{folder / 'catalog.db'}",
        warehouse=(folder / "warehouse").as_uri(),
    )


def rest_catalog(
    uri: str,
    warehouse: str,
    credential: str | None = None,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
) -> Catalog:
    """An Iceberg REST catalog; S3 credentials come from the usual AWS variables. Without a
    region pyiceberg asks AWS for the bucket's (a DNS failure and a pause per process on an S3
    that is not AWS)."""
    properties = {"type": "rest", "uri": uri, "warehouse": warehouse}
    if credential:
        properties["credential"] = credential
    if s3_endpoint:
        properties["s3.endpoint"] = s3_endpoint
    if s3_region:
        properties["s3.region"] = s3_region
    return _load(**properties)


def reopen(properties: dict[str, str]) -> Catalog:
    """The same catalog in another process (`catalog.properties` travel, the object does not)."""
    return _load(**properties)


def _load(**properties: str) -> Catalog:
    from pyiceberg.catalog import load_catalog

    from mlops_assets.lakehouse import pyiceberg_fixes

    pyiceberg_fixes.install()  # appends whose cost does not grow with the snapshot count
    return load_catalog(CATALOG_NAME, **properties)


def ensure_namespace(cat: Catalog, namespace: str) -> None:
    from pyiceberg.exceptions import NamespaceAlreadyExistsError

    with contextlib.suppress(NamespaceAlreadyExistsError):
        cat.create_namespace(namespace)


def partitioned_table(cat: Catalog, name: str, schema: Any, partition_field: str | None) -> Any:
    """Load `namespace.table`, or create it (with an identity partition on `partition_field`, if
    any). A concurrent creator winning the race is fine: its table is loaded."""
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError

    ensure_namespace(cat, name.split(".")[0])
    try:
        return cat.load_table(name)
    except NoSuchTableError:
        pass
    try:
        table = cat.create_table(name, schema=schema)
    except TableAlreadyExistsError:
        return cat.load_table(name)
    if partition_field:
        with table.update_spec() as spec:
            spec.add_identity(partition_field)
    return table
