-- Free space in each page for the rows every batch rewrites (an instance
-- reporting again the same day, today's aggregates): PostgreSQL can then
-- keep the new row version on the same page without new index entries
-- (heap-only tuples). Applies to pages written from now on.
ALTER TABLE instances SET (fillfactor = 80);
ALTER TABLE daily_events SET (fillfactor = 50);
ALTER TABLE instance_values SET (fillfactor = 50);
ALTER TABLE instance_counters SET (fillfactor = 50);
ALTER TABLE instance_value_totals SET (fillfactor = 50);
ALTER TABLE instance_counter_totals SET (fillfactor = 50);
