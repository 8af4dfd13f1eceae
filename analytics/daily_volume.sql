-- Daily prediction volume, mean score and predicted churn rate (Trino SQL).
SELECT
    prediction_date,
    count(*) AS predictions,
    round(avg(score), 6) AS mean_score,
    round(avg(CAST(prediction AS double)), 6) AS predicted_churn_rate
FROM iceberg.predictions.churn_daily
GROUP BY prediction_date
ORDER BY prediction_date
