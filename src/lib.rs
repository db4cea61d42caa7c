//! anonstats: an opt-in, anonymous usage statistics collector.
//!
//! Data flows one way: request -> [`validation`] against the [`catalog`] ->
//! [`intake`]: [`anonymize`] (drop the address, key-hash identifiers, keep
//! the UTC day), the daily cap of [`limits`], then [`ingest`] (batching
//! writer) -> [`store`] -> database -> [`reporting`] (k-anonymous reports
//! for the stats API and CLI); [`publication`] publishes the differentially
//! private [`release`]s for the public.
//!
//! Imports point one way, from [`cli`] (flags) and [`startup`] (the server)
//! through [`routes`] and [`state`] down to the domain modules and [`db`];
//! `tests/api/architecture.rs` checks it.

pub mod access;
pub mod anonymize;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod db;
pub mod erasure;
pub mod grouping;
pub mod histogram;
pub mod ingest;
pub mod intake;
pub mod limits;
pub mod metrics;
mod os;
pub mod publication;
pub mod reads;
pub mod release;
pub mod reporting;
pub mod retention;
pub mod routes;
pub mod schema;
pub mod secret;
pub mod simulate;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod validation;
