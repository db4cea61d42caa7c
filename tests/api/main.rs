//! Integration tests: the real collector on port 0, a fresh database per
//! test, the same bodies on SQLite and (when `ANONSTATS_TEST_POSTGRES_URL`
//! is set) on PostgreSQL.

mod helpers;

mod bench;
mod health;
mod ingest;
mod legacy;
mod limits;
mod privacy;
mod project;
mod validation;
