"""Gold tables as Feast sources: Parquet written by dbt-duckdb (in the data folder, or on S3 on
the services profile), Iceberg via Trino in prod. The environment switch is the project's one
(`MLOPS_ENV`)."""

from feast import Field, FileSource, RequestSource
from feast.types import UnixTimestamp

from mlops_assets.settings import Environment, get_settings

_settings = get_settings()

if _settings.env is Environment.PROD:
    from feast.infra.offline_stores.contrib.trino_offline_store.trino_source import TrinoSource

    customer_features_source = TrinoSource(
        name="gold_customer_features",
        table="gold.customer_features",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description="dbt gold.customer_features (Iceberg, read through Trino).",
        owner="ml-platform@example.com",
    )
    order_features_source = TrinoSource(
        name="gold_order_features",
        table="gold.order_features",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description="dbt gold.order_features (Iceberg, read through Trino).",
        owner="ml-platform@example.com",
    )
else:
    customer_features_source = FileSource(
        name="gold_customer_features",
        path=f"{_settings.gold_uri}/customer_features.parquet",
        s3_endpoint_override=_settings.s3_env().get("AWS_ENDPOINT_URL"),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description="dbt gold.customer_features (Parquet written by dbt-duckdb).",
        owner="ml-platform@example.com",
    )
    order_features_source = FileSource(
        name="gold_order_features",
        path=f"{_settings.gold_uri}/order_features.parquet",
        s3_endpoint_override=_settings.s3_env().get("AWS_ENDPOINT_URL"),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description="dbt gold.order_features (Parquet written by dbt-duckdb).",
        owner="ml-platform@example.com",
    )

# The time of the request: recency features must be measured from it, not from the snapshot.
scoring_request = RequestSource(
    name="scoring_request",
    schema=[Field(name="request_ts", dtype=UnixTimestamp)],
    description="Values known only when a prediction is requested.",
)
