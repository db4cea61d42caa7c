-- All-days totals of the per-day aggregates, kept in the same transaction
-- as them. "Active in the last N days" is then the total minus the days
-- before the window, which retention keeps few: a short scan instead of
-- one over every day of the window (see docs/storage.md).
CREATE TABLE instance_value_totals (
    product   TEXT   NOT NULL,
    kind      TEXT   NOT NULL,
    name      TEXT   NOT NULL,
    value     TEXT   NOT NULL,
    instances BIGINT NOT NULL,
    PRIMARY KEY (product, kind, name, value)
) WITHOUT ROWID;

CREATE TABLE instance_counter_totals (
    product   TEXT   NOT NULL,
    counter   TEXT   NOT NULL,
    bucket    BIGINT NOT NULL,
    instances BIGINT NOT NULL,
    total     BIGINT NOT NULL,
    PRIMARY KEY (product, counter, bucket)
) WITHOUT ROWID;

INSERT INTO instance_value_totals (product, kind, name, value, instances)
SELECT product, kind, name, value, SUM(instances)
FROM instance_values
GROUP BY product, kind, name, value;

INSERT INTO instance_counter_totals (product, counter, bucket, instances, total)
SELECT product, counter, bucket, SUM(instances), SUM(total)
FROM instance_counters
GROUP BY product, counter, bucket;
