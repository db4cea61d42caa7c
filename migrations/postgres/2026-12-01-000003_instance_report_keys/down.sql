-- The keys kept in rows are lost: a retry of a report that only its row
-- remembered is counted again by the version before this one.
ALTER TABLE instances DROP COLUMN report_keys_spilled;
ALTER TABLE instances DROP COLUMN report_keys_since;
ALTER TABLE instances DROP COLUMN report_keys;
