-- 005 — live road alerts (stage 2: pothole confirmation across vehicles). Filled by a later
-- issue; no pseudonyms here (n_vehicles is a count), so it is readable by roadsense_reader.

-- @all
CREATE TABLE road_alerts (
    alert_id   text PRIMARY KEY,
    segment_id text NOT NULL,
    kind       text NOT NULL,                      -- e.g. 'pothole'
    position_m double precision CHECK (position_m >= 0),   -- along the segment, m
    confidence double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    n_vehicles integer NOT NULL CHECK (n_vehicles >= 0),   -- distinct vehicles that confirmed it
    payload    jsonb NOT NULL DEFAULT '{}'::jsonb,
    CHECK (last_seen >= first_seen)
);
CREATE INDEX road_alerts_segment_idx ON road_alerts (segment_id);
CREATE INDEX road_alerts_last_seen_idx ON road_alerts (last_seen DESC);
COMMENT ON TABLE road_alerts IS 'Live road alerts per segment (kind, position along the segment in m, confidence 0..1).';
