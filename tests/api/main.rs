//! Integration tests: the real collector on port 0, a fresh database per
//! test, the same bodies on SQLite and (when `ANONSTATS_TEST_POSTGRES_URL`
//! is set) on PostgreSQL. What the tests share is in [`support`].
//!
//! The tests are grouped by the boundary they hold, one module per group:
//!
//! - [`intake`], what a report meets on its way in: storing reports
//!   (`ingest.rs`), the passbolt 1.x sender (`legacy.rs`), every validation
//!   rule (`validation.rs`), size, media type and overload limits
//!   (`limits.rs`), per-source and per-instance limits and slow clients
//!   (`abuse.rs`), the hostile corpus (`hostile.rs`), property tests of
//!   parsing and anonymisation (`properties.rs`), a 2xx meaning the report
//!   is on disk (`durability.rs`).
//! - [`stats`], what comes out: every stats endpoint, CSV and the token
//!   (`endpoints.rs`), the API, the CLI and the SQL views agreeing
//!   (`consistency.rs`), k-anonymity and the active window
//!   (`k_anonymity.rs`), windows of any length (`windows.rs`), public
//!   releases (`releases.rs`), the dashboard in a browser (`dashboard.rs`).
//! - [`erasure`], what is forgotten or never kept: erasure requests
//!   (`forget.rs`), retention (`prune`, `retention.rs`), the secret the
//!   pseudonyms are keyed with and its rotation (`secret.rs`), nothing
//!   identifying stored, logged or returned (`privacy.rs`).
//! - [`operations`], running the collector: crashes, outages and a full
//!   disk under load (`faults.rs`), metrics and logs (`operability.rs`),
//!   health and readiness (`health.rs`), a new operator's mistakes
//!   (`newcomer.rs`), demo data (`simulate.rs`), storage errors never
//!   acknowledged (`storage_errors.rs`). The benchmark tool has its own
//!   tests, in `tools/bench/tests/`.
//! - [`contract`], what is promised outside the collector: the OpenAPI
//!   document against the server (`openapi.rs`), the documented commands
//!   (`docs_commands.rs`), the repository's own promises (`project.rs`) and
//!   its one-way module graph (`architecture.rs`), the
//!   reference client (`client.rs`) and its consent (`consent.rs`), the PHP
//!   client (`php_client.rs`).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod support;

mod contract;
mod erasure;
mod intake;
mod operations;
mod stats;
