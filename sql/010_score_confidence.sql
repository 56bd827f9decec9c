-- 010 — a confidence with every segment score (issue 4: at 10 Hz the output must say its
-- confidence is lower).
--
-- Each pass already has a confidence (agents.roughness.confidence: sample rate, length,
-- speed). A segment's confidence = the mean confidence of the passes behind its IRI x the
-- vehicle coverage 1 - exp(-n_vehicles_iri / 2), as agents.roughness.segment_scores and
-- agents.scores.segment_scores compute it: 0.39 with one vehicle, 0.92 with five; a fleet
-- of 10 Hz sensors reads about 0.6 of a 100 Hz one.
--
-- The per-vehicle daily aggregate gains mean_iri_confidence (over the passes with an IRI).
-- A TimescaleDB continuous aggregate cannot gain a column: it is dropped and re-created
-- (its buckets are rebuilt from segment_passes by the next refresh; both keep 400 days),
-- and so are the objects that read it (the plain dialect re-creates its views alike).
-- Everything else is 004 / 009 unchanged, plus the confidence column.

-- @timescale
-- @autocommit
DROP MATERIALIZED VIEW IF EXISTS segment_vehicle_daily CASCADE;

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
       sum(covered_m)           AS covered_m,
       avg(CASE WHEN iri_m_per_km IS NOT NULL THEN confidence END) AS mean_iri_confidence
FROM segment_passes
GROUP BY 1, 2, 3
WITH NO DATA;

-- @timescale
SELECT add_continuous_aggregate_policy('segment_vehicle_daily',
    start_offset => NULL, end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
SELECT add_retention_policy('segment_vehicle_daily', drop_after => INTERVAL '400 days', if_not_exists => TRUE);

-- @plain
DROP VIEW segment_vehicle_daily CASCADE;
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
       sum(covered_m)           AS covered_m,
       avg(CASE WHEN iri_m_per_km IS NOT NULL THEN confidence END) AS mean_iri_confidence
FROM segment_passes
GROUP BY 1, 2, 3;

-- @all
COMMENT ON VIEW segment_vehicle_daily IS 'Per (UTC day, segment, vehicle): passes, mean IRI (m/km, NULLs ignored) and n_iri, harsh events, mean speed (km/h), max vertical (m/s2), metres covered, mean confidence of the passes with an IRI. Carries pseudonyms.';

-- A new column: the function's row type changes, so it is dropped (with segment_scores).
DROP FUNCTION segment_scores_between(timestamptz, timestamptz, text) CASCADE;
CREATE FUNCTION segment_scores_between(
    p_from       timestamptz DEFAULT NULL,
    p_to         timestamptz DEFAULT NULL,
    p_segment_id text DEFAULT NULL
) RETURNS TABLE (
    segment_id            text,
    network               text,
    ref                   text,
    osm_way_id            bigint,
    highway               text,
    mid_lat               double precision,
    mid_lon               double precision,
    length_m              double precision,
    n_passes              bigint,
    n_vehicles            bigint,
    n_vehicles_iri        bigint,
    n_iri_passes          bigint,
    iri_m_per_km          double precision,
    iri_p25_m_per_km      double precision,
    iri_p75_m_per_km      double precision,
    level                 text,
    n_harsh_events        bigint,
    harsh_per_1000_passes double precision,
    mean_speed_kmh        double precision,
    max_vertical_mps2     double precision,
    covered_m             double precision,
    first_day             timestamptz,
    last_day              timestamptz,
    confidence            double precision
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    WITH per_vehicle AS (
        SELECT d.segment_id,
               d.vehicle,
               sum(d.n_passes)                                           AS n_passes,
               -- the vehicle's mean IRI over its passes, divided by its gain (calibrated)
               sum(d.mean_iri_m_per_km * d.n_iri) / nullif(sum(d.n_iri), 0)
                   / coalesce(max(g.gain), default_vehicle_gain())       AS mean_iri,
               sum(d.n_iri)                                              AS n_iri,
               sum(d.mean_iri_confidence * d.n_iri)                      AS confidence_x_iri,
               sum(d.n_harsh_events)                                     AS n_harsh_events,
               sum(d.mean_speed_kmh * d.n_passes)                        AS speed_x_passes,
               max(d.max_vertical_mps2)                                  AS max_vertical_mps2,
               sum(d.covered_m)                                          AS covered_m,
               min(d.day)                                                AS first_day,
               max(d.day)                                                AS last_day
        FROM segment_vehicle_daily AS d
        LEFT JOIN vehicle_gains AS g ON g.vehicle = d.vehicle
        WHERE (p_from IS NULL
               OR d.day >= date_bin(INTERVAL '1 day', p_from, TIMESTAMPTZ '2000-01-01 00:00:00+00'))
          AND (p_to IS NULL OR d.day < p_to)
          AND (p_segment_id IS NULL OR d.segment_id = p_segment_id)
        GROUP BY d.segment_id, d.vehicle
    ), per_segment AS (
        SELECT v.segment_id,
               sum(v.n_passes)::bigint                                      AS n_passes,
               count(*)::bigint                                             AS n_vehicles,
               count(v.mean_iri)::bigint                                    AS n_vehicles_iri,
               sum(v.n_iri)::bigint                                         AS n_iri_passes,
               percentile_cont(0.5)  WITHIN GROUP (ORDER BY v.mean_iri)     AS iri,
               percentile_cont(0.25) WITHIN GROUP (ORDER BY v.mean_iri)     AS iri_p25,
               percentile_cont(0.75) WITHIN GROUP (ORDER BY v.mean_iri)     AS iri_p75,
               sum(v.confidence_x_iri) / nullif(sum(v.n_iri), 0)
                   * (1 - exp(-count(v.mean_iri) / 2.0))                    AS confidence,
               sum(v.n_harsh_events)::bigint                                AS n_harsh_events,
               sum(v.speed_x_passes) / sum(v.n_passes)::double precision    AS mean_speed_kmh,
               max(v.max_vertical_mps2)                                     AS max_vertical_mps2,
               sum(v.covered_m)                                             AS covered_m,
               min(v.first_day)                                             AS first_day,
               max(v.last_day)                                              AS last_day
        FROM per_vehicle AS v
        GROUP BY v.segment_id
    )
    SELECT s.segment_id, g.network, g.ref, g.osm_way_id, g.highway, g.mid_lat, g.mid_lon,
           g.length_m, s.n_passes, s.n_vehicles, s.n_vehicles_iri, s.n_iri_passes,
           s.iri, s.iri_p25, s.iri_p75, iri_level(s.iri),
           s.n_harsh_events, (1000.0 * s.n_harsh_events / s.n_passes)::double precision,
           s.mean_speed_kmh, s.max_vertical_mps2, s.covered_m, s.first_day, s.last_day,
           s.confidence::double precision
    FROM per_segment AS s
    LEFT JOIN segments AS g ON g.segment_id = s.segment_id
$$;
COMMENT ON FUNCTION segment_scores_between(timestamptz, timestamptz, text) IS
    'Segment scores over the whole UTC days overlapping [p_from, p_to) (NULL = unbounded), optionally one segment. IRI in m/km; confidence 0..1 (mean pass confidence x vehicle coverage).';
REVOKE ALL ON FUNCTION segment_scores_between(timestamptz, timestamptz, text) FROM PUBLIC;

CREATE VIEW segment_scores AS
SELECT * FROM segment_scores_between(NULL, NULL, NULL);
COMMENT ON VIEW segment_scores IS 'Segment scores over all stored history (see segment_scores_between for a window).';

-- Same columns as in 009, plus confidence; each vehicle-day's mean IRI divided by the
-- vehicle's gain.
CREATE VIEW segment_scores_daily AS
WITH cal AS (
    SELECT d.*,
           d.mean_iri_m_per_km / coalesce(g.gain, default_vehicle_gain()) AS cal_iri
    FROM segment_vehicle_daily AS d
    LEFT JOIN vehicle_gains AS g ON g.vehicle = d.vehicle
), per_segment AS (
    SELECT d.day,
           d.segment_id,
           sum(d.n_passes)::bigint                                               AS n_passes,
           count(*)::bigint                                                      AS n_vehicles,
           count(d.cal_iri)::bigint                                              AS n_vehicles_iri,
           sum(d.n_iri)::bigint                                                  AS n_iri_passes,
           percentile_cont(0.5)  WITHIN GROUP (ORDER BY d.cal_iri)               AS iri,
           percentile_cont(0.25) WITHIN GROUP (ORDER BY d.cal_iri)               AS iri_p25,
           percentile_cont(0.75) WITHIN GROUP (ORDER BY d.cal_iri)               AS iri_p75,
           sum(d.mean_iri_confidence * d.n_iri) / nullif(sum(d.n_iri), 0)
               * (1 - exp(-count(d.cal_iri) / 2.0))                              AS confidence,
           sum(d.n_harsh_events)::bigint                                         AS n_harsh_events,
           sum(d.mean_speed_kmh * d.n_passes) / sum(d.n_passes)::double precision AS mean_speed_kmh,
           max(d.max_vertical_mps2)                                              AS max_vertical_mps2,
           sum(d.covered_m)                                                      AS covered_m
    FROM cal AS d
    GROUP BY d.day, d.segment_id
)
SELECT s.day, s.segment_id, g.network, g.ref, g.osm_way_id, g.highway, g.mid_lat, g.mid_lon,
       g.length_m, s.n_passes, s.n_vehicles, s.n_vehicles_iri, s.n_iri_passes,
       s.iri AS iri_m_per_km, s.iri_p25 AS iri_p25_m_per_km, s.iri_p75 AS iri_p75_m_per_km,
       iri_level(s.iri) AS level, s.n_harsh_events,
       (1000.0 * s.n_harsh_events / s.n_passes)::double precision AS harsh_per_1000_passes,
       s.mean_speed_kmh, s.max_vertical_mps2, s.covered_m, s.confidence::double precision AS confidence
FROM per_segment AS s
LEFT JOIN segments AS g ON g.segment_id = s.segment_id;
COMMENT ON VIEW segment_scores_daily IS 'Segment scores per UTC day (same columns as segment_scores, day instead of first/last day).';

-- The views of 004 that read the aggregate, unchanged (dropped with it above).
CREATE VIEW harsh_spots AS
WITH e AS (
    SELECT d.segment_id,
           sum(d.n_events)::bigint       AS n_events,
           sum(d.n_harsh_brake)::bigint  AS n_harsh_brake,
           sum(d.n_harsh_accel)::bigint  AS n_harsh_accel,
           sum(d.n_harsh_corner)::bigint AS n_harsh_corner,
           count(DISTINCT d.vehicle)::bigint AS n_vehicles_with_events
    FROM segment_event_daily AS d
    GROUP BY d.segment_id
), p AS (
    SELECT d.segment_id,
           sum(d.n_passes)::bigint           AS n_passes,
           count(DISTINCT d.vehicle)::bigint AS n_vehicles
    FROM segment_vehicle_daily AS d
    GROUP BY d.segment_id
)
SELECT e.segment_id, g.network, g.ref, g.osm_way_id, g.highway, g.mid_lat, g.mid_lon,
       coalesce(p.n_passes, 0)   AS n_passes,
       coalesce(p.n_vehicles, 0) AS n_vehicles,
       e.n_vehicles_with_events,
       e.n_events, e.n_harsh_brake, e.n_harsh_accel, e.n_harsh_corner,
       (1000.0 * e.n_events / nullif(p.n_passes, 0))::double precision AS events_per_1000_passes
FROM e
LEFT JOIN p ON p.segment_id = e.segment_id
LEFT JOIN segments AS g ON g.segment_id = e.segment_id;
COMMENT ON VIEW harsh_spots IS 'Per segment with harsh events: counts by type, passes, distinct vehicles, events per 1,000 passes.';

CREATE VIEW daily_totals AS
WITH p AS (
    SELECT d.day,
           sum(d.n_passes)::bigint              AS n_passes,
           count(DISTINCT d.vehicle)::bigint    AS n_vehicles,
           count(DISTINCT d.segment_id)::bigint AS n_segments,
           sum(d.n_harsh_events)::bigint        AS n_harsh_events_in_passes
    FROM segment_vehicle_daily AS d
    GROUP BY d.day
), e AS (
    SELECT d.day, sum(d.n_events)::bigint AS n_events
    FROM segment_event_daily AS d
    GROUP BY d.day
)
SELECT coalesce(p.day, e.day)           AS day,
       coalesce(p.n_passes, 0)          AS n_passes,
       coalesce(p.n_vehicles, 0)        AS n_vehicles,
       coalesce(p.n_segments, 0)        AS n_segments,
       coalesce(e.n_events, 0)          AS n_events,
       (1000.0 * coalesce(e.n_events, 0) / nullif(p.n_passes, 0))::double precision AS events_per_1000_passes
FROM p
FULL JOIN e ON e.day = p.day;
COMMENT ON VIEW daily_totals IS 'Per UTC day: passes, distinct vehicles and segments, harsh events (rows of harsh_events), events per 1,000 passes.';

CREATE VIEW pass_totals AS
SELECT coalesce((SELECT sum(d.n_passes) FROM segment_vehicle_daily AS d), 0)::bigint             AS n_passes,
       (SELECT count(DISTINCT d.vehicle) FROM segment_vehicle_daily AS d)::bigint                AS n_vehicles,
       (SELECT count(DISTINCT d.segment_id) FROM segment_vehicle_daily AS d)::bigint             AS n_segments,
       coalesce((SELECT sum(e.n_events) FROM segment_event_daily AS e), 0)::bigint              AS n_events,
       (SELECT min(d.day) FROM segment_vehicle_daily AS d)                                     AS first_day,
       (SELECT max(d.day) FROM segment_vehicle_daily AS d)                                     AS last_day;
COMMENT ON VIEW pass_totals IS 'One row: passes, distinct vehicles and segments, harsh events, first and last UTC day stored.';

-- The reader's grants on the re-created objects (006), and the aggregate stays private.
GRANT SELECT ON segment_scores, segment_scores_daily, harsh_spots, daily_totals, pass_totals TO roadsense_reader;
GRANT EXECUTE ON FUNCTION segment_scores_between(timestamptz, timestamptz, text) TO roadsense_reader;
REVOKE ALL ON segment_vehicle_daily FROM PUBLIC, roadsense_reader;

-- Materialise the re-created aggregate now rather than at the policy's next run (until
-- then every query would aggregate the raw passes of all history in real time).
-- @timescale
-- @autocommit
CALL refresh_continuous_aggregate('segment_vehicle_daily', NULL, NULL);
