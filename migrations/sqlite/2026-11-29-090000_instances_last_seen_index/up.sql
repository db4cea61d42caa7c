-- Only retention used this index, once a day; every report that moves an
-- instance to a new day paid for it with two random index writes (the old
-- entry out, the new one in). Retention now scans the instances in key
-- order instead (see docs/performance.md).
DROP INDEX instances_last_seen;
