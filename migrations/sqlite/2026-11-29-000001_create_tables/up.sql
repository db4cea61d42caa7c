-- Server settings that every collector sharing this database must agree on
-- (the pseudonymisation secret when none is configured).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- (a) Event counts per UTC day. No pseudonym, no address: kept forever.
-- previous_version and edition are '' when not applicable, so that they can
-- be part of the key.
CREATE TABLE daily_events (
    day              DATE   NOT NULL,
    product          TEXT   NOT NULL,
    event            TEXT   NOT NULL,
    version          TEXT   NOT NULL,
    previous_version TEXT   NOT NULL,
    edition          TEXT   NOT NULL,
    reports          BIGINT NOT NULL,
    PRIMARY KEY (day, product, event, version, previous_version, edition)
) WITHOUT ROWID;

-- (b) Latest state of each pseudonymous instance. instance_hash is
-- HMAC-SHA256(secret, product, instance_id); state is canonical JSON built by
-- the server from catalog names and values only.
CREATE TABLE instances (
    instance_hash BLOB   PRIMARY KEY NOT NULL,
    product       TEXT   NOT NULL,
    version       TEXT   NOT NULL,
    first_seen    DATE   NOT NULL,
    last_seen     DATE   NOT NULL,
    state         TEXT   NOT NULL
) WITHOUT ROWID;
CREATE INDEX instances_last_seen ON instances (last_seen);

-- (c) Keyed hashes of report ids, kept for the dedupe window only.
CREATE TABLE seen_reports (
    report_hash BLOB PRIMARY KEY NOT NULL,
    day         DATE NOT NULL
) WITHOUT ROWID;
CREATE INDEX seen_reports_day ON seen_reports (day);

-- Incrementally maintained aggregates over instance snapshots, keyed by the
-- day each instance was last seen, so that "active in the last N days" is a
-- range scan over a few hundred days instead of a scan over every instance.
-- kind is 'version', 'attribute' or 'feature'; name is '' for versions.
CREATE TABLE instance_values (
    product   TEXT   NOT NULL,
    last_seen DATE   NOT NULL,
    kind      TEXT   NOT NULL,
    name      TEXT   NOT NULL,
    value     TEXT   NOT NULL,
    instances BIGINT NOT NULL,
    PRIMARY KEY (product, last_seen, kind, name, value)
) WITHOUT ROWID;

-- Counter distributions: bucket is the lower bound of a logarithmic bucket
-- (exact below 100, two significant digits above); total is the exact sum.
CREATE TABLE instance_counters (
    product   TEXT   NOT NULL,
    last_seen DATE   NOT NULL,
    counter   TEXT   NOT NULL,
    bucket    BIGINT NOT NULL,
    instances BIGINT NOT NULL,
    total     BIGINT NOT NULL,
    PRIMARY KEY (product, last_seen, counter, bucket)
) WITHOUT ROWID;
