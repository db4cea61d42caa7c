CREATE INDEX instances_last_seen ON instances (last_seen);
