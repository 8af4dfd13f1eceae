"""The Iceberg catalog: pyiceberg's SQL catalog with a local warehouse in the embedded profile, an
Iceberg REST catalog (and S3) in prod. Trino reads the same catalog (deploy/trino/catalog)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from mlops_assets.settings import Environment, Settings

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

NAMESPACE = "predictions"


def catalog(settings: Settings) -> Catalog:
    from pyiceberg.catalog import load_catalog

    if settings.env is Environment.PROD:
        return load_catalog(
            "lakehouse",
            type="rest",
            uri=settings.iceberg_rest_uri,
            warehouse=settings.iceberg_warehouse,
        )
    folder = settings.data_dir / "iceberg"
    (folder / "warehouse").mkdir(parents=True, exist_ok=True)
    return load_catalog(
        "lakehouse",
        type="sql",
        uri=f"sqlite:///{folder / 'catalog.db'}",
        warehouse=(folder / "warehouse").as_uri(),
    )


def ensure_namespace(cat: Catalog, namespace: str = NAMESPACE) -> None:
    from pyiceberg.exceptions import NamespaceAlreadyExistsError

    with contextlib.suppress(NamespaceAlreadyExistsError):
        cat.create_namespace(namespace)


def partitioned_table(cat: Catalog, name: str, schema: Any, partition_field: str) -> Any:
    """Load `namespace.table`, or create it with an identity partition on `partition_field`
    (a concurrent creator winning the race is fine: its table is loaded)."""
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
    with table.update_spec() as spec:
        spec.add_identity(partition_field)
    return table
