-- How the label engine banded each day's customers, and how many bands came from an override.
SELECT
    prediction_date,
    risk_band,
    count(*) AS customers,
    count_if(rule <> 'score') AS raised_by_override
FROM iceberg.predictions.churn_daily
GROUP BY prediction_date, risk_band
ORDER BY prediction_date, risk_band
