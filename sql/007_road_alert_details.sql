-- 007 — road alerts from stage 2 (issue 4): where the alert is on the map, how much
-- evidence it has and which revision of it is stored. Upserts keep the highest revision
-- (pipeline/alerts_sink.py), so a replay never moves an alert backwards.
-- Still no pseudonyms; the table stays readable by roadsense_reader (006).

-- @all
ALTER TABLE road_alerts ADD COLUMN lat_deg double precision CHECK (lat_deg BETWEEN -90 AND 90);
ALTER TABLE road_alerts ADD COLUMN lon_deg double precision CHECK (lon_deg BETWEEN -180 AND 180);
ALTER TABLE road_alerts ADD COLUMN n_impacts integer NOT NULL DEFAULT 0 CHECK (n_impacts >= 0);
ALTER TABLE road_alerts ADD COLUMN revision integer NOT NULL DEFAULT 0 CHECK (revision >= 0);
COMMENT ON COLUMN road_alerts.revision IS '0 when first confirmed, +1 per update; upserts keep the highest';
