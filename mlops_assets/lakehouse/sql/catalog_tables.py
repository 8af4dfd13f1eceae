"""The catalog's Iceberg tables as Trino sees them: named iceberg.<namespace>.<table>, each column
typed as Trino's Iceberg connector types it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyiceberg import types as t
from sqlglot.schema import MappingSchema

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

TRINO_CATALOG = "iceberg"

TableKey = tuple[str, str]  # (schema, table), lowercase as Trino resolves them

_SIMPLE_TYPES = {
    t.BooleanType: "boolean",
    t.IntegerType: "integer",
    t.LongType: "bigint",
    t.FloatType: "real",
    t.DoubleType: "double",
    t.DateType: "date",
    t.TimeType: "time(6)",
    t.TimestampType: "timestamp(6)",
    t.TimestamptzType: "timestamp(6) with time zone",
    t.StringType: "varchar",
    t.UUIDType: "uuid",
    t.BinaryType: "varbinary",
    t.FixedType: "varbinary",
}
_SIZED_DECIMAL = re.compile(r"^decimal\(.*\)$")


def trino_type(iceberg_type: Any) -> str:
    """The Trino type name of an Iceberg type."""
    for kind, name in _SIMPLE_TYPES.items():
        if isinstance(iceberg_type, kind):
            return name
    if isinstance(iceberg_type, t.DecimalType):
        return f"decimal({iceberg_type.precision}, {iceberg_type.scale})"
    if isinstance(iceberg_type, t.ListType):
        return f"array({trino_type(iceberg_type.element_type)})"
    if isinstance(iceberg_type, t.MapType):
        return f"map({trino_type(iceberg_type.key_type)}, {trino_type(iceberg_type.value_type)})"
    if isinstance(iceberg_type, t.StructType):
        fields = ", ".join(f'"{f.name}" {trino_type(f.field_type)}' for f in iceberg_type.fields)
        return f"row({fields})"
    return str(iceberg_type)


class CatalogTables:
    """The tables of a catalog by (schema, table), each loaded when first needed: a query loads
    only the tables it names."""

    def __init__(
        self,
        catalog: Catalog | None,
        identifiers: dict[TableKey, tuple[str, ...]],
        schemas: list[str],
    ) -> None:
        self._catalog = catalog
        self._identifiers = identifiers
        self._loaded: dict[TableKey, Table] = {}
        self.schemas = schemas

    @classmethod
    def of(cls, catalog: Catalog) -> CatalogTables:
        identifiers, schemas = {}, []
        for namespace in catalog.list_namespaces():
            schema = ".".join(namespace)
            schemas.append(schema)
            for identifier in catalog.list_tables(namespace):
                identifiers[(schema, identifier[-1])] = identifier
        return cls(catalog, identifiers, schemas)

    @classmethod
    def empty(cls) -> CatalogTables:
        return cls(None, {}, [])

    def names(self) -> set[TableKey]:
        return set(self._identifiers)

    def get(self, key: TableKey) -> Table | None:
        if key not in self._identifiers:
            return None
        if key not in self._loaded:
            assert self._catalog is not None  # only an empty set of tables has no catalog
            self._loaded[key] = self._catalog.load_table(self._identifiers[key])
        return self._loaded[key]

    def fields(self, keys: set[TableKey]) -> Iterator[Any]:
        """The Iceberg fields of those of `keys` that are tables of the catalog."""
        for key in sorted(keys & self.names()):
            yield from self.get(key).schema().fields

    def column_types(self, keys: set[TableKey]) -> Iterator[str]:
        """The Trino types of the columns of those of `keys` that are tables of the catalog."""
        return (trino_type(field.field_type) for field in self.fields(keys))

    def sqlglot_schema(self, used: set[TableKey]) -> MappingSchema:
        """sqlglot's schema of the tables a query uses, in Trino type names; decimals without
        precision so that sqlglot's coercion lets double win over decimal, as Trino does."""
        tables: dict[str, dict[str, dict[str, str]]] = {}
        for schema, name in sorted(used & self.names()):
            tables.setdefault(schema, {})[name] = {
                field.name.lower(): _SIZED_DECIMAL.sub("decimal", trino_type(field.field_type))
                for field in self.fields({(schema, name)})
            }
        # Names are already normalized (Trino lowercases identifiers): no re-parsing of each.
        schema = {TRINO_CATALOG: tables} if tables else {}
        return MappingSchema(schema, dialect="trino", normalize=False)
