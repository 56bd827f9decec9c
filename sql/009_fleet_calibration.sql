-- 009 — fleet self-calibration of road roughness (issue 4): per-vehicle gains, reference
-- segments, and segment scores computed on calibrated IRI. Identical SQL on both dialects.
--
-- A pass's IRI is estimated against a nominal car (agents.roughness); each real vehicle reads
-- higher or lower by a factor, its gain. The calibration job (pipeline.calibration,
-- `roadsense calibrate`) learns the gains from segments several vehicles drive
-- (agents.roughness.fleet_calibrate on per-(vehicle, segment) mean IRIs) and replaces the
-- contents of vehicle_gains in one transaction, with one calibration_runs row. Gains are only
-- defined up to a common factor: the anchor is reference_segments (profilometer IRIs the
-- maintenance team enters) when enough of them are driven, else the fleet's median gain = 1.
-- A vehicle without a gain (new, or sharing too few segments) gets the latest run's
-- default_gain (the median gain of the calibrated fleet, in log space): the best guess for an
-- unknown car.
-- The scores divide each vehicle's mean IRI by its gain; agents.scores mirrors this exactly.

-- @all
CREATE TABLE reference_segments (
    segment_id   text PRIMARY KEY,
    iri_m_per_km double precision NOT NULL CHECK (iri_m_per_km > 0),
    surveyed_on  date,
    source       text NOT NULL DEFAULT 'profilometer'
);
COMMENT ON TABLE reference_segments IS 'Segments with a measured IRI (m/km, e.g. laser profilometer survey), filled by the maintenance team; the absolute anchor of the fleet calibration.';

CREATE TABLE calibration_runs (
    run_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    anchor        text NOT NULL CHECK (anchor IN ('reference', 'fleet_median')),
    default_gain  double precision NOT NULL CHECK (default_gain > 0),
    n_vehicles    integer NOT NULL CHECK (n_vehicles >= 0),
    n_calibrated  integer NOT NULL CHECK (n_calibrated >= 0),
    n_references  integer NOT NULL CHECK (n_references >= 0),
    n_rows        integer NOT NULL CHECK (n_rows >= 0),
    window_from   timestamptz,
    window_to     timestamptz
);
COMMENT ON TABLE calibration_runs IS 'One row per calibration job: anchor used, default gain for vehicles without one, counts, window of UTC days read. No pseudonyms.';

CREATE TABLE vehicle_gains (
    vehicle     text PRIMARY KEY,              -- keyed-HMAC pseudonym
    gain        double precision NOT NULL CHECK (gain > 0),
    n_segments  integer NOT NULL CHECK (n_segments >= 0),
    run_id      bigint NOT NULL REFERENCES calibration_runs (run_id) ON DELETE CASCADE
);
COMMENT ON TABLE vehicle_gains IS 'Per-vehicle roughness gain of the latest calibration run (divide the vehicle''s IRI by it). Personal data: not readable by roadsense_reader.';

-- The gain of vehicles without a row: the latest run's default, 1 before any run.
CREATE FUNCTION default_vehicle_gain() RETURNS double precision
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT coalesce((SELECT c.default_gain FROM calibration_runs AS c ORDER BY c.run_id DESC LIMIT 1), 1.0)
$$;

-- Same signature and columns as in 004: dependants and grants are kept.
CREATE OR REPLACE FUNCTION segment_scores_between(
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
               -- the vehicle's mean IRI over its passes, divided by its gain (calibrated)
               sum(d.mean_iri_m_per_km * d.n_iri) / nullif(sum(d.n_iri), 0)
                   / coalesce(max(g.gain), default_vehicle_gain())       AS mean_iri,
               sum(d.n_iri)                                              AS n_iri,
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

-- Same columns as in 004; each vehicle-day's mean IRI divided by the vehicle's gain.
CREATE OR REPLACE VIEW segment_scores_daily AS
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
       s.mean_speed_kmh, s.max_vertical_mps2, s.covered_m
FROM per_segment AS s
LEFT JOIN segments AS g ON g.segment_id = s.segment_id;

-- The reader may see the anchor and the runs (no pseudonyms), never the gains per vehicle.
GRANT SELECT ON reference_segments, calibration_runs TO roadsense_reader;
GRANT EXECUTE ON FUNCTION default_vehicle_gain() TO roadsense_reader;
REVOKE ALL ON vehicle_gains FROM PUBLIC, roadsense_reader;
