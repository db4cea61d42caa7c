DROP VIEW report_upgrade_paths;
DROP VIEW report_feature_adoption;
DROP VIEW report_counter_totals;
DROP VIEW report_attribute_values;
DROP VIEW report_active_versions;
DROP VIEW report_daily_events;
