-- 006 — the read-only group role for dashboards, the HTTP API and the CLI.
-- roadsense_reader (NOLOGIN) may read the network, the scores, the harsh spots, the daily
-- totals and the alerts; never the raw per-vehicle tables nor the per-vehicle aggregates
-- (they carry pseudonyms). Login users are granted the role, e.g. pipeline.db.ensure_login().
-- Roles are cluster-wide: creation is guarded so any database/schema can run this file.

-- @all
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'roadsense_reader') THEN
        CREATE ROLE roadsense_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- created concurrently by another migration of the same cluster
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO roadsense_reader', current_schema());
END
$$;

GRANT SELECT ON networks, segments, segment_scores, segment_scores_daily, harsh_spots,
    daily_totals, pass_totals, road_alerts TO roadsense_reader;
GRANT EXECUTE ON FUNCTION segment_scores_between(timestamptz, timestamptz, text),
    iri_level(double precision) TO roadsense_reader;
REVOKE ALL ON segment_passes, harsh_events, segment_vehicle_daily, segment_event_daily
    FROM PUBLIC, roadsense_reader;
