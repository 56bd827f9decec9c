-- 008 — harsh events of type 'swerve' (issue 6: a quick lane change, two opposite lateral
-- lobes). The per-type columns of the aggregates stay brake/accel/corner; swerves count in
-- every total (n_events, n_harsh_events, rates per 1,000 passes).

-- @all
ALTER TABLE harsh_events DROP CONSTRAINT IF EXISTS harsh_events_type_check;
ALTER TABLE harsh_events ADD CONSTRAINT harsh_events_type_check
    CHECK (type IN ('harsh_brake', 'harsh_accel', 'harsh_corner', 'swerve'));
