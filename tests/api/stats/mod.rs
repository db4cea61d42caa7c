//! What comes out of the collector: the stats API and CLI, public releases
//! and the dashboard.

mod consistency;
mod dashboard;
mod endpoints;
mod k_anonymity;
mod releases;
mod windows;
