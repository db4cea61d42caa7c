DROP TABLE instance_counters;
DROP TABLE instance_values;
DROP TABLE seen_reports;
DROP TABLE instances;
DROP TABLE daily_events;
DROP TABLE settings;
