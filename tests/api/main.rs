//! Integration tests: the real collector on port 0, a fresh database per
//! test, the same bodies on SQLite and (when `ANONSTATS_TEST_POSTGRES_URL`
//! is set) on PostgreSQL. What the tests share is in [`support`].

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod support;

mod abuse;
mod architecture;
mod client;
mod consent;
mod dashboard;
mod docs_commands;
mod durability;
mod faults;
mod forget;
mod health;
mod hostile;
mod ingest;
mod legacy;
mod limits;
mod newcomer;
mod openapi;
mod operability;
mod php_client;
mod privacy;
mod project;
mod properties;
mod releases;
mod retention;
mod secret;
mod simulate;
mod stats;
mod stats_consistency;
mod stats_privacy;
mod stats_windows;
mod storage_errors;
mod validation;
