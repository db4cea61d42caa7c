ALTER TABLE instances RESET (fillfactor);
ALTER TABLE daily_events RESET (fillfactor);
ALTER TABLE instance_values RESET (fillfactor);
ALTER TABLE instance_counters RESET (fillfactor);
ALTER TABLE instance_value_totals RESET (fillfactor);
ALTER TABLE instance_counter_totals RESET (fillfactor);
