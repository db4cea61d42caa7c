-- Reporting views: the raw aggregates for people with database access, with
-- the same names and columns on SQLite and PostgreSQL (see
-- docs/reporting.md). They never expose a pseudonym, and apply no
-- k-anonymity: whoever can read them can read the tables anyway.
--
-- The "active" views count instances whose last report is within the last
-- 365 days, today (UTC) included, like the stats API's default window.
-- The day is taken in UTC, like the stored days, whatever the session time zone.

-- Event counts per UTC day, as stored.
CREATE VIEW report_daily_events AS
SELECT day, product, event, version, previous_version, edition, reports
FROM daily_events;

-- Active instances per version.
CREATE VIEW report_active_versions AS
SELECT product, value AS version, CAST(SUM(instances) AS BIGINT) AS instances
FROM instance_values
WHERE kind = 'version' AND last_seen >= (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')::date - 364
GROUP BY product, value
HAVING SUM(instances) > 0;

-- Active instances per attribute value.
CREATE VIEW report_attribute_values AS
SELECT product, name AS attribute, value, CAST(SUM(instances) AS BIGINT) AS instances
FROM instance_values
WHERE kind = 'attribute' AND last_seen >= (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')::date - 364
GROUP BY product, name, value
HAVING SUM(instances) > 0;

-- Active instances reporting each counter, and the exact sum of their values.
CREATE VIEW report_counter_totals AS
SELECT product, counter, CAST(SUM(instances) AS BIGINT) AS instances,
       CAST(SUM(total) AS BIGINT) AS total
FROM instance_counters
WHERE last_seen >= (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')::date - 364
GROUP BY product, counter
HAVING SUM(instances) > 0;

-- Active instances with each feature on (enabled) and reporting it (instances).
CREATE VIEW report_feature_adoption AS
SELECT product, name AS feature,
       CAST(SUM(CASE WHEN value = 'true' THEN instances ELSE 0 END) AS BIGINT) AS enabled,
       CAST(SUM(instances) AS BIGINT) AS instances
FROM instance_values
WHERE kind = 'feature' AND last_seen >= (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')::date - 364
GROUP BY product, name
HAVING SUM(instances) > 0;

-- Update reports per upgrade path, all time (filter report_daily_events by
-- day for a period). Updates that did not say where they came from are not
-- paths.
CREATE VIEW report_upgrade_paths AS
SELECT product, previous_version AS from_version, version AS to_version,
       CAST(SUM(reports) AS BIGINT) AS reports
FROM daily_events
WHERE event = 'update' AND previous_version <> ''
GROUP BY product, previous_version, version;
