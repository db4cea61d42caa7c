//! anonstats: an opt-in, anonymous usage statistics collector.
//!
//! Data flows one way: request -> [`validation`] against the [`catalog`] ->
//! [`anonymize`] (drop the address, key-hash identifiers, keep the UTC day)
//! -> [`ingest`] (batching writer) -> [`store`] -> database -> [`reporting`]
//! (k-anonymous reports for the stats API and CLI); [`release`] publishes
//! differentially private releases for the public.

pub mod access;
pub mod anonymize;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod db;
pub mod erasure;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod ratelimit;
pub mod reads;
pub mod release;
pub mod reporting;
pub mod retention;
pub mod routes;
pub mod schema;
pub mod secret;
pub mod simulate;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod validation;
