//! Integration tests: the real collector on port 0, a fresh database per
//! test, the same bodies on SQLite and (when `ANONSTATS_TEST_POSTGRES_URL`
//! is set) on PostgreSQL.

mod helpers;

mod client;
mod forget;
mod health;
mod ingest;
mod legacy;
mod limits;
mod privacy;
mod project;
mod simulate;
mod stats;
mod stats_consistency;
mod stats_privacy;
mod stats_seed;
mod validation;
