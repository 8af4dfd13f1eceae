"""Customer feature views over gold.customer_features.

Snapshots are weekly, so a TTL of 14 days lets every request find the latest snapshot while a
customer who dropped out of the active set (no order in 90 days) stops being served stale values.
"""

from datetime import timedelta
from typing import Any

from data_sources import customer_features_source, scoring_request
from entities import customer
from feast import FeatureView, Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String, UnixTimestamp

SNAPSHOT_TTL = timedelta(days=14)
OWNER = {"owner": "ml-platform@example.com", "source": "dbt:gold.customer_features"}

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="country_code", dtype=String, description="ISO country of the account"),
        Field(name="acquisition_channel", dtype=String, description="how the customer came"),
        Field(name="plan", dtype=String, description="free, basic or premium"),
        Field(name="tenure_days", dtype=Int64, description="days since sign-up"),
        Field(name="age_years", dtype=Int64, description="age at the snapshot"),
        Field(name="segment", dtype=String, description="rule-based RFM segment"),
    ],
    source=customer_features_source,
    online=True,
    description="Who the customer is.",
    tags={**OWNER, "group": "profile"},
)

customer_orders = FeatureView(
    name="customer_orders",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="lifetime_value_usd", dtype=Float64, description="completed spend to date"),
        Field(name="order_count_lifetime", dtype=Int64, description="orders to date"),
        Field(name="order_count_30d", dtype=Int64, description="orders in the last 30 days"),
        Field(name="order_count_90d", dtype=Int64, description="orders in the last 90 days"),
        Field(name="spend_30d_usd", dtype=Float64, description="completed spend, 30 days"),
        Field(name="spend_90d_usd", dtype=Float64, description="completed spend, 90 days"),
        Field(
            name="avg_order_value_90d_usd", dtype=Float64, description="mean order value, 90 days"
        ),
        Field(
            name="discount_order_share_90d", dtype=Float64, description="share of discounted orders"
        ),
        Field(name="avg_discount_pct_90d", dtype=Float64, description="mean discount, percent"),
        Field(name="return_share_90d", dtype=Float64, description="share of returned orders"),
        Field(name="days_since_last_order", dtype=Int64, description="at the snapshot time"),
        Field(name="last_order_at", dtype=UnixTimestamp, description="time of the last order"),
    ],
    source=customer_features_source,
    online=True,
    description="What and how often the customer buys.",
    tags={**OWNER, "group": "orders"},
)

customer_support = FeatureView(
    name="customer_support",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="ticket_count_30d", dtype=Int64, description="tickets opened, 30 days"),
        Field(name="ticket_count_90d", dtype=Int64, description="tickets opened, 90 days"),
        Field(name="open_ticket_count", dtype=Int64, description="unresolved at the snapshot"),
        Field(
            name="high_priority_ticket_count_90d", dtype=Int64, description="high priority, 90 days"
        ),
    ],
    source=customer_features_source,
    online=True,
    description="How much friction the customer meets.",
    tags={**OWNER, "group": "support"},
)


@on_demand_feature_view(
    sources=[customer_orders, scoring_request],
    # Feast compares this schema with the inferred one, which carries no descriptions.
    schema=[Field(name="days_since_last_order_now", dtype=Float64)],
    # Python mode: the online path runs this on plain lists, without a pandas round trip.
    mode="python",
    description=(
        "Recency at request time: days_since_last_order_now is measured from the last order to the "
        "request, not to the (up to a week old) snapshot."
    ),
    tags=OWNER,
)
def customer_recency(inputs: dict[str, Any]) -> dict[str, Any]:
    # Self-contained: Feast stores this function's source in the registry and runs it from there.
    # Online requests carry a row or a few (a plain loop is fastest); batch scoring a million.
    from datetime import UTC, datetime

    import pandas as pd

    last_orders, requests = inputs["last_order_at"], inputs["request_ts"]
    if len(last_orders) > 64:
        # cache=False: pandas' cache first samples the column element by element, for nothing
        # on datetime columns (most of the time batch scoring spent here).
        last = pd.to_datetime(pd.Series(last_orders), utc=True, cache=False)
        now = pd.to_datetime(pd.Series(requests), utc=True, cache=False)
        days = ((now - last).dt.total_seconds() / 86_400.0).to_numpy(dtype="float64")
        values = days.tolist()
        if pd.isna(days).any():
            values = [None if v != v else v for v in values]  # NaN -> None, as online
        return {"days_since_last_order_now": values}

    def as_utc(value):
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, tz=UTC)
        value = pd.Timestamp(value).to_pydatetime()
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    return {
        "days_since_last_order_now": [
            None
            if last is None or now is None
            else (as_utc(now) - as_utc(last)).total_seconds() / 86_400.0
            for last, now in zip(last_orders, requests, strict=True)
        ]
    }
