ALTER TABLE instances DROP COLUMN upgraded_on;
ALTER TABLE instances DROP COLUMN upgraded_to;
ALTER TABLE instances DROP COLUMN upgraded_from;
