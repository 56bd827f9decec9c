-- 001 — the road network: networks and their directed segments.
--
-- Section syntax (read by pipeline/db.py, see docs/decisions-db.md):
--   -- @all          following statements run on both dialects (the default at file start)
--   -- @timescale    following statements run only where the timescaledb extension is installed
--   -- @plain        following statements run only on plain PostgreSQL
--   -- @autocommit   the NEXT statement runs outside a transaction (must be idempotent)
-- Objects are created unqualified, in the first schema of the search_path.

-- @timescale
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- @all
CREATE TABLE networks (
    name        text PRIMARY KEY,
    attribution text NOT NULL,
    n_segments  integer NOT NULL DEFAULT 0 CHECK (n_segments >= 0),
    loaded_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE networks IS 'Road networks loaded by pipeline.db.load_network; attribution must be shown with anything derived from them.';

CREATE TABLE segments (
    segment_id   text PRIMARY KEY,
    network      text NOT NULL REFERENCES networks (name) ON DELETE CASCADE ON UPDATE CASCADE,
    osm_way_id   bigint,                      -- NULL where unknown
    highway      text NOT NULL,               -- OSM highway class
    ref          text,                        -- road reference (e.g. 'D 30'), NULL if none
    lanes        real,
    maxspeed_kmh real,
    length_m     double precision NOT NULL CHECK (length_m >= 0),
    from_node    text NOT NULL,
    to_node      text NOT NULL,
    mid_lon      double precision NOT NULL,   -- WGS84 degrees, point at half the length
    mid_lat      double precision NOT NULL,
    geojson      text NOT NULL                -- WGS84 LineString as GeoJSON geometry
);
CREATE INDEX segments_network_idx ON segments (network);
COMMENT ON TABLE segments IS 'Directed road segments (one row per direction); geometry in WGS84 GeoJSON, lengths in metres.';

-- The IRI level thresholds live here and only here (m/km): < 2.5 good, < 4.0 fair, else poor.
CREATE FUNCTION iri_level(iri_m_per_km double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN iri_m_per_km IS NULL THEN NULL
        WHEN iri_m_per_km < 2.5 THEN 'good'
        WHEN iri_m_per_km < 4.0 THEN 'fair'
        ELSE 'poor'
    END
$$;
COMMENT ON FUNCTION iri_level(double precision) IS 'Surface level from an IRI in m/km: good < 2.5 <= fair < 4.0 <= poor; NULL stays NULL.';
