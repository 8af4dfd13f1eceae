"""Order feature views over gold.order_features: one row per order, its own attributes and the
customer's behaviour strictly before it (point in time in dbt).

An order is scored when it is placed, so its row is served for a day (TTL): the batch population
of day D is D's orders. The customer's own views (feature_views.py) are shared with the other
models and joined to each order by `customer_id`, as of the order.
"""

from datetime import timedelta

from data_sources import order_features_source
from entities import order
from feast import FeatureView, Field
from feast.types import Float64, Int64, String

ORDER_TTL = timedelta(days=1)
OWNER = {"owner": "ml-platform@example.com", "source": "dbt:gold.order_features"}

order_details = FeatureView(
    name="order_details",
    entities=[order],
    ttl=ORDER_TTL,
    schema=[
        Field(name="amount_usd", dtype=Float64, description="order amount"),
        Field(name="items", dtype=Int64, description="items in the order"),
        Field(name="discount_pct", dtype=Float64, description="discount, percent"),
        Field(name="payment_method", dtype=String, description="how it was paid"),
        Field(name="device", dtype=String, description="where it was placed"),
        Field(name="ship_country_code", dtype=String, description="where it ships"),
        Field(
            name="ship_country_mismatch", dtype=Int64, description="1: not the account's country"
        ),
    ],
    source=order_features_source,
    online=True,
    description="What the order is.",
    tags={**OWNER, "group": "order"},
)

order_velocity = FeatureView(
    name="order_velocity",
    entities=[order],
    ttl=ORDER_TTL,
    schema=[
        Field(name="account_age_days", dtype=Float64, description="account age at the order"),
        Field(name="customer_orders_prev_24h", dtype=Int64, description="orders, 24 h before"),
        Field(name="customer_orders_prev_7d", dtype=Int64, description="orders, 7 days before"),
        Field(name="customer_orders_prev_90d", dtype=Int64, description="orders, 90 days before"),
        Field(
            name="amount_vs_customer_avg_90d",
            dtype=Float64,
            description="amount / the customer's mean order of the 90 days before",
        ),
        Field(
            name="distinct_ship_countries_30d",
            dtype=Int64,
            description="ship countries of the customer's orders, 30 days before",
        ),
    ],
    source=order_features_source,
    online=True,
    description="How the order compares with the customer's history.",
    tags={**OWNER, "group": "velocity"},
)
