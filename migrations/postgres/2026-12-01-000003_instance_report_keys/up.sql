-- Dedupe keys where the write goes anyway: each install's row keeps the
-- keys of its last reports (report_keys: 32 bytes of keyed hash then the
-- day as 4 bytes, oldest first), so that a report of a known install
-- dirties no page of seen_reports for its key. report_keys_since is the
-- day of the oldest, for retention; report_keys_spilled the last day a key
-- moved from the row to seen_reports (see docs/storage.md).
--
-- The keys stored before this migration are all in seen_reports: every
-- install is marked as spilled on its last day, so that its reports are
-- looked up there until those keys leave the dedupe window.
ALTER TABLE instances ADD COLUMN report_keys BYTEA NOT NULL DEFAULT ''::bytea;
ALTER TABLE instances ADD COLUMN report_keys_since DATE;
ALTER TABLE instances ADD COLUMN report_keys_spilled DATE;
UPDATE instances SET report_keys_spilled = last_seen;
