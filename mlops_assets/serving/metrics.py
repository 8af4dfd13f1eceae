"""The model server's Prometheus metrics (served on /metrics beside KServe's own)."""

from prometheus_client import Counter, Histogram

PREDICTIONS = Counter("mlops_predictions", "Rows scored online", ["model", "model_version", "arm"])
ERRORS = Counter("mlops_prediction_errors", "Rejected or failed requests", ["model", "reason"])
# The reasons a request is rejected (label `reason` of ERRORS; the README lists status and cause).
REASONS = (
    "invalid_json",  # 400: the body is not JSON (syntax, NaN/Infinity, bad UTF-8, empty)
    "invalid_input",  # 400: JSON, but not a valid request (fields, types, shapes, ranges, limits)
    "unknown_customer",  # 400: a customer with no online features
    "unknown_entity",  # 400: the same for a model whose entity is not the customer
    "request_before_features",  # 400: request_ts earlier than the customer's feature values
    "unsupported_media_type",  # 415: a content type other than application/json
    "payload_too_large",  # 413: a body over serving.max_body_bytes
    "unknown_model",  # 404: a model this server does not serve
    "model_not_loaded",  # 404: a configured model with no deployment loaded on this server yet
    "unknown_route",  # 404/405: no such path, or a method the path does not take
    "feature_store_unavailable",  # 503: the online feature store cannot be reached (retry later)
    "internal_error",  # 500: a server fault (not the client's mistake), logged with a traceback
)
LATENCY = Histogram(
    "mlops_predict_latency_seconds",
    "Feature lookup + scoring + label engine, per request",
    ["model", "model_version"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.5),
)
