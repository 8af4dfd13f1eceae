-- Fraud, per week of orders: how many the model flagged, how precise the flags were among orders
-- whose 60-day chargeback window has closed, and how many orders still wait for it (a chargeback
-- may still come: their actual is NULL).
SELECT
    date_trunc('week', prediction_date) AS week,
    count(*) AS orders,
    count_if(prediction = 1) AS flagged,
    count_if(prediction = 1 AND actual IS NOT NULL) AS flagged_labelled,
    round(CAST(count_if(prediction = 1 AND actual = 1) AS double) / nullif(count_if(prediction = 1 AND actual IS NOT NULL), 0), 6) AS flagged_precision,
    count_if(actual = 1) AS chargebacks,
    count_if(actual IS NULL) AS pending
FROM iceberg.predictions.fraud_daily
GROUP BY date_trunc('week', prediction_date)
ORDER BY week
