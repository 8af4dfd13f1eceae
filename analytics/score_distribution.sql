-- Score distribution per model version, in tenths (Trino SQL).
SELECT
    model_version,
    CAST(floor(score * 10) AS integer) AS score_decile,
    count(*) AS predictions
FROM iceberg.predictions.churn_daily
GROUP BY model_version, CAST(floor(score * 10) AS integer)
ORDER BY model_version, score_decile
