-- Accuracy, precision and recall per prediction day and model version, once actuals have arrived.
-- Ratios are computed in double: in Trino avg() of a decimal such as 1.0 is rounded to its scale.
SELECT
    prediction_date,
    model_version,
    count(*) AS labelled,
    round(CAST(count_if(prediction = actual) AS double) / count(*), 6) AS accuracy,
    round(CAST(count_if(prediction = 1 AND actual = 1) AS double) / nullif(count_if(prediction = 1), 0), 6) AS precision,
    round(CAST(count_if(prediction = 1 AND actual = 1) AS double) / nullif(count_if(actual = 1), 0), 6) AS recall
FROM iceberg.predictions.churn_daily
WHERE actual IS NOT NULL
GROUP BY prediction_date, model_version
ORDER BY prediction_date, model_version
