-- 004 — segment scores and harsh spots: identical SQL on both dialects, on top of 003.
--
-- Robust IRI of a segment = median across vehicles of each vehicle's mean IRI (one vote per
-- vehicle, so neither a frequent driver nor one badly mounted sensor dominates); the interval
-- is the 25th-75th percentile of the per-vehicle means (interquartile range, no bootstrap;
-- degenerate with 1 vehicle: read n_vehicles_iri). Level: iri_level() (001).
-- A vehicle's mean over several days weights each day by its number of IRI passes, so it is
-- the mean over all of its passes.
-- These objects hold no pseudonyms and are granted to roadsense_reader (006).

-- @all
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
    last_day              timestamptz
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    WITH per_vehicle AS (
        SELECT d.segment_id,
               d.vehicle,
               sum(d.n_passes)                                           AS n_passes,
               sum(d.mean_iri_m_per_km * d.n_iri) / nullif(sum(d.n_iri), 0) AS mean_iri,
               sum(d.n_iri)                                              AS n_iri,
               sum(d.n_harsh_events)                                     AS n_harsh_events,
               sum(d.mean_speed_kmh * d.n_passes)                        AS speed_x_passes,
               max(d.max_vertical_mps2)                                  AS max_vertical_mps2,
               sum(d.covered_m)                                          AS covered_m,
               min(d.day)                                                AS first_day,
               max(d.day)                                                AS last_day
        FROM segment_vehicle_daily AS d
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
           s.mean_speed_kmh, s.max_vertical_mps2, s.covered_m, s.first_day, s.last_day
    FROM per_segment AS s
    LEFT JOIN segments AS g ON g.segment_id = s.segment_id
$$;
COMMENT ON FUNCTION segment_scores_between(timestamptz, timestamptz, text) IS
    'Segment scores over the whole UTC days overlapping [p_from, p_to) (NULL = unbounded), optionally one segment. IRI in m/km.';
REVOKE ALL ON FUNCTION segment_scores_between(timestamptz, timestamptz, text) FROM PUBLIC;

CREATE VIEW segment_scores AS
SELECT * FROM segment_scores_between(NULL, NULL, NULL);
COMMENT ON VIEW segment_scores IS 'Segment scores over all stored history (see segment_scores_between for a window).';

CREATE VIEW segment_scores_daily AS
WITH per_segment AS (
    SELECT d.day,
           d.segment_id,
           sum(d.n_passes)::bigint                                               AS n_passes,
           count(*)::bigint                                                      AS n_vehicles,
           count(d.mean_iri_m_per_km)::bigint                                    AS n_vehicles_iri,
           sum(d.n_iri)::bigint                                                  AS n_iri_passes,
           percentile_cont(0.5)  WITHIN GROUP (ORDER BY d.mean_iri_m_per_km)     AS iri,
           percentile_cont(0.25) WITHIN GROUP (ORDER BY d.mean_iri_m_per_km)     AS iri_p25,
           percentile_cont(0.75) WITHIN GROUP (ORDER BY d.mean_iri_m_per_km)     AS iri_p75,
           sum(d.n_harsh_events)::bigint                                         AS n_harsh_events,
           sum(d.mean_speed_kmh * d.n_passes) / sum(d.n_passes)::double precision AS mean_speed_kmh,
           max(d.max_vertical_mps2)                                              AS max_vertical_mps2,
           sum(d.covered_m)                                                      AS covered_m
    FROM segment_vehicle_daily AS d
    GROUP BY d.day, d.segment_id
)
SELECT s.day, s.segment_id, g.network, g.ref, g.osm_way_id, g.highway, g.mid_lat, g.mid_lon,
       g.length_m, s.n_passes, s.n_vehicles, s.n_vehicles_iri, s.n_iri_passes,
       s.iri AS iri_m_per_km, s.iri_p25 AS iri_p25_m_per_km, s.iri_p75 AS iri_p75_m_per_km,
       iri_level(s.iri) AS level, s.n_harsh_events,
       (1000.0 * s.n_harsh_events / s.n_passes)::double precision AS harsh_per_1000_passes,
       s.mean_speed_kmh, s.max_vertical_mps2, s.covered_m
FROM per_segment AS s
LEFT JOIN segments AS g ON g.segment_id = s.segment_id;
COMMENT ON VIEW segment_scores_daily IS 'Segment scores per UTC day (same columns as segment_scores, day instead of first/last day).';

-- Harsh spots: segments with at least one HarshEvent row, over all stored history.
-- n_passes/n_vehicles count every pass of the segment (also those without events).
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

-- Network-wide totals per UTC day (ops dashboards).
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

-- Totals over all stored history (one row, zeros when empty).
CREATE VIEW pass_totals AS
SELECT coalesce((SELECT sum(d.n_passes) FROM segment_vehicle_daily AS d), 0)::bigint             AS n_passes,
       (SELECT count(DISTINCT d.vehicle) FROM segment_vehicle_daily AS d)::bigint                AS n_vehicles,
       (SELECT count(DISTINCT d.segment_id) FROM segment_vehicle_daily AS d)::bigint             AS n_segments,
       coalesce((SELECT sum(e.n_events) FROM segment_event_daily AS e), 0)::bigint              AS n_events,
       (SELECT min(d.day) FROM segment_vehicle_daily AS d)                                     AS first_day,
       (SELECT max(d.day) FROM segment_vehicle_daily AS d)                                     AS last_day;
COMMENT ON VIEW pass_totals IS 'One row: passes, distinct vehicles and segments, harsh events, first and last UTC day stored.';
