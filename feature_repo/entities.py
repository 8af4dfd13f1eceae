from feast import Entity, ValueType

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A shop customer (dim_customers.customer_id).",
    tags={"owner": "ml-platform@example.com", "domain": "customers"},
)

order = Entity(
    name="order",
    join_keys=["order_id"],
    value_type=ValueType.INT64,
    description="A shop order (silver.fct_orders.order_id).",
    tags={"owner": "ml-platform@example.com", "domain": "orders"},
)
