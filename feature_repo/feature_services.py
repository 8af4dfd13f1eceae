"""One versioned feature service per model: a model names exactly the features it was trained on."""

from feast import FeatureService
from feature_views import customer_orders, customer_profile, customer_recency, customer_support

churn_v1 = FeatureService(
    name="churn_v1",
    features=[customer_profile, customer_orders, customer_support, customer_recency],
    description="Features of the churn model, version 1.",
    tags={"owner": "ml-platform@example.com", "model": "churn", "version": "1"},
)
