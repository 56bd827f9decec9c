-- 003 — per (UTC day, segment, vehicle) aggregates: the only input of every score.
--
-- Why per vehicle: TimescaleDB continuous aggregates cannot compute DISTINCT counts or
-- percentiles, but scores need "distinct vehicles" and a median across vehicles. Keeping one
-- row per vehicle-day lets the views on top (004) do both exactly, on either dialect.
-- These two objects still carry pseudonyms: they are NOT granted to roadsense_reader.
--
-- TimescaleDB: real-time continuous aggregates (materialized_only = false: materialised
-- buckets + raw rows above the watermark), refreshed by a policy (pipeline.db.refresh()
-- refreshes everything, e.g. after a backfill older than the watermark).
-- Plain PostgreSQL: ordinary views with the same columns; date_bin('1 day', t, 2000-01-01
-- 00:00 UTC) gives the same UTC-midnight day as time_bucket('1 day', t).

-- @timescale
-- @autocommit
CREATE MATERIALIZED VIEW IF NOT EXISTS segment_vehicle_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', entry_time) AS day,
       segment_id,
       vehicle,
       count(*)                 AS n_passes,
       avg(iri_m_per_km)        AS mean_iri_m_per_km,
       count(iri_m_per_km)      AS n_iri,
       sum(n_harsh_events)      AS n_harsh_events,
       avg(mean_speed_kmh)      AS mean_speed_kmh,
       max(max_vertical_mps2)   AS max_vertical_mps2,
       sum(covered_m)           AS covered_m
FROM segment_passes
GROUP BY 1, 2, 3
WITH NO DATA;

-- @timescale
-- @autocommit
CREATE MATERIALIZED VIEW IF NOT EXISTS segment_event_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', start_time) AS day,
       segment_id,
       vehicle,
       count(*)                                          AS n_events,
       count(*) FILTER (WHERE type = 'harsh_brake')      AS n_harsh_brake,
       count(*) FILTER (WHERE type = 'harsh_accel')      AS n_harsh_accel,
       count(*) FILTER (WHERE type = 'harsh_corner')     AS n_harsh_corner
FROM harsh_events
GROUP BY 1, 2, 3
WITH NO DATA;

-- @timescale
-- Refresh every 30 min up to 1 h ago over all history (start_offset NULL): the refresh only
-- re-materialises buckets the invalidation log marks, so late data is picked up and rows
-- removed by retention disappear from the aggregate too (it is per-vehicle personal data).
SELECT add_continuous_aggregate_policy('segment_vehicle_daily',
    start_offset => NULL, end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('segment_event_daily',
    start_offset => NULL, end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
SELECT add_retention_policy('segment_vehicle_daily', drop_after => INTERVAL '400 days', if_not_exists => TRUE);
SELECT add_retention_policy('segment_event_daily', drop_after => INTERVAL '400 days', if_not_exists => TRUE);

-- @plain
CREATE VIEW segment_vehicle_daily AS
SELECT date_bin(INTERVAL '1 day', entry_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day,
       segment_id,
       vehicle,
       count(*)                 AS n_passes,
       avg(iri_m_per_km)        AS mean_iri_m_per_km,
       count(iri_m_per_km)      AS n_iri,
       sum(n_harsh_events)      AS n_harsh_events,
       avg(mean_speed_kmh)      AS mean_speed_kmh,
       max(max_vertical_mps2)   AS max_vertical_mps2,
       sum(covered_m)           AS covered_m
FROM segment_passes
GROUP BY 1, 2, 3;

CREATE VIEW segment_event_daily AS
SELECT date_bin(INTERVAL '1 day', start_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day,
       segment_id,
       vehicle,
       count(*)                                          AS n_events,
       count(*) FILTER (WHERE type = 'harsh_brake')      AS n_harsh_brake,
       count(*) FILTER (WHERE type = 'harsh_accel')      AS n_harsh_accel,
       count(*) FILTER (WHERE type = 'harsh_corner')     AS n_harsh_corner
FROM harsh_events
GROUP BY 1, 2, 3;

-- @all
COMMENT ON VIEW segment_vehicle_daily IS 'Per (UTC day, segment, vehicle): passes, mean IRI (m/km, NULLs ignored) and n_iri, harsh events, mean speed (km/h), max vertical (m/s2), metres covered. Carries pseudonyms.';
COMMENT ON VIEW segment_event_daily IS 'Per (UTC day, segment, vehicle): harsh events by type. Carries pseudonyms.';
