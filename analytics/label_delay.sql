-- Label delay per prediction week: days from the moment a prediction is for (prediction_timestamp,
-- its as-of time) until its actual became known (actual_timestamp). Never negative.
SELECT
    date_trunc('week', prediction_date) AS week,
    count(*) AS labelled,
    round(avg(date_diff('second', prediction_timestamp, actual_timestamp) / 86400e0), 2) AS avg_label_delay_days,
    min(date_diff('day', prediction_timestamp, actual_timestamp)) AS min_label_delay_days,
    max(date_diff('day', prediction_timestamp, actual_timestamp)) AS max_label_delay_days
FROM iceberg.predictions.churn_daily
WHERE actual_timestamp IS NOT NULL
GROUP BY date_trunc('week', prediction_date)
ORDER BY week
