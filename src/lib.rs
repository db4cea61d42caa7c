//! anonstats: an opt-in, anonymous usage statistics collector.
//!
//! Data flows one way: request -> [`validation`] against the [`catalog`] ->
//! [`anonymize`] (drop the address, key-hash identifiers, keep the UTC day)
//! -> [`ingest`] (batching writer) -> [`store`] -> database.

pub mod anonymize;
pub mod bench;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod ingest;
pub mod routes;
pub mod schema;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod validation;
