-- 002 — raw per-vehicle rows: segment passes and harsh events (personal data: pseudonyms).
-- TimescaleDB: hypertables (7-day chunks), compression after 7 days, retention 400 days.
-- Plain PostgreSQL: ordinary tables with the same columns and keys; retention is done by
-- prune_older_than(interval) (called by `roadsense db prune`), there is no compression.

-- @all
CREATE TABLE segment_passes (
    vehicle            text NOT NULL,             -- keyed-HMAC pseudonym, never a VIN
    segment_id         text NOT NULL,
    entry_time         timestamptz NOT NULL,
    exit_time          timestamptz NOT NULL,
    entry_offset_m     double precision NOT NULL,
    exit_offset_m      double precision NOT NULL,
    covered_m          double precision NOT NULL,
    mean_speed_kmh     double precision NOT NULL,
    n_samples          integer NOT NULL,
    fs_hz              double precision NOT NULL,
    iri_m_per_km       double precision,          -- NULL when the pass is too short or slow
    roughness_rms_mps2 double precision,
    max_vertical_mps2  double precision NOT NULL,
    n_harsh_events     integer NOT NULL,
    confidence         double precision NOT NULL,
    powertrain         text,
    model_year         smallint,
    schema_version     smallint NOT NULL DEFAULT 1,
    PRIMARY KEY (vehicle, segment_id, entry_time),
    CHECK (exit_time >= entry_time),
    CHECK (covered_m >= 0 AND mean_speed_kmh >= 0 AND n_samples >= 0 AND fs_hz > 0),
    CHECK (iri_m_per_km >= 0 AND roughness_rms_mps2 >= 0 AND max_vertical_mps2 >= 0),
    CHECK (n_harsh_events >= 0 AND confidence BETWEEN 0 AND 1)
);
COMMENT ON TABLE segment_passes IS 'One row per SegmentPass (schemas/records.py); natural key (vehicle, segment_id, entry_time). Personal data: not readable by roadsense_reader.';
CREATE INDEX segment_passes_segment_time_idx ON segment_passes (segment_id, entry_time DESC);

CREATE TABLE harsh_events (
    vehicle        text NOT NULL,
    type           text NOT NULL CHECK (type IN ('harsh_brake', 'harsh_accel', 'harsh_corner')),
    start_time     timestamptz NOT NULL,
    duration_s     double precision NOT NULL CHECK (duration_s > 0),
    peak_mps2      double precision NOT NULL,     -- signed, braking negative
    speed_kmh      double precision NOT NULL CHECK (speed_kmh >= 0),
    segment_id     text NOT NULL,
    offset_m       double precision NOT NULL CHECK (offset_m >= 0),
    lat_deg        double precision NOT NULL,
    lon_deg        double precision NOT NULL,
    schema_version smallint NOT NULL DEFAULT 1,
    PRIMARY KEY (vehicle, start_time, type)
);
COMMENT ON TABLE harsh_events IS 'One row per HarshEvent (schemas/records.py); natural key (vehicle, start_time, type). Personal data: not readable by roadsense_reader.';
CREATE INDEX harsh_events_segment_time_idx ON harsh_events (segment_id, start_time DESC);

-- @plain
-- TimescaleDB creates a time index per chunk; plain tables get one for pruning and windows.
CREATE INDEX segment_passes_entry_time_idx ON segment_passes (entry_time);
CREATE INDEX harsh_events_start_time_idx ON harsh_events (start_time);

-- @timescale
SELECT create_hypertable('segment_passes', by_range('entry_time', INTERVAL '7 days'), if_not_exists => TRUE);
SELECT create_hypertable('harsh_events', by_range('start_time', INTERVAL '7 days'), if_not_exists => TRUE);

ALTER TABLE segment_passes SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'segment_id',
    timescaledb.compress_orderby = 'entry_time, vehicle'
);
ALTER TABLE harsh_events SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'segment_id',
    timescaledb.compress_orderby = 'start_time, vehicle, type'
);
SELECT add_compression_policy('segment_passes', compress_after => INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_compression_policy('harsh_events', compress_after => INTERVAL '7 days', if_not_exists => TRUE);

-- Retention: 400 days (one full year of seasons + a month for the yearly works programme);
-- see docs/decisions-db.md. Whole chunks are dropped, so rows live 400 to 407 days.
SELECT add_retention_policy('segment_passes', drop_after => INTERVAL '400 days', if_not_exists => TRUE);
SELECT add_retention_policy('harsh_events', drop_after => INTERVAL '400 days', if_not_exists => TRUE);

-- @all
-- Exact retention on both dialects (plain PostgreSQL has no policies). Returns rows deleted.
-- On TimescaleDB call pipeline.db.refresh() afterwards so the continuous aggregates follow.
CREATE FUNCTION prune_older_than(max_age interval) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n_passes bigint;
    n_events bigint;
BEGIN
    IF max_age IS NULL OR max_age < INTERVAL '1 day' THEN
        RAISE EXCEPTION 'prune_older_than: max_age % is NULL or shorter than 1 day; refusing', max_age;
    END IF;
    DELETE FROM segment_passes WHERE entry_time < now() - max_age;
    GET DIAGNOSTICS n_passes = ROW_COUNT;
    DELETE FROM harsh_events WHERE start_time < now() - max_age;
    GET DIAGNOSTICS n_events = ROW_COUNT;
    RETURN n_passes + n_events;
END
$$;
REVOKE ALL ON FUNCTION prune_older_than(interval) FROM PUBLIC;
