"""One versioned feature service per model: a model names exactly the features it was trained on."""

from feast import FeatureService
from feature_views import customer_orders, customer_profile, customer_recency, customer_support
from order_feature_views import order_details, order_velocity

churn_v1 = FeatureService(
    name="churn_v1",
    features=[customer_profile, customer_orders, customer_support, customer_recency],
    description="Features of the churn model, version 1.",
    tags={"owner": "ml-platform@example.com", "model": "churn", "version": "1"},
)

# The same customer views as churn (one definition, two services), joined to each order by its
# customer_id as of the order.
fraud_v1 = FeatureService(
    name="fraud_v1",
    features=[order_details, order_velocity, customer_profile, customer_orders, customer_support],
    description="Features of the fraud model, version 1: the order and its customer.",
    tags={"owner": "ml-platform@example.com", "model": "fraud", "version": "1"},
)
